//! `#ephemeral` channels and topics go away with their last consumer, as in NSQ (so every
//! `nsq_tail` run does not leave a channel behind that receives every message forever);
//! durable ones stay.

use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use std::time::{Duration, Instant};

/// Topic -> channel names, from `/stats`.
fn channels(nsqd: &Nsqd, topic: &str) -> Option<Vec<String>> {
    let stats = http_get(&nsqd.url("/stats?format=json")).json();
    let topics = stats["topics"].as_array()?.clone();
    let t = topics.iter().find(|t| t["topic_name"] == topic)?;
    Some(
        t["channels"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["channel_name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ephemeral_channel_and_topic_go_with_their_last_client() {
    let nsqd = Nsqd::start(&[]);
    http_post(&nsqd.url("/topic/create?topic=t"), b"");
    http_post(&nsqd.url("/channel/create?topic=t&channel=durable"), b"");

    let mut a = RawClient::connect(nsqd.tcp);
    a.subscribe("t", "tail#ephemeral");
    let mut b = RawClient::connect(nsqd.tcp);
    b.subscribe("t", "tail#ephemeral");
    let mut durable = RawClient::connect(nsqd.tcp);
    durable.subscribe("t", "durable");
    assert_eq!(
        channels(&nsqd, "t").map(|mut c| {
            c.sort();
            c
        }),
        Some(vec!["durable".to_string(), "tail#ephemeral".to_string()])
    );

    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        channels(&nsqd, "t").is_some_and(|c| c.contains(&"tail#ephemeral".to_string())),
        "one client left: the channel stays"
    );
    drop(b);
    eventually("the ephemeral channel is deleted", || {
        channels(&nsqd, "t") == Some(vec!["durable".to_string()])
    });
    drop(durable);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        channels(&nsqd, "t"),
        Some(vec!["durable".to_string()]),
        "durable channels stay"
    );

    // An ephemeral topic goes with its last channel.
    let mut c = RawClient::connect(nsqd.tcp);
    c.subscribe("e#ephemeral", "c#ephemeral");
    assert!(channels(&nsqd, "e#ephemeral").is_some());
    drop(c);
    eventually("the ephemeral topic is deleted", || {
        channels(&nsqd, "e#ephemeral").is_none()
    });
}
