//! Promises that need the right fsyncs and clean-ups, on the strict simulated disk (a new
//! directory survives a power cut only once its parent is synced): admin changes are durable
//! when they return, a new topic's directories are durable, and a topic creation that fails
//! on a full disk leaves nothing that stops the next open.

mod common;

use common::*;
use nsq_engine::fs::{FileSystem, OpenMode, SimFaults};
use nsq_engine::{ChannelStart, Engine, RecoveryEvent};
use std::path::Path;

#[test]
fn a_new_topics_channels_survive_a_power_cut_before_any_roll() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        engine
            .create_channel("t", "c", ChannelStart::Default)
            .expect("channel");
        let topic = engine.topic("t").expect("topic");
        topic.publish(&["a", "b", "c"], 0).expect("publish");
        let got = take_all(&engine, "t", "c");
        finish_all(&engine, "t", "c", &got);
        engine.persist_cursors().expect("persist");
        assert_eq!(
            engine
                .topic("t")
                .expect("topic")
                .storage()
                .disk()
                .map(|l| l.segment_count()),
            Some(1),
            "still in the first segment"
        );
    }
    fs.power_cut();
    let engine = open(&fs, &clock);
    assert!(
        !engine
            .recovery_events()
            .iter()
            .any(|e| matches!(e, RecoveryEvent::CursorMissing { .. })),
        "{:?}",
        engine.recovery_events()
    );
    assert_eq!(bodies(&take_all(&engine, "t", "c")), Vec::<String>::new());
}

#[test]
fn an_emptied_channel_stays_empty_after_a_crash_and_a_power_cut() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        engine
            .create_channel("t", "c", ChannelStart::Default)
            .expect("channel");
        engine
            .create_channel("t", "other", ChannelStart::Default)
            .expect("channel");
        let topic = engine.topic("t").expect("topic");
        for i in 0..20 {
            topic.publish(&[format!("m{i}")], 0).expect("publish");
        }
        engine.persist_cursors().expect("persist");
        engine.empty_channel("t", "c").expect("empty");
        // Dropped without close: what a crash leaves.
    }
    fs.power_cut();
    let engine = open(&fs, &clock);
    assert_eq!(bodies(&take_all(&engine, "t", "c")), Vec::<String>::new());
    assert_eq!(take_all(&engine, "t", "other").len(), 20);
}

#[test]
fn a_topic_creation_that_fails_on_a_full_disk_leaves_nothing_behind() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        engine
            .create_channel("old", "c", ChannelStart::Default)
            .expect("channel");
        engine
            .topic("old")
            .expect("topic")
            .publish(&["kept"], 0)
            .expect("publish");
        fs.set_faults(SimFaults {
            space_limit: Some(fs.total_bytes()),
            ..SimFaults::default()
        });
        assert!(engine.create_topic("new").is_err(), "the disk is full");
        assert!(!fs.exists(Path::new("/data/topics/new")));
    }
    // Still full: the restart works and serves what it holds.
    let engine = open(&fs, &clock);
    assert!(engine.topic("new").is_none());
    assert_eq!(bodies(&take_all(&engine, "old", "c")), vec!["kept"]);
}

#[test]
fn an_interrupted_topic_creation_is_removed_on_open_even_on_a_full_disk() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        engine.create_topic("old").expect("topic");
        engine.close().expect("close");
    }
    // What a crash (or ENOSPC) between creating the first segment and writing its header leaves.
    fs.create_dir_all(Path::new("/data/topics/new/channels"))
        .expect("dir");
    fs.open(
        Path::new("/data/topics/new/00000000000000000000.log"),
        OpenMode::CreateTruncate,
    )
    .expect("segment");
    fs.set_faults(SimFaults {
        space_limit: Some(fs.total_bytes()),
        ..SimFaults::default()
    });
    let engine = Engine::open("/data", sim_options(&fs, &clock)).expect("opens on a full disk");
    assert!(engine.topic("new").is_none());
    assert!(engine.topic("old").is_some());
    assert!(engine.recovery_events().iter().any(
        |e| matches!(e, RecoveryEvent::RemovedLeftover { path } if path.ends_with("topics/new"))
    ));
}
