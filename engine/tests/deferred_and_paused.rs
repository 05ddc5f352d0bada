//! What a channel counts and gets around deferred (DPUB) messages and a paused topic, as
//! NSQ v1.3.0 shows it: a deferred message is deferred, not depth, from the moment it is
//! published; a paused topic keeps what is published to it from its channels, which go on
//! delivering what they had.

mod common;

use common::*;
use nsq_engine::{ChannelStart, ChannelStats, Clock, Engine};

/// Opens the engine with topic `t` and its channel `a`.
fn open_with_channel_a(
    fs: &nsq_engine::fs::SimFs,
    clock: &std::sync::Arc<nsq_engine::ManualClock>,
) -> (Engine, std::sync::Arc<nsq_engine::Topic>) {
    let engine = open(fs, clock);
    engine
        .create_channel("t", "a", ChannelStart::Default)
        .expect("a");
    let topic = engine.topic("t").expect("topic");
    (engine, topic)
}

fn stats(engine: &Engine, topic: &str, channel: &str) -> ChannelStats {
    engine
        .channel(topic, channel)
        .expect("channel")
        .stats(engine.now())
}

/// `(depth, deferred)` of a channel.
fn depth_deferred(engine: &Engine, topic: &str, channel: &str) -> (u64, u64) {
    let s = stats(engine, topic, channel);
    (s.depth, s.deferred)
}

#[test]
fn a_deferred_message_counts_as_deferred_before_any_read_and_after_a_reopen() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        engine
            .create_channel("t", "a", ChannelStart::Default)
            .expect("a");
        let topic = engine.topic("t").expect("topic");
        topic
            .publish(&["later"], clock.now() + 600 * SEC)
            .expect("dpub");
        topic.publish(&["now"], 0).expect("pub");
        assert_eq!(depth_deferred(&engine, "t", "a"), (1, 1));
        // A channel created after the publish starts at the tail: neither.
        engine
            .create_channel("t", "b", ChannelStart::Default)
            .expect("b");
        assert_eq!(depth_deferred(&engine, "t", "b"), (0, 0));
        engine.close().expect("close");
    }
    let engine = open(&fs, &clock);
    assert_eq!(depth_deferred(&engine, "t", "a"), (1, 1));
    // Reading takes the ready one and sets the deferred one aside: the counts stay right.
    let got = take_all(&engine, "t", "a");
    assert_eq!(bodies(&got), ["now"]);
    let s = stats(&engine, "t", "a");
    assert_eq!((s.depth, s.deferred, s.in_flight), (0, 1, 1));
    // Its time comes: depth until delivered, then delivered.
    clock.advance(600 * SEC);
    assert_eq!(depth_deferred(&engine, "t", "a"), (1, 0));
    assert_eq!(bodies(&take_all(&engine, "t", "a")), ["later"]);
}

#[test]
fn a_deferred_message_becomes_depth_when_due_unread() {
    let (fs, clock) = sim();
    let (engine, topic) = open_with_channel_a(&fs, &clock);
    topic.publish(&["soon"], clock.now() + SEC).expect("dpub");
    assert_eq!(depth_deferred(&engine, "t", "a"), (0, 1));
    assert!(take_all(&engine, "t", "a").is_empty(), "never early");
    clock.advance(SEC);
    assert_eq!(depth_deferred(&engine, "t", "a"), (1, 0));
    assert_eq!(bodies(&take_all(&engine, "t", "a")), ["soon"]);
}

#[test]
fn the_first_channel_counts_the_deferred_backlog_and_a_rewind_finds_it() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        let topic = engine.create_topic("t").expect("topic");
        topic
            .publish(&["later"], clock.now() + 600 * SEC)
            .expect("dpub");
        engine.close().expect("close");
    }
    // Reopened with no channel: the first one still sees it as deferred.
    let engine = open(&fs, &clock);
    engine
        .create_channel("t", "first", ChannelStart::Default)
        .expect("first");
    assert_eq!(depth_deferred(&engine, "t", "first"), (0, 1));
    engine
        .create_channel("t", "second", ChannelStart::Default)
        .expect("second");
    assert_eq!(depth_deferred(&engine, "t", "second"), (0, 0));
    // Moved back over it (our rewind): deferred there too, and still not delivered early.
    engine
        .rewind_channel("t", "second", ChannelStart::Earliest)
        .expect("rewind");
    assert_eq!(depth_deferred(&engine, "t", "second"), (0, 1));
    assert!(take_all(&engine, "t", "second").is_empty());
}

#[test]
fn open_does_not_look_for_deferrals_older_than_max_defer() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        let topic = engine.create_topic("t").expect("topic");
        // Longer than max_defer allows (nsqd refuses such a DPUB): forgotten by a reopen an
        // hour later, yet still not delivered before its time.
        topic
            .publish(&["far"], clock.now() + 7200 * SEC)
            .expect("dpub");
        engine.close().expect("close");
    }
    clock.advance(3601 * SEC);
    let engine = open(&fs, &clock);
    engine
        .create_channel("t", "a", ChannelStart::Default)
        .expect("a");
    assert_eq!(depth_deferred(&engine, "t", "a"), (1, 0));
    assert!(take_all(&engine, "t", "a").is_empty());
    assert_eq!(depth_deferred(&engine, "t", "a"), (0, 1));
}

#[test]
fn a_paused_topic_keeps_new_messages_from_its_channels_which_deliver_what_they_had() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        engine
            .create_channel("t", "a", ChannelStart::Default)
            .expect("a");
        let topic = engine.topic("t").expect("topic");
        topic.publish(&["m1", "m2"], 0).expect("pub");
        engine.set_topic_paused("t", true).expect("pause");
        topic.publish(&["p1", "p2", "p3"], 0).expect("pub");
        assert_eq!(topic.stats().expect("stats").backlog, 3);
        let a = stats(&engine, "t", "a");
        assert_eq!((a.depth, a.readable_end), (2, 2));
        // A channel created while paused starts at the mark: it gets what the topic holds.
        engine
            .create_channel("t", "b", ChannelStart::Default)
            .expect("b");
        assert_eq!(stats(&engine, "t", "b").depth, 0);
        let got = take_all(&engine, "t", "a");
        assert_eq!(bodies(&got), ["m1", "m2"]);
        finish_all(&engine, "t", "a", &got);
        engine.close().expect("close");
    }
    // The pause and its mark survive a restart.
    let engine = open(&fs, &clock);
    let topic = engine.topic("t").expect("topic");
    assert_eq!(topic.pause_mark(), Some(2));
    assert_eq!(topic.stats().expect("stats").backlog, 3);
    assert!(take_all(&engine, "t", "a").is_empty());
    engine.set_topic_paused("t", false).expect("unpause");
    assert_eq!(topic.stats().expect("stats").backlog, 0);
    assert_eq!(stats(&engine, "t", "a").depth, 3);
    assert_eq!(bodies(&take_all(&engine, "t", "b")), ["p1", "p2", "p3"]);
    assert_eq!(bodies(&take_all(&engine, "t", "a")), ["p1", "p2", "p3"]);
}

#[test]
fn a_topic_paused_without_channels_holds_everything_and_an_empty_drops_what_it_held() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    let topic = engine.create_topic("t").expect("topic");
    topic.publish(&["m1"], 0).expect("pub");
    engine.set_topic_paused("t", true).expect("pause");
    topic.publish(&["m2"], 0).expect("pub");
    engine
        .create_channel("t", "a", ChannelStart::Default)
        .expect("a");
    assert_eq!(topic.stats().expect("stats").backlog, 2);
    assert!(take_all(&engine, "t", "a").is_empty());
    engine.set_topic_paused("t", false).expect("unpause");
    let got = take_all(&engine, "t", "a");
    assert_eq!(bodies(&got), ["m1", "m2"]);
    finish_all(&engine, "t", "a", &got);

    // Paused again, two held, then emptied: they are gone; the channel keeps going.
    engine.set_topic_paused("t", true).expect("pause");
    topic.publish(&["x1", "x2"], 0).expect("pub");
    engine.empty_topic("t").expect("empty");
    assert_eq!(topic.stats().expect("stats").backlog, 0);
    topic.publish(&["y"], 0).expect("pub");
    engine.set_topic_paused("t", false).expect("unpause");
    assert_eq!(bodies(&take_all(&engine, "t", "a")), ["y"]);

    // Paused, the last channel deleted: what the topic held is still its backlog.
    engine.set_topic_paused("t", true).expect("pause");
    topic.publish(&["z"], 0).expect("pub");
    engine.delete_channel("t", "a").expect("delete");
    assert_eq!(topic.stats().expect("stats").backlog, 1);
    engine.set_topic_paused("t", false).expect("unpause");
    engine
        .create_channel("t", "b", ChannelStart::Default)
        .expect("b");
    assert_eq!(bodies(&take_all(&engine, "t", "b")), ["z"]);
}

#[test]
fn a_deferred_message_published_while_paused_is_the_topics_until_unpaused() {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    engine
        .create_channel("t", "a", ChannelStart::Default)
        .expect("a");
    engine.set_topic_paused("t", true).expect("pause");
    let topic = engine.topic("t").expect("topic");
    topic
        .publish(&["later"], clock.now() + 600 * SEC)
        .expect("dpub");
    assert_eq!(topic.stats().expect("stats").backlog, 1);
    assert_eq!(depth_deferred(&engine, "t", "a"), (0, 0));
    engine.set_topic_paused("t", false).expect("unpause");
    assert_eq!(depth_deferred(&engine, "t", "a"), (0, 1));
}

#[test]
fn a_deferred_message_a_journal_replay_leaves_unfinished_still_counts_as_deferred() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        let c = engine
            .create_channel("t", "a", ChannelStart::Default)
            .expect("a");
        let topic = engine.topic("t").expect("topic");
        topic
            .publish(&["later"], clock.now() + 600 * SEC)
            .expect("dpub");
        topic.publish(&["now"], 0).expect("pub");
        let got = take_all(&engine, "t", "a");
        assert_eq!(bodies(&got), ["now"]);
        c.finish(1, &got[0].id).expect("fin");
        c.write_finished().expect("journal");
        // Dropped without closing: a crash, with the FIN only in the journal.
    }
    let engine = open(&fs, &clock);
    assert_eq!(depth_deferred(&engine, "t", "a"), (0, 1));
    assert!(take_all(&engine, "t", "a").is_empty());
    clock.advance(600 * SEC);
    assert_eq!(bodies(&take_all(&engine, "t", "a")), ["later"]);
}

#[test]
fn emptying_a_paused_topic_keeps_what_a_lagging_channel_had_and_drops_what_the_topic_held() {
    let (fs, clock) = sim();
    let (engine, topic) = open_with_channel_a(&fs, &clock);
    topic.publish(&["x"], 0).expect("pub");
    topic
        .publish(&["x-later"], clock.now() + 600 * SEC)
        .expect("dpub");
    engine.set_topic_paused("t", true).expect("pause");
    topic.publish(&["y", "z"], 0).expect("pub");
    engine.empty_topic("t").expect("empty");
    assert_eq!(topic.stats().expect("stats").backlog, 0);
    assert_eq!(depth_deferred(&engine, "t", "a"), (1, 1));
    engine.set_topic_paused("t", false).expect("unpause");
    assert_eq!(depth_deferred(&engine, "t", "a"), (1, 1));
    assert_eq!(bodies(&take_all(&engine, "t", "a")), ["x"]);
    clock.advance(600 * SEC);
    assert_eq!(bodies(&take_all(&engine, "t", "a")), ["x-later"]);
}
