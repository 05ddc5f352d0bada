//! An admin action nsqd answered 200 survives kill -9 right after the answer: emptying a
//! channel or a topic, pausing, deleting. (Cursors are otherwise persisted about once a
//! second, so a change that waited for that persist came back after a crash.)

use nsq_server::protocol::Frame;
use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use std::time::Duration;

fn post(nsqd: &Nsqd, path: &str, body: &[u8]) {
    let reply = http_post(&nsqd.url(path), body);
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
}

fn publish(nsqd: &Nsqd, count: usize) {
    let lines: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
    post(nsqd, "/mpub?topic=t", lines.join("\n").as_bytes());
}

/// Bodies channel `channel` of topic `t` delivers until it goes quiet (FIN'd).
fn drain(nsqd: &Nsqd, channel: &str) -> Vec<String> {
    let mut client = RawClient::connect(nsqd.tcp);
    client.subscribe("t", channel);
    client.send_raw(b"RDY 100\n");
    let mut got = Vec::new();
    while let Some(frame) = client.try_frame(Duration::from_millis(1500)) {
        if let Frame::Message { id, body, .. } = frame {
            got.push(String::from_utf8_lossy(&body).into_owned());
            client.send_raw(format!("FIN {}\n", String::from_utf8_lossy(&id)).as_bytes());
        }
    }
    got
}

fn channel_depth(nsqd: &Nsqd, channel: &str) -> u64 {
    let stats = http_get(&nsqd.url("/stats?format=json&topic=t")).json();
    stats["topics"][0]["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["channel_name"] == channel))
        .and_then(|c| c["depth"].as_u64())
        .expect("channel in stats")
}

#[test]
fn emptied_channel_stays_empty_after_kill9() {
    let mut nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=t", b"");
    post(&nsqd, "/channel/create?topic=t&channel=c", b"");
    post(&nsqd, "/channel/create?topic=t&channel=other", b"");
    publish(&nsqd, 50);
    assert_eq!(channel_depth(&nsqd, "c"), 50);
    post(&nsqd, "/channel/empty?topic=t&channel=c", b"");
    nsqd.kill9();
    nsqd.restart();
    assert_eq!(channel_depth(&nsqd, "c"), 0, "{}", nsqd.log());
    assert_eq!(drain(&nsqd, "c"), Vec::<String>::new());
    assert_eq!(
        drain(&nsqd, "other").len(),
        50,
        "other channels keep theirs"
    );
}

#[test]
fn emptied_topic_stays_empty_after_kill9() {
    let mut nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=t", b"");
    publish(&nsqd, 40);
    post(&nsqd, "/topic/empty?topic=t", b"");
    nsqd.kill9();
    nsqd.restart();
    let stats = http_get(&nsqd.url("/stats?format=json&topic=t")).json();
    assert_eq!(stats["topics"][0]["depth"], 0, "{stats}");
    assert_eq!(
        drain(&nsqd, "c"),
        Vec::<String>::new(),
        "a first channel gets no emptied backlog"
    );
}

#[test]
fn emptied_topic_with_a_channel_keeps_the_channel_and_survives_kill9() {
    // Both admin actions, one after the other, then the crash.
    let mut nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=t", b"");
    post(&nsqd, "/channel/create?topic=t&channel=c", b"");
    publish(&nsqd, 30);
    post(&nsqd, "/topic/empty?topic=t", b"");
    post(&nsqd, "/channel/empty?topic=t&channel=c", b"");
    nsqd.kill9();
    nsqd.restart();
    assert_eq!(drain(&nsqd, "c"), Vec::<String>::new());
}
