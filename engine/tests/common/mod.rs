//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use nsq_engine::fs::SimFs;
use nsq_engine::{Delivery, Engine, ManualClock, Options, SyncPolicy};
use std::sync::Arc;

/// One second in nanoseconds.
pub const SEC: i64 = 1_000_000_000;

/// Options on a simulated disk with a manual clock, small segments and a small index interval.
pub fn sim_options(fs: &SimFs, clock: &Arc<ManualClock>) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        clock: clock.clone(),
        max_bytes_per_file: 4096,
        index_interval_bytes: 512,
        sync: SyncPolicy::always(),
        ..Options::default()
    }
}

/// A simulated disk with a `/data` directory and a clock at 1000 s.
pub fn sim() -> (SimFs, Arc<ManualClock>) {
    let fs = SimFs::new();
    let clock = Arc::new(ManualClock::new(1000 * SEC));
    (fs, clock)
}

/// Opens `/data` on the simulated disk.
pub fn open(fs: &SimFs, clock: &Arc<ManualClock>) -> Engine {
    Engine::open("/data", sim_options(fs, clock)).expect("open engine")
}

/// Takes everything deliverable from a channel as client 1 with a 60 s timeout.
pub fn take_all(engine: &Engine, topic: &str, channel: &str) -> Vec<Delivery> {
    let c = engine.channel(topic, channel).expect("channel exists");
    let mut out = Vec::new();
    while c
        .take(engine.now(), 1, 60 * SEC, 1000, &mut out)
        .expect("take")
        > 0
    {}
    out
}

/// The bodies of deliveries, as strings.
pub fn bodies(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8_lossy(&d.body).into_owned())
        .collect()
}

/// Finishes every delivery as client 1.
pub fn finish_all(engine: &Engine, topic: &str, channel: &str, deliveries: &[Delivery]) {
    let c = engine.channel(topic, channel).expect("channel exists");
    for d in deliveries {
        c.finish(1, &d.id).expect("finish");
    }
}

/// Every message body of topic `topic`'s log, oldest first, as strings.
pub fn log_bodies(engine: &Engine, topic: &str) -> Vec<String> {
    let topic = engine.topic(topic).expect("topic");
    let storage = topic.storage();
    let mut reader = nsq_engine::log::LogReader::at(storage.first_offset());
    let mut out = std::collections::VecDeque::new();
    while storage
        .read(&mut reader, 64 * 1024, usize::MAX, &mut out)
        .expect("read")
        > 0
    {}
    out.iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

/// The segment files of topic `topic` on the simulated disk, oldest first.
pub fn segment_files(fs: &SimFs, topic: &str) -> Vec<std::path::PathBuf> {
    use nsq_engine::fs::FileSystem;
    let dir = std::path::PathBuf::from(format!("/data/topics/{topic}"));
    let mut logs: Vec<_> = fs
        .read_dir(&dir)
        .expect("dir")
        .into_iter()
        .filter(|e| e.name.ends_with(".log"))
        .map(|e| dir.join(e.name))
        .collect();
    logs.sort();
    logs
}

/// Reads the whole log of `topic`, or the first error a read meets.
pub fn read_log(
    engine: &Engine,
    topic: &str,
) -> Result<Vec<nsq_engine::Message>, nsq_engine::Error> {
    let topic = engine.topic(topic).expect("topic");
    let storage = topic.storage();
    let mut reader = nsq_engine::log::LogReader::at(storage.first_offset());
    let mut out = std::collections::VecDeque::new();
    while storage.read(&mut reader, 64 * 1024, usize::MAX, &mut out)? > 0 {}
    Ok(out.into_iter().collect())
}
