//! Data directories written by each format version, checked in under `tests/fixtures/v<N>`,
//! must stay readable by every later build: `v1` (framed files without a header checksum),
//! `v2` (metadata without pause marks) and `v3` (this build's). Write the current version's fixture (only when deliberately starting
//! a new one) with `cargo test -p nsq-engine --test fixture -- --ignored`.

use nsq_engine::{ChannelStart, Clock, Engine, Options};
use std::path::{Path, PathBuf};

const SEC: i64 = 1_000_000_000;

/// The version [`generate_fixture`] writes.
const CURRENT: &str = "v3";

fn fixture_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
}

fn fixture_options() -> Options {
    Options {
        max_bytes_per_file: 2048,
        index_interval_bytes: 256,
        ..Options::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
#[ignore = "writes the checked-in fixture"]
fn generate_fixture() {
    let dir = fixture_dir(CURRENT);
    let _ = std::fs::remove_dir_all(&dir);
    let clock = std::sync::Arc::new(nsq_engine::ManualClock::new(1_700_000_000 * SEC));
    let engine = Engine::open(
        &dir,
        Options {
            clock: clock.clone(),
            ..fixture_options()
        },
    )
    .expect("open");
    let c = engine
        .create_channel("fixture", "consumer", ChannelStart::Default)
        .expect("channel");
    engine
        .create_channel("fixture", "idle", ChannelStart::Default)
        .expect("channel");
    let topic = engine.topic("fixture").expect("topic");
    for i in 0..60 {
        topic
            .publish(&[format!("fixture message {i}")], 0)
            .expect("publish");
        clock.advance(SEC);
    }
    topic
        .publish(&["deferred"], clock.now() + 3600 * SEC)
        .expect("dpub");
    let mut out = Vec::new();
    c.take(clock.now(), 1, 60 * SEC, 20, &mut out)
        .expect("take");
    for d in &out[..15] {
        c.finish(1, &d.id).expect("finish");
    }
    c.requeue(1, &out[15].id, clock.now(), 3600 * SEC)
        .expect("requeue");
    engine.close().expect("close");
    std::fs::remove_file(dir.join("LOCK")).expect("remove LOCK");
}

#[test]
fn version_1_fixture_is_readable() {
    check_fixture("v1");
}

#[test]
fn version_2_fixture_is_readable() {
    check_fixture("v2");
}

#[test]
fn version_3_fixture_is_readable() {
    check_fixture("v3");
}

fn check_fixture(version: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture_dir(version), tmp.path());
    let clock = std::sync::Arc::new(nsq_engine::ManualClock::new((1_700_000_000 + 70) * SEC));
    let engine = Engine::open(
        tmp.path(),
        Options {
            clock,
            ..fixture_options()
        },
    )
    .expect("open the fixture");
    assert!(
        engine.recovery_events().is_empty(),
        "{:?}",
        engine.recovery_events()
    );
    let topic = engine.topic("fixture").expect("topic");
    assert_eq!(topic.storage().end_offset(), 61);
    assert!(topic.storage().disk().expect("disk").segment_count() > 1);
    let m = topic
        .storage()
        .read_one(42)
        .expect("read")
        .expect("present");
    assert_eq!(m.body, "fixture message 42".as_bytes());
    assert_eq!(m.timestamp, (1_700_000_000 + 42) * SEC);
    assert_eq!(
        topic
            .storage()
            .offset_at_time((1_700_000_000 + 30) * SEC)
            .expect("time lookup"),
        30
    );
    let c = engine.channel("fixture", "consumer").expect("channel");
    let file = c.cursor_file();
    assert_eq!((file.floor, file.next), (15, 20));
    assert_eq!(
        file.entries.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![15, 16, 17, 18, 19]
    );
    let mut out = Vec::new();
    c.take(engine.now(), 1, 60 * SEC, 100, &mut out)
        .expect("take");
    // 16..19 were in flight (redelivered first), then 20..59; 15 waits, 60 is deferred.
    assert_eq!(out.len(), 4 + 40);
    assert_eq!(out[0].attempts, 2);
    assert_eq!(out[0].body, "fixture message 16".as_bytes());
    let idle = engine.channel("fixture", "idle").expect("channel");
    assert_eq!(idle.cursor_file().next, 0);
}
