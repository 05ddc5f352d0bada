//! Protocol V2 delivery semantics end to end: RDY flow control, message timeouts, REQ with
//! and without delay, TOUCH, DPUB, MPUB, CLS, consumers sharing a channel, channels each
//! getting every message, and a restart that redelivers nothing finished.

use nsq_server::protocol::{Command, Frame};
use nsq_tests::{http_get, Nsqd, RawClient};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Long enough to see that nothing more arrives when nothing should.
const QUIET: Duration = Duration::from_millis(500);

fn fin(c: &mut RawClient, id: &[u8; 16]) {
    c.send_raw(format!("FIN {}\n", String::from_utf8_lossy(id)).as_bytes());
}

/// The next frame if it is a message; `None` after `wait` of silence (heartbeats skipped).
fn maybe_message(c: &mut RawClient, wait: Duration) -> Option<(u16, [u8; 16], Vec<u8>)> {
    loop {
        match c.try_frame(wait)? {
            Frame::Response(r) if &r[..] == b"_heartbeat_" => continue,
            Frame::Message {
                attempts, id, body, ..
            } => return Some((attempts, id, body.to_vec())),
            other => panic!("expected a message or silence, got {other:?}"),
        }
    }
}

/// A consumer of `topic`/`channel` with `identify` settings (RDY not sent yet).
fn consumer(nsqd: &Nsqd, topic: &str, channel: &str, identify: serde_json::Value) -> RawClient {
    let mut c = RawClient::connect(nsqd.tcp);
    c.identify(identify);
    c.subscribe(topic, channel);
    c
}

/// Waits (polling /stats) until `topic`/`channel` has `in_flight` messages in flight.
fn wait_in_flight(nsqd: &Nsqd, topic: &str, channel: &str, in_flight: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = http_get(&nsqd.url(&format!(
            "/stats?format=json&topic={topic}&channel={channel}"
        )))
        .json();
        let now = stats["topics"][0]["channels"][0]["in_flight_count"].as_u64();
        if now == Some(in_flight) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "in flight stays {now:?}: {stats}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rdy_limits_messages_in_flight() {
    let nsqd = Nsqd::start(&[]);
    let mut publisher = RawClient::connect(nsqd.tcp);
    for i in 0..5 {
        publisher.publish("rdy", format!("m{i}").as_bytes());
    }
    let mut c = consumer(&nsqd, "rdy", "c", json!({}));
    // RDY 0 (the state after SUB): nothing.
    assert!(maybe_message(&mut c, QUIET).is_none());
    c.send_raw(b"RDY 2\n");
    let (_, first, body0) = c.message();
    let (_, _, body1) = c.message();
    assert_eq!((body0, body1), (b"m0".to_vec(), b"m1".to_vec()));
    assert!(
        maybe_message(&mut c, QUIET).is_none(),
        "a third message beyond RDY 2"
    );
    // Each FIN frees one slot.
    fin(&mut c, &first);
    assert_eq!(c.message().2, b"m2");
    assert!(maybe_message(&mut c, QUIET).is_none());
    // RDY 0 stops delivery even with room.
    c.send_raw(b"RDY 0\n");
    assert!(maybe_message(&mut c, QUIET).is_none());
}

#[test]
fn msg_timeout_redelivers_with_attempts_counted() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "timeout", "c", json!({"msg_timeout": 1000}));
    c.publish("timeout", b"slow");
    c.send_raw(b"RDY 1\n");
    let (attempts, id, _) = c.message();
    assert_eq!(attempts, 1);
    let taken = Instant::now();
    let (attempts, again, body) = c.message();
    assert!(taken.elapsed() >= Duration::from_millis(900));
    assert_eq!((attempts, again, body), (2, id, b"slow".to_vec()));
    // The timed-out first delivery can no longer be finished... but the new one can.
    fin(&mut c, &again);
    assert!(maybe_message(&mut c, Duration::from_millis(1500)).is_none());
    let stats = http_get(&nsqd.url("/stats?format=json&topic=timeout")).json();
    assert_eq!(stats["topics"][0]["channels"][0]["timeout_count"], 1);
}

#[test]
fn req_redelivers_after_its_delay_and_req_zero_at_once() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "req", "c", json!({}));
    c.publish("req", b"again");
    c.send_raw(b"RDY 1\n");
    let (_, id, _) = c.message();
    let id_text = String::from_utf8_lossy(&id).into_owned();

    c.send_raw(format!("REQ {id_text} 0\n").as_bytes());
    let (attempts, id2, body) = c.message();
    assert_eq!((attempts, id2, body.as_slice()), (2, id, &b"again"[..]));

    let requeued = Instant::now();
    c.send_raw(format!("REQ {id_text} 1500\n").as_bytes());
    let (attempts, _, _) = c.message();
    assert_eq!(attempts, 3);
    assert!(
        requeued.elapsed() >= Duration::from_millis(1500),
        "redelivered after {:?}",
        requeued.elapsed()
    );
    let stats = http_get(&nsqd.url("/stats?format=json&topic=req")).json();
    assert_eq!(stats["topics"][0]["channels"][0]["requeue_count"], 2);
}

#[test]
fn touch_keeps_a_message_in_flight() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "touch", "c", json!({"msg_timeout": 2000}));
    c.publish("touch", b"long job");
    c.send_raw(b"RDY 1\n");
    let (_, id, _) = c.message();
    let touch = format!("TOUCH {}\n", String::from_utf8_lossy(&id));
    // Touch well inside the timeout for longer than the timeout: no redelivery.
    for _ in 0..4 {
        assert!(maybe_message(&mut c, Duration::from_millis(700)).is_none());
        c.send_raw(touch.as_bytes());
    }
    fin(&mut c, &id);
    // The FIN was accepted (no E_FIN_FAILED) and nothing comes back.
    assert!(c.try_frame(Duration::from_millis(2500)).is_none());
}

#[test]
fn dpub_holds_a_message_back() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "dpub", "c", json!({}));
    c.send_raw(b"RDY 10\n");
    let published = Instant::now();
    c.send(&Command::Dpub {
        topic: "dpub".into(),
        defer_ms: 1500,
        body: b"deferred".to_vec().into(),
    });
    c.expect_response(b"OK");
    c.publish("dpub", b"now");
    let (_, id, body) = c.message();
    assert_eq!(body, b"now");
    fin(&mut c, &id);
    let (attempts, _, body) = c.message();
    assert_eq!((attempts, body.as_slice()), (1, &b"deferred"[..]));
    assert!(published.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn mpub_delivers_all_messages_in_order() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "mpub", "c", json!({}));
    c.send(&Command::Mpub {
        topic: "mpub".into(),
        bodies: vec![
            b"a".to_vec().into(),
            b"b".to_vec().into(),
            b"c".to_vec().into(),
        ],
    });
    c.expect_response(b"OK");
    c.send_raw(b"RDY 10\n");
    let bodies: Vec<Vec<u8>> = (0..3).map(|_| c.message().2).collect();
    assert_eq!(bodies, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn cls_stops_delivery_and_lets_in_flight_finish() {
    let nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "cls", "c", json!({}));
    for body in [&b"one"[..], b"two", b"three"] {
        c.publish("cls", body);
    }
    c.send_raw(b"RDY 1\n");
    let (_, id, _) = c.message();
    c.send(&Command::Cls);
    c.expect_response(b"CLOSE_WAIT");
    // RDY after CLS is ignored; the held message can still be finished.
    c.send_raw(b"RDY 10\n");
    assert!(maybe_message(&mut c, QUIET).is_none());
    fin(&mut c, &id);
    wait_in_flight(&nsqd, "cls", "c", 0);
    // NSQ leaves closing to the client; the connection still answers.
    c.publish("cls", b"four");
    c.send(&Command::Cls);
    c.expect_error("E_INVALID cannot CLS in current state");
    drop(c);
    // The rest is there for the next consumer.
    let mut next = consumer(&nsqd, "cls", "c", json!({}));
    next.send_raw(b"RDY 10\n");
    let bodies: BTreeSet<Vec<u8>> = (0..3).map(|_| next.message().2).collect();
    let expected: BTreeSet<Vec<u8>> = [&b"two"[..], b"three", b"four"]
        .iter()
        .map(|b| b.to_vec())
        .collect();
    assert_eq!(bodies, expected);
}

#[test]
fn consumers_of_one_channel_share_messages_by_rdy() {
    let nsqd = Nsqd::start(&[]);
    let mut a = consumer(&nsqd, "share", "c", json!({}));
    let mut b = consumer(&nsqd, "share", "c", json!({}));
    let mut publisher = RawClient::connect(nsqd.tcp);
    for i in 0..10 {
        publisher.publish("share", format!("m{i}").as_bytes());
    }
    a.send_raw(b"RDY 3\n");
    b.send_raw(b"RDY 7\n");
    let mut seen = BTreeSet::new();
    for (client, count) in [(&mut a, 3), (&mut b, 7)] {
        for _ in 0..count {
            assert!(seen.insert(client.message().2), "a message went out twice");
        }
        assert!(maybe_message(client, QUIET).is_none(), "more than RDY");
    }
    assert_eq!(seen.len(), 10);
}

#[test]
fn every_channel_gets_every_message() {
    let nsqd = Nsqd::start(&[]);
    let mut one = consumer(&nsqd, "fanout", "one", json!({}));
    let mut two = consumer(&nsqd, "fanout", "two", json!({}));
    one.send_raw(b"RDY 10\n");
    two.send_raw(b"RDY 10\n");
    let mut publisher = RawClient::connect(nsqd.tcp);
    for i in 0..5 {
        publisher.publish("fanout", format!("m{i}").as_bytes());
    }
    for c in [&mut one, &mut two] {
        let bodies: Vec<Vec<u8>> = (0..5).map(|_| c.message().2).collect();
        let expected: Vec<Vec<u8>> = (0..5).map(|i| format!("m{i}").into_bytes()).collect();
        assert_eq!(bodies, expected);
    }
}

#[test]
fn messages_survive_a_restart_without_finished_ones() {
    let mut nsqd = Nsqd::start(&[]);
    let mut c = consumer(&nsqd, "durable", "c", json!({}));
    for i in 0..6 {
        c.publish("durable", format!("m{i}").as_bytes());
    }
    c.send_raw(b"RDY 3\n");
    let ids: Vec<[u8; 16]> = (0..3).map(|_| c.message().1).collect();
    // RDY 0 first, so the FINs make no room for more deliveries.
    c.send_raw(b"RDY 0\n");
    for id in &ids {
        fin(&mut c, id);
    }
    // Commands run in order: the OK of this PUB means the FINs are done.
    c.publish("other", b"x");
    wait_in_flight(&nsqd, "durable", "c", 0);
    drop(c);
    assert!(nsqd.terminate().success(), "{}", nsqd.log());
    nsqd.restart();

    let mut c = consumer(&nsqd, "durable", "c", json!({}));
    c.send_raw(b"RDY 10\n");
    let bodies: Vec<Vec<u8>> = (0..3).map(|_| c.message().2).collect();
    let expected: Vec<Vec<u8>> = (3..6).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(bodies, expected);
    assert!(maybe_message(&mut c, QUIET).is_none());
}
