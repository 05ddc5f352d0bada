//! NSQ v1.3.0 holds a topic's messages while it has no channel, and its first channel gets
//! them whether or not it is `#ephemeral`; later channels start at the tail. So `nsq_tail -n
//! 10` on a topic holding 10 messages prints them and exits instead of waiting forever.

use nsq_server::protocol::Command;
use nsq_tests::{http_get, http_post, run_tool, Nsqd, RawClient};
use std::time::Duration;

fn publish(nsqd: &Nsqd, topic: &str, body: &str) {
    let url = nsqd.url(&format!("/pub?topic={topic}"));
    assert_eq!(http_post(&url, body.as_bytes()).status, 200);
}

/// The topic's `depth` in `/stats`.
fn topic_depth(nsqd: &Nsqd, topic: &str) -> u64 {
    let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
    stats["topics"][0]["depth"].as_u64().expect("depth")
}

#[test]
fn nsq_tail_gets_the_backlog_of_a_topic_without_channels() {
    let nsqd = Nsqd::start(&[]);
    for i in 0..10 {
        publish(&nsqd, "t", &format!("m{i}"));
    }
    assert_eq!(topic_depth(&nsqd, "t"), 10);
    let address = nsqd.tcp.to_string();
    let out = run_tool(
        "nsq_tail",
        &["--topic=t", "--nsqd-tcp-address", &address, "-n", "10"],
        b"",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(lines, expected);
    // The backlog went to that channel: the topic holds nothing now.
    assert_eq!(topic_depth(&nsqd, "t"), 0);
}

#[test]
fn an_ephemeral_first_channel_gets_the_backlog_and_later_channels_the_tail() {
    let nsqd = Nsqd::start(&[]);
    publish(&nsqd, "t", "old");
    let mut first = RawClient::connect(nsqd.tcp);
    first.subscribe("t", "a#ephemeral");
    first.send(&Command::Rdy(10));
    assert_eq!(first.message().2, b"old");
    // A second channel, ephemeral or durable, sees only what comes after it.
    let mut second = RawClient::connect(nsqd.tcp);
    second.subscribe("t", "b#ephemeral");
    second.send(&Command::Rdy(10));
    assert_eq!(
        http_post(&nsqd.url("/channel/create?topic=t&channel=durable"), b"").status,
        200
    );
    publish(&nsqd, "t", "new");
    assert_eq!(first.message().2, b"new");
    assert_eq!(second.message().2, b"new");
    let stats = http_get(&nsqd.url("/stats?format=json&topic=t&channel=durable")).json();
    assert_eq!(stats["topics"][0]["channels"][0]["depth"], 1);
}

#[test]
fn a_topic_whose_last_channel_left_holds_new_messages_for_the_next_first_channel() {
    let nsqd = Nsqd::start(&[]);
    let mut tail = RawClient::connect(nsqd.tcp);
    tail.subscribe("t", "tail#ephemeral");
    tail.send(&Command::Rdy(10));
    publish(&nsqd, "t", "seen");
    assert_eq!(tail.message().2, b"seen");
    drop(tail);
    // The ephemeral channel goes with its client; the topic then holds what comes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = http_get(&nsqd.url("/stats?format=json&topic=t")).json();
        if stats["topics"][0]["channels"]
            .as_array()
            .is_some_and(Vec::is_empty)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "channel stayed: {stats}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    publish(&nsqd, "t", "held");
    assert_eq!(topic_depth(&nsqd, "t"), 1);
    let mut next = RawClient::connect(nsqd.tcp);
    next.subscribe("t", "next#ephemeral");
    next.send(&Command::Rdy(10));
    assert_eq!(next.message().2, b"held");
}
