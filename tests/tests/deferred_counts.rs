//! NSQ v1.3.0 counts a deferred message (DPUB, or `/pub?defer=`) in its channels'
//! `deferred_count`, not their `depth`, from the moment the publish is answered, with no
//! subscriber reading; when its time comes with nobody subscribed it moves to `depth`. A
//! channel created after the publish starts at the tail and counts neither; the first channel
//! of a topic holding one counts it as deferred. After a restart NSQ has forgotten the
//! deferral (its channel shows `depth 1, deferred_count 0`, seen on the reference binary);
//! ours keeps it, so the message still waits and still counts as deferred.

use nsq_server::protocol::Command;
use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use serde_json::Value;
use std::time::{Duration, Instant};

fn post(nsqd: &Nsqd, path: &str, body: &[u8]) {
    let reply = http_post(&nsqd.url(path), body);
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
}

fn channel_stats(nsqd: &Nsqd, topic: &str, channel: &str) -> Value {
    let s = http_get(&nsqd.url(&format!(
        "/stats?format=json&topic={topic}&channel={channel}"
    )))
    .json();
    s["topics"][0]["channels"][0].clone()
}

/// `(depth, deferred_count, message_count)` of a channel.
fn counts(nsqd: &Nsqd, topic: &str, channel: &str) -> (u64, u64, u64) {
    let c = channel_stats(nsqd, topic, channel);
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("{k} in {c}"));
    (n("depth"), n("deferred_count"), n("message_count"))
}

fn topic_depth(nsqd: &Nsqd, topic: &str) -> u64 {
    let s = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
    s["topics"][0]["depth"].as_u64().expect("depth")
}

#[test]
fn a_deferred_publish_counts_as_deferred_at_once_and_after_a_restart() {
    let mut nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=t", b"");
    post(&nsqd, "/channel/create?topic=t&channel=a", b"");
    let mut producer = RawClient::connect(nsqd.tcp);
    producer.send(&Command::Dpub {
        topic: "t".into(),
        defer_ms: 600_000,
        body: b"tcp".to_vec().into(),
    });
    producer.expect_response(b"OK");
    assert_eq!(counts(&nsqd, "t", "a"), (0, 1, 1));
    post(&nsqd, "/pub?topic=t&defer=600000", b"http");
    post(&nsqd, "/pub?topic=t", b"now");
    assert_eq!(counts(&nsqd, "t", "a"), (1, 2, 3));
    assert_eq!(topic_depth(&nsqd, "t"), 0);
    // Created after the publishes: starts at the tail.
    post(&nsqd, "/channel/create?topic=t&channel=b", b"");
    assert_eq!(counts(&nsqd, "t", "b"), (0, 0, 0));
    drop(producer);

    assert!(nsqd.terminate().success());
    nsqd.restart();
    // message_count starts again at 0 with the process, as NSQ's does.
    assert_eq!(counts(&nsqd, "t", "a"), (1, 2, 0));
    let mut consumer = RawClient::connect(nsqd.tcp);
    consumer.subscribe("t", "a");
    consumer.send(&Command::Rdy(10));
    assert_eq!(consumer.message().2, b"now");
    let c = channel_stats(&nsqd, "t", "a");
    assert_eq!(
        (c["depth"].as_u64(), c["deferred_count"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(c["in_flight_count"], 1);
}

#[test]
fn the_first_channel_of_a_topic_holding_a_deferred_message_counts_it_as_deferred() {
    let nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=u", b"");
    post(&nsqd, "/pub?topic=u&defer=600000", b"later");
    assert_eq!(topic_depth(&nsqd, "u"), 1);
    post(&nsqd, "/channel/create?topic=u&channel=a", b"");
    assert_eq!(topic_depth(&nsqd, "u"), 0);
    assert_eq!(counts(&nsqd, "u", "a"), (0, 1, 1));
}

#[test]
fn a_deferral_that_runs_out_with_nobody_subscribed_moves_to_depth() {
    let nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=v", b"");
    post(&nsqd, "/channel/create?topic=v&channel=a", b"");
    post(&nsqd, "/pub?topic=v&defer=1000", b"soon");
    assert_eq!(counts(&nsqd, "v", "a"), (0, 1, 1));
    // Polled (no time limit asserted): NSQ moves it on its next queue scan, ours at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts(&nsqd, "v", "a") != (1, 0, 1) {
        assert!(
            Instant::now() < deadline,
            "{}",
            channel_stats(&nsqd, "v", "a")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut consumer = RawClient::connect(nsqd.tcp);
    consumer.subscribe("v", "a");
    consumer.send(&Command::Rdy(1));
    assert_eq!(consumer.message().2, b"soon");
}

#[test]
fn emptying_a_channel_drops_its_deferred_messages_too() {
    let nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=w", b"");
    post(&nsqd, "/channel/create?topic=w&channel=a", b"");
    post(&nsqd, "/pub?topic=w&defer=600000", b"later");
    post(&nsqd, "/pub?topic=w", b"now");
    assert_eq!(counts(&nsqd, "w", "a"), (1, 1, 2));
    post(&nsqd, "/channel/empty?topic=w&channel=a", b"");
    assert_eq!(counts(&nsqd, "w", "a"), (0, 0, 2));
}
