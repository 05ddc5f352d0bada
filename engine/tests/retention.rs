//! Retention: consumed segments are reclaimed (or kept for a window); nothing a durable
//! channel still needs is ever deleted.

mod common;

use common::*;
use nsq_engine::{ChannelStart, Engine, Retention};

fn segments(engine: &Engine) -> usize {
    engine
        .topic("t")
        .expect("topic")
        .storage()
        .disk()
        .expect("disk")
        .segment_count()
}

fn fill(engine: &Engine, n: usize) {
    let topic = engine.topic("t").expect("topic");
    for i in 0..n {
        topic.publish(&[format!("{i:0>100}")], 0).expect("publish");
    }
}

#[test]
fn consumed_segments_are_reclaimed_and_unconsumed_ones_kept() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    engine.create_topic("t").expect("topic");
    fill(&engine, 200);
    let before = segments(&engine);
    assert!(before > 3);
    clock.advance(2 * SEC);
    engine.tick().expect("tick");
    assert_eq!(
        segments(&engine),
        before,
        "a topic with no channels keeps its backlog"
    );

    engine
        .create_channel("t", "a", ChannelStart::Default)
        .expect("a");
    engine
        .create_channel("t", "b", ChannelStart::Earliest)
        .expect("b");
    let got = take_all(&engine, "t", "a");
    finish_all(&engine, "t", "a", &got[1..]);
    clock.advance(2 * SEC);
    engine.tick().expect("tick");
    assert_eq!(
        segments(&engine),
        before,
        "channel b has read nothing, a holds offset 0"
    );

    finish_all(&engine, "t", "a", &got[..1]);
    let got_b = take_all(&engine, "t", "b");
    finish_all(&engine, "t", "b", &got_b[..150]);
    clock.advance(2 * SEC);
    let report = engine.tick().expect("tick");
    assert!(report.segments_deleted > 0);
    let first = engine.topic("t").expect("topic").storage().first_offset();
    assert!(
        first > 0 && first <= 150,
        "trimmed up to b's floor, not past it: {first}"
    );
    // Everything b still needs is readable.
    let c = engine.channel("t", "b").expect("b");
    for d in &got_b[150..] {
        c.requeue(1, &d.id, engine.now(), 0).expect("req");
    }
    assert_eq!(take_all(&engine, "t", "b").len(), 50);
}

#[test]
fn retention_window_keeps_consumed_segments_for_replay() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    engine
        .create_channel("t", "a", ChannelStart::Default)
        .expect("a");
    engine
        .set_topic_retention(
            "t",
            Some(Retention {
                time_ns: Some(3600 * SEC),
                bytes: None,
            }),
        )
        .expect("retention");
    fill(&engine, 200);
    let got = take_all(&engine, "t", "a");
    finish_all(&engine, "t", "a", &got);
    let before = segments(&engine);
    clock.advance(2 * SEC);
    engine.tick().expect("tick");
    assert_eq!(segments(&engine), before, "inside the window");
    assert_eq!(
        engine
            .rewind_channel("t", "a", ChannelStart::Earliest)
            .expect("rewind"),
        0
    );
    assert_eq!(take_all(&engine, "t", "a").len(), 200);
    let again = take_all(&engine, "t", "a");
    assert!(again.is_empty());

    // Bytes bound: keep at most about two segments of consumed data.
    let c = engine.channel("t", "a").expect("a");
    engine
        .rewind_channel("t", "a", ChannelStart::Tail)
        .expect("rewind to the tail");
    assert_eq!(c.floor(), 200);
    engine
        .set_topic_retention(
            "t",
            Some(Retention {
                time_ns: None,
                bytes: Some(2 * 4096 + 500),
            }),
        )
        .expect("retention");
    clock.advance(2 * SEC);
    engine.tick().expect("tick");
    assert!(
        segments(&engine) <= 3 + 1,
        "{} segments left",
        segments(&engine)
    );
    assert!(segments(&engine) >= 2);

    // Past the time window everything consumed goes.
    engine
        .set_topic_retention(
            "t",
            Some(Retention {
                time_ns: Some(3600 * SEC),
                bytes: None,
            }),
        )
        .expect("retention");
    clock.advance(3601 * SEC);
    engine.tick().expect("tick");
    assert_eq!(segments(&engine), 1);
    match engine.rewind_channel("t", "a", ChannelStart::Offset(0)) {
        Err(nsq_engine::Error::BeforeRetention {
            earliest_offset, ..
        }) => assert!(earliest_offset > 0),
        other => panic!("expected BeforeRetention, got {other:?}"),
    }
}

#[test]
fn write_amplification_is_one_copy_whatever_the_channel_count() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    for c in 0..8 {
        engine
            .create_channel("t", &format!("c{c}"), ChannelStart::Default)
            .expect("channel");
    }
    let body = [b'x'; 200];
    let topic = engine.topic("t").expect("topic");
    for _ in 0..500 {
        topic.publish(&[&body[..]], 0).expect("publish");
    }
    let written = topic.storage().disk().expect("disk").bytes_appended();
    let published = 500 * 200;
    let ratio = written as f64 / published as f64;
    assert!(
        ratio < 1.3,
        "{written} bytes written for {published} published ({ratio:.2}x)"
    );
}
