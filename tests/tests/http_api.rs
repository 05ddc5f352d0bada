//! nsqd's HTTP API against NSQ v1.3.0's answers: /ping, /info, /pub, /mpub, topic and channel
//! actions, methods and unknown paths. (/stats and /config have their own files.)

use nsq_tests::http::{call, expect_error};
use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use serde_json::json;
use std::time::{Duration, Instant};

/// Subscribes to `topic`/`channel` with RDY `rdy`.
fn consumer(nsqd: &Nsqd, topic: &str, channel: &str, rdy: u32) -> RawClient {
    let mut c = RawClient::connect(nsqd.tcp);
    c.subscribe(topic, channel);
    c.send_raw(format!("RDY {rdy}\n").as_bytes());
    c
}

/// The next message body, `None` after `wait` of silence.
fn maybe_body(c: &mut RawClient, wait: Duration) -> Option<Vec<u8>> {
    loop {
        match c.try_frame(wait)? {
            nsq_server::protocol::Frame::Message { body, .. } => return Some(body.to_vec()),
            nsq_server::protocol::Frame::Response(r) if &r[..] == b"_heartbeat_" => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn channel_stats(nsqd: &Nsqd, topic: &str, channel: &str) -> serde_json::Value {
    let stats = http_get(&nsqd.url(&format!(
        "/stats?format=json&topic={topic}&channel={channel}"
    )))
    .json();
    stats["topics"][0]["channels"][0].clone()
}

#[test]
fn ping_info_and_unknown_paths() {
    let nsqd = Nsqd::start(&[]);
    let ping = call("GET", &nsqd.url("/ping"), b"");
    assert_eq!((ping.status, ping.body.as_str()), (200, "OK"));
    let info = http_get(&nsqd.url("/info")).json();
    let keys: Vec<&str> = info
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "broadcast_address",
            "hostname",
            "http_port",
            "max_deflate_level",
            "max_heartbeat_interval",
            "max_output_buffer_size",
            "max_output_buffer_timeout",
            // ours: this nsqd's own release (NSQ's `version` stays 1.3.0)
            "nsq_rs_version",
            "start_time",
            "tcp_port",
            "version"
        ]
    );
    assert_eq!(info["version"], "1.3.0");
    assert_eq!(info["broadcast_address"], "127.0.0.1");
    assert_eq!(info["tcp_port"], nsqd.tcp.port());
    assert_eq!(info["http_port"], nsqd.http.port());
    assert_eq!(info["max_heartbeat_interval"], 60_000_000_000_u64);
    // NSQ's field order, as Go serializes its struct.
    let raw = http_get(&nsqd.url("/info")).body;
    assert!(
        raw.starts_with(r#"{"version":"1.3.0","broadcast_address":"#),
        "{raw}"
    );

    for (method, path) in [("POST", "/ping"), ("POST", "/info"), ("POST", "/stats")] {
        let a = call(method, &nsqd.url(path), b"");
        assert_eq!(
            (a.status, a.allow.as_str()),
            (405, "GET, OPTIONS"),
            "{path}"
        );
        assert_eq!(a.body, r#"{"message":"METHOD_NOT_ALLOWED"}"#);
        assert_eq!(a.nsq_type, "nsq; version=1.0");
    }
    expect_error(&nsqd, "GET", "/nope", b"", 404, "NOT_FOUND");
    expect_error(&nsqd, "POST", "/topic/bogus?topic=t", b"", 404, "NOT_FOUND");
    expect_error(
        &nsqd,
        "POST",
        "/channel/bogus?topic=t&channel=c",
        b"",
        404,
        "NOT_FOUND",
    );
}

#[test]
fn pub_accepts_defers_and_refuses_like_nsq() {
    let nsqd = Nsqd::start(&["--max-msg-size=100", "--max-req-timeout=10s"]);
    let ok = call("POST", &nsqd.url("/pub?topic=h"), b"hello");
    assert_eq!((ok.status, ok.body.as_str()), (200, "OK"));
    assert_eq!(ok.nsq_type, "nsq; version=1.0");

    expect_error(&nsqd, "POST", "/pub", b"x", 400, "MISSING_ARG_TOPIC");
    expect_error(&nsqd, "POST", "/pub?topic=a!b", b"x", 400, "INVALID_TOPIC");
    expect_error(&nsqd, "POST", "/pub?topic=h", b"", 400, "MSG_EMPTY");
    expect_error(
        &nsqd,
        "POST",
        "/pub?topic=h",
        &[b'x'; 101],
        413,
        "MSG_TOO_BIG",
    );
    for defer in ["-1", "abc", "10001"] {
        let path = format!("/pub?topic=h&defer={defer}");
        expect_error(&nsqd, "POST", &path, b"x", 400, "INVALID_DEFER");
    }
    for method in ["GET", "PUT"] {
        let a = call(method, &nsqd.url("/pub?topic=h"), b"x");
        assert_eq!((a.status, a.allow.as_str()), (405, "OPTIONS, POST"));
    }

    // defer holds the message back.
    let mut c = consumer(&nsqd, "deferred", "c", 10);
    let published = Instant::now();
    assert_eq!(
        http_post(&nsqd.url("/pub?topic=deferred&defer=1500"), b"later").body,
        "OK"
    );
    assert_eq!(
        http_post(&nsqd.url("/pub?topic=deferred"), b"now").body,
        "OK"
    );
    assert_eq!(c.message().2, b"now");
    assert_eq!(c.message().2, b"later");
    assert!(published.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn mpub_text_and_binary() {
    let nsqd = Nsqd::start(&["--max-msg-size=100", "--max-body-size=300"]);
    let mut c = consumer(&nsqd, "m", "c", 100);
    // Text: one message per line, empty lines skipped.
    assert_eq!(
        http_post(&nsqd.url("/mpub?topic=m"), b"a\nb\n\nc\n").body,
        "OK"
    );
    // Binary: [u32 count]([u32 size][data])*.
    let binary = b"\0\0\0\x02\0\0\0\x01d\0\0\0\x02ef";
    for flag in ["true", "1"] {
        let path = format!("/mpub?topic=m&binary={flag}");
        assert_eq!(http_post(&nsqd.url(&path), binary).body, "OK");
    }
    let bodies: Vec<Vec<u8>> = (0..7).map(|_| c.message().2).collect();
    let expected: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"ef", b"d", b"ef"];
    assert_eq!(bodies, expected);

    expect_error(&nsqd, "POST", "/mpub", b"a", 400, "MISSING_ARG_TOPIC");
    expect_error(&nsqd, "POST", "/mpub?topic=a!b", b"a", 400, "INVALID_TOPIC");
    expect_error(
        &nsqd,
        "POST",
        "/mpub?topic=m",
        &[b'x'; 301],
        413,
        "BODY_TOO_BIG",
    );
    let mut long_line = vec![b'x'; 101];
    long_line.extend_from_slice(b"\nshort");
    expect_error(
        &nsqd,
        "POST",
        "/mpub?topic=m",
        &long_line,
        413,
        "MSG_TOO_BIG",
    );
    // NSQ answers every bad binary body with 413.
    let bin = "/mpub?topic=m&binary=true";
    expect_error(&nsqd, "POST", bin, b"\0\0", 413, "BAD_BODY");
    expect_error(&nsqd, "POST", bin, b"\0\0\0\0", 413, "BAD_BODY");
    expect_error(
        &nsqd,
        "POST",
        bin,
        b"\0\0\0\x01\0\0\0\x05ab",
        413,
        "BAD_MESSAGE",
    );
    expect_error(
        &nsqd,
        "POST",
        bin,
        b"\0\0\0\x01\0\0\0\0",
        413,
        "BAD_MESSAGE",
    );
    let mut too_big = b"\0\0\0\x01\0\0\0\x65".to_vec();
    too_big.extend_from_slice(&[b'x'; 101]);
    expect_error(&nsqd, "POST", bin, &too_big, 413, "BAD_MESSAGE");
    let a = call("GET", &nsqd.url("/mpub?topic=m"), b"");
    assert_eq!((a.status, a.allow.as_str()), (405, "OPTIONS, POST"));
    // Nothing of the refused bodies was published (all or nothing).
    assert!(maybe_body(&mut c, Duration::from_millis(300)).is_none());
}

#[test]
fn topic_and_channel_actions_answer_like_nsq() {
    let nsqd = Nsqd::start(&[]);
    for action in ["create", "delete", "empty", "pause", "unpause"] {
        let a = call("GET", &nsqd.url(&format!("/topic/{action}?topic=t")), b"");
        assert_eq!((a.status, a.allow.as_str()), (405, "OPTIONS, POST"));
        let a = call(
            "GET",
            &nsqd.url(&format!("/channel/{action}?topic=t&channel=c")),
            b"",
        );
        assert_eq!((a.status, a.allow.as_str()), (405, "OPTIONS, POST"));
        let path = format!("/topic/{action}");
        expect_error(&nsqd, "POST", &path, b"", 400, "MISSING_ARG_TOPIC");
        let path = format!("/channel/{action}?channel=c");
        expect_error(&nsqd, "POST", &path, b"", 400, "MISSING_ARG_TOPIC");
        let path = format!("/channel/{action}?topic=t");
        expect_error(&nsqd, "POST", &path, b"", 400, "MISSING_ARG_CHANNEL");
        let path = format!("/channel/{action}?topic=a!b&channel=c");
        expect_error(&nsqd, "POST", &path, b"", 400, "INVALID_ARG_TOPIC");
        let path = format!("/channel/{action}?topic=t&channel=a!b");
        expect_error(&nsqd, "POST", &path, b"", 400, "INVALID_ARG_CHANNEL");
        let path = format!("/channel/{action}?topic=missing&channel=c");
        expect_error(&nsqd, "POST", &path, b"", 404, "TOPIC_NOT_FOUND");
    }
    // NSQ checks names for create/empty only; delete and (un)pause just don't find them.
    expect_error(
        &nsqd,
        "POST",
        "/topic/create?topic=a!b",
        b"",
        400,
        "INVALID_TOPIC",
    );
    expect_error(
        &nsqd,
        "POST",
        "/topic/empty?topic=a!b",
        b"",
        400,
        "INVALID_TOPIC",
    );
    for action in ["delete", "empty", "pause", "unpause"] {
        let path = format!("/topic/{action}?topic=a!b");
        if action != "empty" {
            expect_error(&nsqd, "POST", &path, b"", 404, "TOPIC_NOT_FOUND");
        }
        let path = format!("/topic/{action}?topic=nothere");
        expect_error(&nsqd, "POST", &path, b"", 404, "TOPIC_NOT_FOUND");
    }

    let created = call("POST", &nsqd.url("/topic/create?topic=t"), b"");
    assert_eq!((created.status, created.body.as_str()), (200, ""));
    for action in ["delete", "empty", "pause", "unpause"] {
        let path = format!("/channel/{action}?topic=t&channel=nothere");
        expect_error(&nsqd, "POST", &path, b"", 404, "CHANNEL_NOT_FOUND");
    }
    assert_eq!(
        call("POST", &nsqd.url("/channel/create?topic=t&channel=c"), b"").status,
        200
    );
    assert_eq!(channel_stats(&nsqd, "t", "c")["channel_name"], "c");
    assert_eq!(
        call("POST", &nsqd.url("/channel/delete?topic=t&channel=c"), b"").status,
        200
    );
    let topics = http_get(&nsqd.url("/stats?format=json&topic=t")).json();
    assert_eq!(topics["topics"][0]["channels"], json!([]));
    assert_eq!(
        call("POST", &nsqd.url("/topic/delete?topic=t"), b"").status,
        200
    );
    let stats = http_get(&nsqd.url("/stats?format=json&topic=t")).json();
    assert_eq!(stats["topics"], json!(null));
}

#[test]
fn pause_stops_and_unpause_resumes_delivery() {
    let nsqd = Nsqd::start(&[]);
    let quiet = Duration::from_millis(500);
    for (scope, query) in [("channel", "topic=p&channel=c"), ("topic", "topic=p")] {
        let mut c = consumer(&nsqd, "p", "c", 10);
        let pause = format!("/{scope}/pause?{query}");
        assert_eq!(call("POST", &nsqd.url(&pause), b"").status, 200);
        assert_eq!(channel_stats(&nsqd, "p", "c")["paused"], scope == "channel");
        assert_eq!(
            http_post(&nsqd.url("/pub?topic=p"), scope.as_bytes()).body,
            "OK"
        );
        assert!(
            maybe_body(&mut c, quiet).is_none(),
            "delivered while {scope} paused"
        );
        let unpause = format!("/{scope}/unpause?{query}");
        assert_eq!(call("POST", &nsqd.url(&unpause), b"").status, 200);
        assert_eq!(
            maybe_body(&mut c, Duration::from_secs(5)).as_deref(),
            Some(scope.as_bytes())
        );
    }
}

#[test]
fn empty_discards_queued_messages() {
    let nsqd = Nsqd::start(&[]);
    assert_eq!(
        call("POST", &nsqd.url("/channel/create?topic=e&channel=c"), b"").status,
        404
    );
    assert_eq!(
        call("POST", &nsqd.url("/topic/create?topic=e"), b"").status,
        200
    );
    assert_eq!(
        call("POST", &nsqd.url("/channel/create?topic=e&channel=c"), b"").status,
        200
    );
    for _ in 0..3 {
        assert_eq!(http_post(&nsqd.url("/pub?topic=e"), b"old").body, "OK");
    }
    assert_eq!(channel_stats(&nsqd, "e", "c")["depth"], 3);
    assert_eq!(
        call("POST", &nsqd.url("/channel/empty?topic=e&channel=c"), b"").status,
        200
    );
    assert_eq!(channel_stats(&nsqd, "e", "c")["depth"], 0);
    assert_eq!(http_post(&nsqd.url("/pub?topic=e"), b"new").body, "OK");
    let mut c = consumer(&nsqd, "e", "c", 10);
    assert_eq!(c.message().2, b"new");
    assert!(maybe_body(&mut c, Duration::from_millis(300)).is_none());

    // A topic without channels buffers; emptying it drops that backlog.
    for _ in 0..2 {
        assert_eq!(
            http_post(&nsqd.url("/pub?topic=buffered"), b"old").body,
            "OK"
        );
    }
    assert_eq!(
        call("POST", &nsqd.url("/topic/empty?topic=buffered"), b"").status,
        200
    );
    assert_eq!(
        http_post(&nsqd.url("/pub?topic=buffered"), b"new").body,
        "OK"
    );
    let mut c = consumer(&nsqd, "buffered", "c", 10);
    assert_eq!(c.message().2, b"new");
    assert!(maybe_body(&mut c, Duration::from_millis(300)).is_none());
}
