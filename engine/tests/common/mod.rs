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
