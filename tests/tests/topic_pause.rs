//! A paused topic, as NSQ v1.3.0 shows it (each number below was read off the reference
//! binary doing the same steps): the topic stops handing *new* messages to its channels,
//! which go on delivering what they already had. What is published meanwhile is the topic's
//! `depth` (not in any channel's `depth` or `message_count`), also after a restart, and flows
//! into every channel on unpause, a channel created while paused included.

use nsq_server::protocol::Command;
use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use serde_json::Value;

fn post(nsqd: &Nsqd, path: &str) {
    let reply = http_post(&nsqd.url(path), b"");
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
}

fn publish(nsqd: &Nsqd, topic: &str, body: &str) {
    let reply = http_post(&nsqd.url(&format!("/pub?topic={topic}")), body.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn topic_stats(nsqd: &Nsqd, topic: &str) -> Value {
    let s = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
    s["topics"][0].clone()
}

/// `(depth, message_count, paused)` of the topic.
fn topic_counts(nsqd: &Nsqd, topic: &str) -> (u64, u64, bool) {
    let t = topic_stats(nsqd, topic);
    (
        t["depth"].as_u64().expect("depth"),
        t["message_count"].as_u64().expect("message_count"),
        t["paused"].as_bool().expect("paused"),
    )
}

/// `(depth, message_count)` of a channel.
fn channel_counts(nsqd: &Nsqd, topic: &str, channel: &str) -> (u64, u64) {
    let t = topic_stats(nsqd, topic);
    let c = t["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["channel_name"] == channel))
        .unwrap_or_else(|| panic!("no channel {channel} in {t}"))
        .clone();
    (
        c["depth"].as_u64().expect("depth"),
        c["message_count"].as_u64().expect("message_count"),
    )
}

/// Subscribes, takes `n` messages and finishes them; returns their bodies.
fn consume(nsqd: &Nsqd, topic: &str, channel: &str, n: usize) -> Vec<String> {
    let mut c = RawClient::connect(nsqd.tcp);
    c.subscribe(topic, channel);
    c.send(&Command::Rdy(100));
    let mut got = Vec::new();
    for _ in 0..n {
        let (_, id, body) = c.message();
        c.send_raw(format!("FIN {}\n", String::from_utf8_lossy(&id)).as_bytes());
        got.push(String::from_utf8_lossy(&body).into_owned());
    }
    c.send(&Command::Cls);
    c.expect_response(b"CLOSE_WAIT");
    got
}

#[test]
fn a_paused_topic_holds_new_messages_while_its_channels_deliver_what_they_had() {
    let mut nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=t");
    post(&nsqd, "/channel/create?topic=t&channel=a");
    publish(&nsqd, "t", "m1");
    publish(&nsqd, "t", "m2");
    post(&nsqd, "/topic/pause?topic=t");
    for body in ["p1", "p2", "p3"] {
        publish(&nsqd, "t", body);
    }
    assert_eq!(topic_counts(&nsqd, "t"), (3, 5, true));
    assert_eq!(channel_counts(&nsqd, "t", "a"), (2, 2));
    // Created while paused: nothing yet.
    post(&nsqd, "/channel/create?topic=t&channel=b");
    assert_eq!(channel_counts(&nsqd, "t", "b"), (0, 0));
    // The channel delivers what it had, and only that.
    assert_eq!(consume(&nsqd, "t", "a", 2), ["m1", "m2"]);
    assert_eq!(channel_counts(&nsqd, "t", "a"), (0, 2));
    assert_eq!(topic_counts(&nsqd, "t"), (3, 5, true));

    // A restart keeps the pause and what the topic holds; counters start again at 0.
    assert!(nsqd.terminate().success());
    nsqd.restart();
    assert_eq!(topic_counts(&nsqd, "t"), (3, 0, true));
    assert_eq!(channel_counts(&nsqd, "t", "a"), (0, 0));
    assert_eq!(channel_counts(&nsqd, "t", "b"), (0, 0));

    post(&nsqd, "/topic/unpause?topic=t");
    assert_eq!(topic_counts(&nsqd, "t"), (0, 0, false));
    assert_eq!(channel_counts(&nsqd, "t", "a"), (3, 3));
    assert_eq!(channel_counts(&nsqd, "t", "b"), (3, 3));
    assert_eq!(consume(&nsqd, "t", "b", 3), ["p1", "p2", "p3"]);
    assert_eq!(consume(&nsqd, "t", "a", 3), ["p1", "p2", "p3"]);
}

#[test]
fn the_text_stats_mark_a_paused_topic_and_channel_as_nsq_does() {
    let nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=t");
    post(&nsqd, "/channel/create?topic=t&channel=a");
    post(&nsqd, "/channel/create?topic=t&channel=b");
    publish(&nsqd, "t", "x");
    post(&nsqd, "/topic/pause?topic=t");
    post(&nsqd, "/channel/pause?topic=t&channel=a");
    publish(&nsqd, "t", "y");
    let text = http_get(&nsqd.url("/stats?format=text")).body;
    for line in [
        "\n*P [t              ] depth: 1     be-depth: 1     msgs: 2        e2e%: ",
        "\n   *P [a                        ] depth: 1     be-depth: 1     inflt: 0    def: 0    ",
        "\n      [b                        ] depth: 1     be-depth: 1     inflt: 0    def: 0    ",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.starts_with("nsqd v1.3.0 (built w/"), "{text}");
}
