//! HTTP answers at the edge, as NSQ's nsqd gives them: a declared body too big is refused at
//! once with 413 (before any of it is read), and an HTTP/2 prior-knowledge preface gets 405
//! instead of a closed socket. (Measured against NSQ v1.3.0's nsqd.)

use nsq_tests::{http_get, Nsqd};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `request` raw and reads the answer until the server closes the connection.
fn exchange(nsqd: &Nsqd, request: &[u8]) -> String {
    let mut s = TcpStream::connect(nsqd.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request).expect("send");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_and_body(answer: &str) -> (&str, &str) {
    let status = answer.split("\r\n").next().unwrap_or("");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status.get(9..12).unwrap_or(""), body)
}

#[test]
fn a_huge_declared_body_is_refused_before_it_is_read() {
    let nsqd = Nsqd::start(&[]);
    for (path, code) in [("/pub", "MSG_TOO_BIG"), ("/mpub", "BODY_TOO_BIG")] {
        let request = format!(
            "POST {path}?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\nabc"
        );
        let answer = exchange(&nsqd, request.as_bytes());
        assert_eq!(
            status_and_body(&answer),
            ("413", format!("{{\"message\":\"{code}\"}}").as_str()),
            "{answer}"
        );
    }
    // Just over --max-msg-size (1 MiB by default) is too big as well; nothing was published.
    let answer = exchange(
        &nsqd,
        b"POST /pub?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
    );
    assert_eq!(status_and_body(&answer).0, "413", "{answer}");
    let answer = exchange(
        &nsqd,
        b"POST /pub?topic=t HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(status_and_body(&answer), ("200", "OK"), "{answer}");
    let stats = http_get(&nsqd.url("/stats?format=json&topic=t")).json();
    assert_eq!(stats["topics"][0]["message_count"].as_u64(), Some(1));
}

#[test]
fn an_http2_preface_gets_method_not_allowed() {
    let nsqd = Nsqd::start(&[]);
    let answer = exchange(&nsqd, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert_eq!(
        status_and_body(&answer),
        ("405", "{\"message\":\"METHOD_NOT_ALLOWED\"}"),
        "{answer}"
    );
    assert!(
        answer.contains("Allow: GET, OPTIONS, POST, PUT"),
        "{answer}"
    );
    // A request that merely starts like the preface is served as usual.
    let answer = exchange(
        &nsqd,
        b"PRIX /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_and_body(&answer).0, "405", "{answer}");
    assert_eq!(http_get(&nsqd.url("/ping")).status, 200);
}

/// Sends `body` in HTTP/1.1 chunks (no `Content-Length`), so only reading it can tell its size.
fn chunked_post(nsqd: &Nsqd, path: &str, body: &[u8]) -> String {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(64 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    exchange(nsqd, &request)
}

#[test]
fn bodies_up_to_nsqs_limits_are_taken_and_longer_ones_get_nsqs_413() {
    let nsqd = Nsqd::start(&[]);
    // A 3 MB /mpub is under NSQ's --max-body-size (5 MiB): taken whole, with or without a
    // Content-Length (a generic 2 MB body limit would refuse it).
    let message = vec![b'm'; 100_000];
    let mut body = Vec::new();
    for _ in 0..30 {
        body.extend_from_slice(&message);
        body.push(b'\n');
    }
    let answer = chunked_post(&nsqd, "/mpub?topic=big", &body);
    assert_eq!(status_and_body(&answer), ("200", "OK"), "{answer}");
    let mut request =
        format!("POST /mpub?topic=big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .into_bytes();
    request.extend_from_slice(&body);
    assert_eq!(status_and_body(&exchange(&nsqd, &request)), ("200", "OK"));
    let stats = http_get(&nsqd.url("/stats?format=json&topic=big")).json();
    assert_eq!(stats["topics"][0]["message_count"].as_u64(), Some(60));

    // Chunked bodies past the limits get NSQ's codes, and nothing of them is published.
    let answer = chunked_post(&nsqd, "/pub?topic=big", &vec![b'x'; 1024 * 1024 + 1]);
    assert_eq!(
        status_and_body(&answer),
        ("413", "{\"message\":\"MSG_TOO_BIG\"}"),
        "{answer}"
    );
    let answer = chunked_post(&nsqd, "/mpub?topic=big", &vec![b'x'; 5 * 1024 * 1024 + 1]);
    assert_eq!(
        status_and_body(&answer),
        ("413", "{\"message\":\"BODY_TOO_BIG\"}"),
        "{answer}"
    );
    let stats = http_get(&nsqd.url("/stats?format=json&topic=big")).json();
    assert_eq!(stats["topics"][0]["message_count"].as_u64(), Some(60));
}
