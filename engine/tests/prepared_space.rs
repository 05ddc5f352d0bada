//! Prepared segment space under `sync_every = 1` (FORMAT.md, "Prepared space"): the writer
//! writes and fsyncs zeros ahead of its records, the log's end stays its last record, a
//! power cut or a clean close in either state loses nothing, and verify calls it sound.

mod common;

use common::*;
use nsq_engine::check::verify;
use nsq_engine::fs::SimFs;
use nsq_engine::record::record_len;
use nsq_engine::{Engine, ManualClock, Options, RecoveryEvent};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Segments large enough that preparation runs ahead of a few records.
fn options(fs: &SimFs, clock: &Arc<ManualClock>) -> Options {
    Options {
        max_bytes_per_file: 64 * 1024,
        ..sim_options(fs, clock)
    }
}

fn open(fs: &SimFs, clock: &Arc<ManualClock>) -> Engine {
    Engine::open("/data", options(fs, clock)).expect("open")
}

/// Waits (bounded) until the writer thread, idle after the last publish, has prepared space
/// past `records_end` in the active segment; returns the file length then.
fn wait_for_prepared(fs: &SimFs, records_end: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let active = segment_files(fs, "t").pop().expect("a segment");
        let len = fs.file_data(&active).expect("data").len();
        if len > records_end {
            return len;
        }
        assert!(Instant::now() < deadline, "no space was prepared");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn publish(engine: &Engine, bodies: &[String]) {
    let topic = engine.topic("t").expect("topic");
    for body in bodies {
        topic.publish(&[body.as_str()], 0).expect("publish");
    }
}

#[test]
fn prepared_space_survives_a_power_cut_and_is_neither_damage_nor_data() {
    let (fs, clock) = sim();
    let bodies: Vec<String> = (0..20).map(|i| format!("message {i:03}")).collect();
    let records_end = 32 + bodies.len() * record_len(bodies[0].len());
    {
        let engine = open(&fs, &clock);
        engine.create_topic("t").expect("topic");
        publish(&engine, &bodies);
        let len = wait_for_prepared(&fs, records_end);
        let active = segment_files(&fs, "t").pop().expect("a segment");
        let data = fs.file_data(&active).expect("data");
        assert!(data[records_end..len].iter().all(|&b| b == 0));
        assert_eq!(log_bodies(&engine, "t"), bodies, "readers see records only");
        fs.power_cut();
    }
    // The prepared zeros were fsynced: the cut leaves them in place, and they are not damage.
    let report = verify(&fs, Path::new("/data"), None, &mut |_| {}).expect("verify");
    assert!(report.is_sound(), "{:?}", report.findings);
    assert_eq!(report.records, bodies.len() as u64);

    let engine = open(&fs, &clock);
    let events = engine.recovery_events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RecoveryEvent::TruncatedTail { .. })),
        "prepared space is not a torn tail: {events:?}"
    );
    assert_eq!(log_bodies(&engine, "t"), bodies);
    // Appends go into the prepared space, after the last record.
    let more: Vec<String> = (20..30).map(|i| format!("message {i:03}")).collect();
    publish(&engine, &more);
    let all: Vec<String> = bodies.iter().chain(&more).cloned().collect();
    assert_eq!(log_bodies(&engine, "t"), all);
    engine.close().expect("close");

    // A clean close leaves the active segment ending at its last record.
    let active = segment_files(&fs, "t").pop().expect("a segment");
    let expected = 32 + all.len() * record_len(all[0].len());
    assert_eq!(fs.file_data(&active).expect("data").len(), expected);
    let engine = open(&fs, &clock);
    assert_eq!(log_bodies(&engine, "t"), all);
}

#[test]
fn sealed_segments_end_at_their_last_record() {
    let (fs, clock) = sim();
    let body = "x".repeat(1000);
    {
        let engine = open(&fs, &clock);
        engine.create_topic("t").expect("topic");
        let topic = engine.topic("t").expect("topic");
        for i in 0..200 {
            topic.publish(&[body.as_str()], 0).expect("publish");
            if i % 20 == 0 {
                // Let the writer go idle now and then, so it prepares space in each segment.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        fs.power_cut();
    }
    let logs = segment_files(&fs, "t");
    assert!(logs.len() > 2, "the workload should roll segments");
    let rec = record_len(body.len());
    for sealed in &logs[..logs.len() - 1] {
        let len = fs.file_data(sealed).expect("data").len();
        assert_eq!(
            (len - 32) % rec,
            0,
            "{} ends mid-record or in zeros",
            sealed.display()
        );
    }
    let report = verify(&fs, Path::new("/data"), None, &mut |_| {}).expect("verify");
    assert!(report.is_sound(), "{:?}", report.findings);
    assert_eq!(report.records, 200);
    let engine = open(&fs, &clock);
    assert_eq!(log_bodies(&engine, "t").len(), 200);
}
