//! Protocol V2 conformance, the handshake: magic, IDENTIFY and its limits, snappy/deflate
//! streams, TLS and AUTH declined, heartbeats. The expected texts are what NSQ v1.3.0's nsqd
//! answers to the same bytes.

use bytes::BytesMut;
use nsq_server::nsqd::compression::{Compression, StreamDecoder, StreamEncoder};
use nsq_server::protocol::{decode_frame, Command, Frame};
use nsq_tests::raw::{expect_fatal, with_body};
use nsq_tests::{Nsqd, RawClient};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn bad_magic_gets_e_bad_protocol_and_close() {
    let nsqd = Nsqd::start(&[]);
    let mut c = RawClient::connect_without_magic(nsqd.tcp);
    c.send_raw(b"  V1");
    assert_eq!(c.expect_error("E_BAD_PROTOCOL"), "E_BAD_PROTOCOL");
    assert!(c.is_closed(Duration::from_secs(5)));
}

#[test]
fn identify_negotiates_with_nsq_fields_and_defaults() {
    let nsqd = Nsqd::start(&["--max-rdy-count=50"]);
    let mut c = RawClient::connect(nsqd.tcp);
    let answer: serde_json::Value =
        serde_json::from_slice(&c.identify(json!({"feature_negotiation": true})))
            .expect("IDENTIFY answer is JSON");
    assert_eq!(
        answer,
        json!({
            "max_rdy_count": 50, "version": "1.3.0", "max_msg_timeout": 900000,
            "msg_timeout": 60000, "tls_v1": false, "deflate": false, "deflate_level": 6,
            "max_deflate_level": 6, "snappy": false, "sample_rate": 0, "auth_required": false,
            "output_buffer_size": 16384, "output_buffer_timeout": 250
        })
    );
    // NSQ lets a client IDENTIFY again until it subscribes.
    let again = c.identify(json!({
        "feature_negotiation": true, "msg_timeout": 5000, "sample_rate": 10,
        "output_buffer_size": 64, "output_buffer_timeout": -1, "heartbeat_interval": -1,
        "client_id": "cid", "hostname": "host", "user_agent": "test/1"
    }));
    let again: serde_json::Value = serde_json::from_slice(&again).expect("JSON");
    assert_eq!(again["msg_timeout"], 5000);
    assert_eq!(again["sample_rate"], 10);
    assert_eq!(again["output_buffer_size"], 64);
    // A disabled output buffer is reported as NSQ does.
    assert_eq!(again["output_buffer_timeout"], 0);

    // Without feature negotiation the answer is a plain OK.
    let mut plain = RawClient::connect(nsqd.tcp);
    assert_eq!(plain.identify(json!({"client_id": "x"})), b"OK");
    plain.subscribe("identify", "c");
    plain.send(&Command::Identify(b"{}".to_vec().into()));
    assert_eq!(
        plain.expect_error("E_INVALID"),
        "E_INVALID cannot IDENTIFY in current state"
    );
    assert!(plain.is_closed(Duration::from_secs(5)));
}

#[test]
fn identify_out_of_range_values_are_refused_like_nsq() {
    let nsqd = Nsqd::start(&[]);
    let cases: &[(serde_json::Value, &str)] = &[
        (
            json!({"heartbeat_interval": 500}),
            "E_BAD_BODY IDENTIFY heartbeat interval (500) is invalid",
        ),
        (
            json!({"heartbeat_interval": 99999999}),
            "E_BAD_BODY IDENTIFY heartbeat interval (99999999) is invalid",
        ),
        (
            json!({"heartbeat_interval": -2}),
            "E_BAD_BODY IDENTIFY heartbeat interval (-2) is invalid",
        ),
        (
            json!({"output_buffer_size": 10}),
            "E_BAD_BODY IDENTIFY output buffer size (10) is invalid",
        ),
        (
            json!({"output_buffer_size": 10000000}),
            "E_BAD_BODY IDENTIFY output buffer size (10000000) is invalid",
        ),
        (
            json!({"output_buffer_timeout": 1}),
            "E_BAD_BODY IDENTIFY output buffer timeout (1) is invalid",
        ),
        (
            json!({"sample_rate": 100}),
            "E_BAD_BODY IDENTIFY sample rate (100) is invalid",
        ),
        (
            json!({"sample_rate": -1}),
            "E_BAD_BODY IDENTIFY sample rate (-1) is invalid",
        ),
        (
            json!({"msg_timeout": 10}),
            "E_BAD_BODY IDENTIFY msg timeout (10) is invalid",
        ),
        (
            json!({"msg_timeout": 999999999999_i64}),
            "E_BAD_BODY IDENTIFY msg timeout (999999999999) is invalid",
        ),
        (
            json!({"snappy": true, "deflate": true}),
            "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression",
        ),
    ];
    for (body, text) in cases {
        let mut request = body.clone();
        request["feature_negotiation"] = json!(true);
        expect_fatal(
            &nsqd,
            b"",
            &with_body("IDENTIFY", request.to_string().as_bytes()),
            text,
        );
    }
    expect_fatal(
        &nsqd,
        b"",
        &with_body("IDENTIFY", b"not json"),
        "E_BAD_BODY IDENTIFY failed to decode JSON body",
    );
}

#[test]
fn tls_request_is_declined_and_the_connection_keeps_working() {
    let nsqd = Nsqd::start(&[]);
    let mut c = RawClient::connect(nsqd.tcp);
    let answer: serde_json::Value =
        serde_json::from_slice(&c.identify(json!({"feature_negotiation": true, "tls_v1": true})))
            .expect("JSON");
    assert_eq!(answer["tls_v1"], false);
    c.publish("tls", b"still plain");
}

#[test]
fn compression_switched_off_on_the_server_is_not_negotiated() {
    let nsqd = Nsqd::start(&["--snappy=false", "--deflate=false"]);
    for request in [json!({"snappy": true}), json!({"deflate": true})] {
        let mut c = RawClient::connect(nsqd.tcp);
        let mut body = request.clone();
        body["feature_negotiation"] = json!(true);
        let answer: serde_json::Value = serde_json::from_slice(&c.identify(body)).expect("JSON");
        assert_eq!(
            (answer["snappy"].clone(), answer["deflate"].clone()),
            (json!(false), json!(false))
        );
        c.publish("nocompress", b"plain");
    }
}

/// A client speaking through a negotiated compression, the way go-nsq does it.
struct CompressedClient {
    stream: TcpStream,
    encoder: StreamEncoder,
    decoder: StreamDecoder,
    plain: BytesMut,
}

impl CompressedClient {
    /// Connects, IDENTIFYs with `identify`, reads the JSON answer uncompressed, then switches.
    fn connect(
        nsqd: &Nsqd,
        identify: serde_json::Value,
        kind: Compression,
    ) -> (Self, serde_json::Value) {
        let mut stream = TcpStream::connect(nsqd.tcp).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut hello = b"  V2".to_vec();
        hello.extend(with_body("IDENTIFY", identify.to_string().as_bytes()));
        stream.write_all(&hello).expect("write");
        // Read until the answer frame is whole; whatever follows it is already compressed.
        let mut buf = BytesMut::new();
        let answer = loop {
            if let Some(frame) = decode_frame(&mut buf, 1 << 20).expect("frame") {
                break frame;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).expect("read IDENTIFY answer");
            assert!(n > 0, "closed during IDENTIFY");
            buf.extend_from_slice(&chunk[..n]);
        };
        let Frame::Response(json) = answer else {
            panic!("IDENTIFY answered {answer:?}")
        };
        let mut decoder = StreamDecoder::new(&kind);
        let mut plain = BytesMut::new();
        decoder.decode(&buf, &mut plain).expect("decode");
        let client = CompressedClient {
            stream,
            encoder: StreamEncoder::new(&kind),
            decoder,
            plain,
        };
        (client, serde_json::from_slice(&json).expect("JSON"))
    }

    fn send(&mut self, command: &Command) {
        let mut plain = BytesMut::new();
        command.encode(&mut plain);
        let mut wire = Vec::new();
        self.encoder.encode(&plain, &mut wire).expect("compress");
        self.stream.write_all(&wire).expect("write");
    }

    fn frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = decode_frame(&mut self.plain, 1 << 20).expect("frame") {
                if frame == Frame::Response(b"_heartbeat_".to_vec().into()) {
                    continue;
                }
                return frame;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read compressed");
            assert!(n > 0, "server closed the compressed connection");
            self.decoder
                .decode(&chunk[..n], &mut self.plain)
                .expect("server's stream decodes");
        }
    }
}

fn round_trip_through(kind: Compression, identify: serde_json::Value, field: &str) {
    let nsqd = Nsqd::start(&[]);
    let (mut c, answer) = CompressedClient::connect(&nsqd, identify, kind);
    assert_eq!(answer[field], true, "{answer}");
    // The extra OK comes inside the compressed stream.
    assert_eq!(c.frame(), Frame::Response(b"OK".to_vec().into()));
    let body = vec![b'z'; 5000];
    c.send(&Command::Pub {
        topic: "compressed".into(),
        body: body.clone().into(),
    });
    assert_eq!(c.frame(), Frame::Response(b"OK".to_vec().into()));
    c.send(&Command::Sub {
        topic: "compressed".into(),
        channel: "c".into(),
    });
    assert_eq!(c.frame(), Frame::Response(b"OK".to_vec().into()));
    c.send(&Command::Rdy(1));
    match c.frame() {
        Frame::Message {
            attempts, body: b, ..
        } => assert_eq!((attempts, b.to_vec()), (1, body)),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn snappy_switches_both_directions_after_ok() {
    round_trip_through(
        Compression::Snappy,
        json!({"feature_negotiation": true, "snappy": true}),
        "snappy",
    );
}

#[test]
fn deflate_switches_both_directions_after_ok() {
    round_trip_through(
        Compression::Deflate { level: 3 },
        json!({"feature_negotiation": true, "deflate": true, "deflate_level": 3}),
        "deflate",
    );
}

#[test]
fn auth_without_auth_server_is_disabled() {
    let nsqd = Nsqd::start(&[]);
    expect_fatal(
        &nsqd,
        b"",
        &with_body("AUTH", b"secret"),
        "E_AUTH_DISABLED AUTH disabled",
    );
}

#[test]
fn heartbeats_arrive_and_a_silent_client_is_closed() {
    let nsqd = Nsqd::start(&[]);
    let mut c = RawClient::connect(nsqd.tcp);
    c.identify(json!({"heartbeat_interval": 1000}));
    let heartbeat = Frame::Response(b"_heartbeat_".to_vec().into());
    // Answered heartbeats keep the connection alive past two intervals.
    for _ in 0..3 {
        assert_eq!(c.try_frame(Duration::from_secs(5)), Some(heartbeat.clone()));
        c.send(&Command::Nop);
    }
    // Unanswered: closed after missing two, with heartbeats sent until then.
    let silent = Instant::now();
    let mut beats = 0;
    loop {
        match c.try_frame(Duration::from_secs(10)) {
            Some(f) if f == heartbeat => beats += 1,
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    assert!(beats >= 1, "no heartbeat before the close");
    assert!(
        silent.elapsed() < Duration::from_secs(8),
        "closed only after {:?}",
        silent.elapsed()
    );
}
