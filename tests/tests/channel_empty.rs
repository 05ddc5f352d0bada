//! Emptying a channel, as NSQ v1.3.0 does it (read off the reference binary): what was
//! queued, deferred or in flight is gone, the subscribed clients' `in_flight_count` drops to 0
//! at once, a late FIN of an emptied message fails without closing the connection, and the
//! client's RDY room is its own again: the next message is delivered at once.

use nsq_server::protocol::{Command, Frame};
use nsq_tests::{http_get, http_post, Nsqd, RawClient};

fn post(nsqd: &Nsqd, path: &str, body: &[u8]) {
    let reply = http_post(&nsqd.url(path), body);
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
}

#[test]
fn an_emptied_channel_forgets_its_clients_in_flight_messages() {
    let nsqd = Nsqd::start(&[]);
    post(&nsqd, "/topic/create?topic=t", b"");
    post(&nsqd, "/channel/create?topic=t&channel=a", b"");
    post(&nsqd, "/pub?topic=t", b"m0");
    post(&nsqd, "/pub?topic=t", b"m1");
    post(&nsqd, "/pub?topic=t&defer=600000", b"later");
    let mut c = RawClient::connect(nsqd.tcp);
    c.subscribe("t", "a");
    c.send(&Command::Rdy(1));
    let (_, id, body) = c.message();
    assert_eq!(body, b"m0");

    post(&nsqd, "/channel/empty?topic=t&channel=a", b"");
    let s = http_get(&nsqd.url("/stats?format=json&topic=t")).json();
    let channel = &s["topics"][0]["channels"][0];
    assert_eq!(channel["depth"], 0);
    assert_eq!(channel["in_flight_count"], 0);
    assert_eq!(channel["deferred_count"], 0);
    assert_eq!(channel["message_count"], 3);
    assert_eq!(channel["clients"][0]["in_flight_count"], 0);

    c.send_raw(format!("FIN {}\n", String::from_utf8_lossy(&id)).as_bytes());
    match c.frame() {
        Frame::Error(e) => assert!(
            e.starts_with(b"E_FIN_FAILED FIN ") && e.ends_with(b" failed ID not in flight"),
            "{}",
            String::from_utf8_lossy(&e)
        ),
        other => panic!("expected E_FIN_FAILED, got {other:?}"),
    }
    // RDY 1 and nothing in flight: the next message comes at once.
    post(&nsqd, "/pub?topic=t", b"m2");
    assert_eq!(c.message().2, b"m2");
}
