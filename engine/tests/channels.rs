//! Channel semantics over the log: every channel gets every message, NSQ's start rules,
//! redelivery rules, and what survives a clean reopen.

mod common;

use common::*;
use nsq_engine::{ChannelStart, Error};

fn msgs(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

#[test]
fn every_channel_gets_every_message_and_first_channel_gets_the_backlog() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    let topic = engine.create_topic("events").expect("topic");
    topic.publish(&msgs(0..50), 0).expect("publish");
    engine
        .create_channel("events", "a", ChannelStart::Default)
        .expect("a");
    engine
        .create_channel("events", "b", ChannelStart::Default)
        .expect("b");
    topic.publish(&msgs(50..100), 0).expect("publish");
    assert_eq!(
        bodies(&take_all(&engine, "events", "a")),
        msgs(0..100),
        "first channel gets the backlog"
    );
    assert_eq!(
        bodies(&take_all(&engine, "events", "b")),
        msgs(50..100),
        "later channels start at the tail"
    );
    engine
        .create_channel("events", "c", ChannelStart::Earliest)
        .expect("c");
    assert_eq!(take_all(&engine, "events", "c").len(), 100);
    engine
        .create_channel("events", "d", ChannelStart::Offset(90))
        .expect("d");
    assert_eq!(bodies(&take_all(&engine, "events", "d")), msgs(90..100));
    assert!(matches!(
        engine.create_channel("events", "e", ChannelStart::Offset(101)),
        Err(Error::PastEnd { .. })
    ));
}

#[test]
fn requeue_timeout_touch_and_attempts() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    let c = engine
        .create_channel("t", "c", ChannelStart::Default)
        .expect("channel");
    let topic = engine.topic("t").expect("topic");
    topic.publish(&msgs(0..3), 0).expect("publish");
    let first = take_all(&engine, "t", "c");
    assert_eq!(
        first.iter().map(|d| d.attempts).collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
    // REQ with no delay goes out before anything new; REQ with a delay waits.
    c.requeue(1, &first[0].id, engine.now(), 0).expect("req");
    c.requeue(1, &first[1].id, engine.now(), 5 * SEC)
        .expect("req");
    assert!(matches!(
        c.requeue(2, &first[2].id, engine.now(), 0),
        Err(Error::NotOwner(_))
    ));
    topic.publish(&msgs(3..4), 0).expect("publish");
    let again = take_all(&engine, "t", "c");
    assert_eq!(bodies(&again), vec!["m0", "m3"]);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(c.stats(engine.now()).deferred, 1);
    clock.advance(5 * SEC);
    let later = take_all(&engine, "t", "c");
    assert_eq!(
        (bodies(&later), later[0].attempts),
        (vec!["m1".to_string()], 2)
    );
    // Timeout: m2 (deadline 60 s after its delivery) times out; TOUCH keeps m3 alive.
    clock.advance(50 * SEC);
    c.touch(1, &again[1].id, engine.now(), 60 * SEC)
        .expect("touch");
    clock.advance(10 * SEC);
    assert_eq!(
        c.expire(engine.now()),
        3,
        "m0, m1 and m2 time out, touched m3 does not"
    );
    let redelivered = take_all(&engine, "t", "c");
    assert_eq!(bodies(&redelivered), vec!["m0", "m1", "m2"]);
    assert_eq!(
        redelivered.iter().map(|d| d.attempts).collect::<Vec<_>>(),
        vec![3, 3, 2]
    );
    assert!(matches!(c.finish(1, &first[2].id), Ok(())));
    assert!(matches!(
        c.finish(1, &first[2].id),
        Err(Error::NotInFlight(_))
    ));
    let stats = c.stats(engine.now());
    assert_eq!(
        (stats.requeue_count, stats.timeout_count, stats.in_flight),
        (2, 3, 3)
    );
}

#[test]
fn deferred_messages_wait_in_every_channel() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    engine
        .create_channel("t", "a", ChannelStart::Default)
        .expect("a");
    engine
        .create_channel("t", "b", ChannelStart::Default)
        .expect("b");
    let topic = engine.topic("t").expect("topic");
    topic
        .publish(&["later"], engine.now() + 10 * SEC)
        .expect("dpub");
    topic.publish(&["now"], 0).expect("pub");
    for ch in ["a", "b"] {
        assert_eq!(bodies(&take_all(&engine, "t", ch)), vec!["now"]);
    }
    clock.advance(10 * SEC);
    for ch in ["a", "b"] {
        let d = take_all(&engine, "t", ch);
        assert_eq!((bodies(&d), d[0].attempts), (vec!["later".to_string()], 1));
    }
}

#[test]
fn clean_reopen_redelivers_nothing_finished() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        engine
            .create_channel("t", "c", ChannelStart::Default)
            .expect("channel");
        engine
            .topic("t")
            .expect("topic")
            .publish(&msgs(0..200), 0)
            .expect("publish");
        let got = take_all(&engine, "t", "c");
        // Finish the even ones; requeue m1 with a delay; leave the rest in flight.
        let c = engine.channel("t", "c").expect("channel");
        for d in got.iter().filter(|d| d.offset % 2 == 0) {
            c.finish(1, &d.id).expect("fin");
        }
        c.requeue(1, &got[1].id, engine.now(), 30 * SEC)
            .expect("req");
        engine.close().expect("close");
    }
    let engine = open(&fs, &clock);
    let back = take_all(&engine, "t", "c");
    let expected: Vec<String> = (3..200).step_by(2).map(|i| format!("m{i}")).collect();
    assert_eq!(
        bodies(&back),
        expected,
        "odd ones (not m1, deferred) come back"
    );
    assert!(back.iter().all(|d| d.attempts == 2));
    clock.advance(30 * SEC);
    assert_eq!(bodies(&take_all(&engine, "t", "c")), vec!["m1"]);
}

#[test]
fn rewind_and_empty() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    let c = engine
        .create_channel("t", "c", ChannelStart::Default)
        .expect("channel");
    let topic = engine.topic("t").expect("topic");
    topic.publish(&msgs(0..10), 0).expect("publish");
    let t_mid = engine.now() + SEC;
    clock.advance(2 * SEC);
    topic.publish(&msgs(10..20), 0).expect("publish");
    let all = take_all(&engine, "t", "c");
    finish_all(&engine, "t", "c", &all);
    assert_eq!(
        engine
            .rewind_channel("t", "c", ChannelStart::Timestamp(t_mid))
            .expect("rewind"),
        10
    );
    assert!(matches!(
        c.finish(1, &all[15].id),
        Err(Error::NotInFlight(_))
    ));
    assert_eq!(bodies(&take_all(&engine, "t", "c")), msgs(10..20));
    engine
        .rewind_channel("t", "c", ChannelStart::Earliest)
        .expect("rewind");
    assert_eq!(take_all(&engine, "t", "c").len(), 20);
    c.empty();
    assert_eq!(c.stats(engine.now()).depth, 0);
    assert_eq!(take_all(&engine, "t", "c").len(), 0);
    engine
        .create_channel("t", "eph#ephemeral", ChannelStart::Default)
        .expect("eph");
    assert!(matches!(
        engine.rewind_channel("t", "eph#ephemeral", ChannelStart::Earliest),
        Err(Error::Ephemeral(_))
    ));
}

#[test]
fn deleting_the_last_channel_makes_the_topic_buffer_again() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    engine
        .create_channel("t", "c", ChannelStart::Default)
        .expect("channel");
    let topic = engine.topic("t").expect("topic");
    topic.publish(&msgs(0..5), 0).expect("publish");
    engine.delete_channel("t", "c").expect("delete");
    topic.publish(&msgs(5..8), 0).expect("publish");
    engine
        .create_channel("t", "d", ChannelStart::Default)
        .expect("channel");
    assert_eq!(bodies(&take_all(&engine, "t", "d")), msgs(5..8));
    engine.delete_topic("t").expect("delete topic");
    assert!(engine.topic("t").is_none());
    assert!(matches!(
        topic.publish(&["x"], 0),
        Err(Error::TopicNotFound(_))
    ));
    drop(engine);
    let engine = open(&fs, &clock);
    assert!(engine.topic("t").is_none());
}

#[test]
fn ephemeral_topics_stay_in_memory_and_bounded() {
    let (fs, clock) = sim();
    let mut options = sim_options(&fs, &clock);
    options.mem_queue_size = 10;
    let engine = nsq_engine::Engine::open("/data", options).expect("open");
    let c = engine
        .create_channel("t#ephemeral", "c", ChannelStart::Default)
        .expect("channel");
    assert!(c.is_ephemeral());
    engine
        .topic("t#ephemeral")
        .expect("topic")
        .publish(&msgs(0..25), 0)
        .expect("publish");
    assert_eq!(bodies(&take_all(&engine, "t#ephemeral", "c")), msgs(15..25));
    assert_eq!(c.stats(engine.now()).skipped, 15);
    engine.close().expect("close");
    let engine = open(&fs, &clock);
    assert!(engine.topic("t#ephemeral").is_none());
    use nsq_engine::fs::FileSystem;
    assert!(!fs.exists(std::path::Path::new("/data/topics/t#ephemeral")));
    let listed = fs
        .read_dir(std::path::Path::new("/data/topics"))
        .expect("topics dir");
    assert!(listed.is_empty(), "{listed:?}");
}

#[test]
fn paused_flags_and_retention_override_persist() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        engine
            .create_channel("t", "c", ChannelStart::Default)
            .expect("channel");
        engine.set_topic_paused("t", true).expect("pause");
        engine.set_channel_paused("t", "c", true).expect("pause");
        let r = nsq_engine::Retention {
            time_ns: Some(3600 * SEC),
            bytes: None,
        };
        engine.set_topic_retention("t", Some(r)).expect("retention");
        engine.close().expect("close");
    }
    let engine = open(&fs, &clock);
    let t = engine.topic("t").expect("topic");
    assert!(t.is_paused());
    assert!(engine.channel("t", "c").expect("channel").is_paused());
    assert_eq!(t.retention().and_then(|r| r.time_ns), Some(3600 * SEC));
}

#[test]
fn names_are_checked() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    assert!(matches!(
        engine.create_topic("bad/name"),
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(
        engine.create_channel("ok", "bad name", ChannelStart::Default),
        Err(Error::InvalidName(_))
    ));
    engine.create_topic("..").expect("dots are valid NSQ names");
    assert!(fs
        .file_data(std::path::Path::new(
            "/data/topics/%../00000000000000000000.log"
        ))
        .is_some());
}
