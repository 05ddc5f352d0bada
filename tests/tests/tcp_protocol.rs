//! Protocol V2 conformance, commands: the error answers and connection fate of bad SUB, RDY,
//! FIN/REQ/TOUCH, PUB/MPUB/DPUB and unknown commands, and a stalled client. The expected texts
//! are what NSQ v1.3.0's nsqd answers to the same bytes.

use bytes::{BufMut, BytesMut};
use nsq_tests::raw::{expect_fatal, with_body};
use nsq_tests::{Nsqd, RawClient};
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(400);

#[test]
fn sub_checks_state_and_names() {
    let nsqd = Nsqd::start(&[]);
    expect_fatal(
        &nsqd,
        b"",
        b"SUB a!b c\n",
        "E_BAD_TOPIC SUB topic name \"a!b\" is not valid",
    );
    expect_fatal(
        &nsqd,
        b"",
        b"SUB t c!d\n",
        "E_BAD_CHANNEL SUB channel name \"c!d\" is not valid",
    );
    expect_fatal(
        &nsqd,
        b"",
        b"SUB t\n",
        "E_INVALID SUB insufficient number of parameters",
    );
    expect_fatal(
        &nsqd,
        b"SUB t c\n",
        b"SUB t c\n",
        "E_INVALID cannot SUB in current state",
    );
    // #ephemeral names are valid.
    let mut c = RawClient::connect(nsqd.tcp);
    c.subscribe("t", "c#ephemeral");
}

#[test]
fn rdy_is_checked_against_state_and_max_rdy_count() {
    let nsqd = Nsqd::start(&["--max-rdy-count=50"]);
    expect_fatal(
        &nsqd,
        b"",
        b"RDY 1\n",
        "E_INVALID cannot RDY in current state",
    );
    expect_fatal(
        &nsqd,
        b"SUB t c\n",
        b"RDY 51\n",
        "E_INVALID RDY count 51 out of range 0-50",
    );
    expect_fatal(
        &nsqd,
        b"SUB t c\n",
        b"RDY -1\n",
        "E_INVALID RDY could not parse count -1",
    );
    expect_fatal(
        &nsqd,
        b"SUB t c\n",
        b"RDY x\n",
        "E_INVALID RDY could not parse count x",
    );
}

#[test]
fn fin_req_touch_of_unknown_ids_fail_without_closing() {
    let nsqd = Nsqd::start(&[]);
    let mut c = RawClient::connect(nsqd.tcp);
    c.subscribe("unknown", "c");
    let id = "0123456789abcdef";
    c.send_raw(format!("FIN {id}\n").as_bytes());
    assert_eq!(
        c.expect_error("E_FIN_FAILED"),
        format!("E_FIN_FAILED FIN {id} failed ID not in flight")
    );
    c.send_raw(format!("REQ {id} 0\n").as_bytes());
    assert_eq!(
        c.expect_error("E_REQ_FAILED"),
        format!("E_REQ_FAILED REQ {id} failed ID not in flight")
    );
    c.send_raw(format!("TOUCH {id}\n").as_bytes());
    assert_eq!(
        c.expect_error("E_TOUCH_FAILED"),
        format!("E_TOUCH_FAILED TOUCH {id} failed ID not in flight")
    );
    // Still usable: a message published now is delivered.
    c.publish("unknown", b"after");
    c.send_raw(b"RDY 1\n");
    let (_, msg_id, body) = c.message();
    assert_eq!(body, b"after");

    // Another client of the channel cannot finish it.
    let mut other = RawClient::connect(nsqd.tcp);
    other.subscribe("unknown", "c");
    other.send_raw(b"FIN ");
    other.send_raw(&msg_id);
    other.send_raw(b"\n");
    assert_eq!(
        other.expect_error("E_FIN_FAILED"),
        format!(
            "E_FIN_FAILED FIN {} failed client does not own message",
            String::from_utf8_lossy(&msg_id)
        )
    );

    // Malformed ids and missing parameters are fatal.
    expect_fatal(
        &nsqd,
        b"SUB t c\n",
        b"FIN 123\n",
        "E_INVALID invalid message ID",
    );
    expect_fatal(
        &nsqd,
        b"SUB t c\n",
        b"REQ 0123456789abcdef\n",
        "E_INVALID REQ insufficient number of params",
    );
    expect_fatal(
        &nsqd,
        b"SUB t c\n",
        b"REQ 0123456789abcdef -1\n",
        "E_INVALID REQ could not parse timeout -1",
    );
    expect_fatal(
        &nsqd,
        b"SUB t c\n",
        b"TOUCH\n",
        "E_INVALID TOUCH insufficient number of params",
    );
    expect_fatal(
        &nsqd,
        b"",
        format!("FIN {id}\n").as_bytes(),
        "E_INVALID cannot FIN in current state",
    );
}

#[test]
fn invalid_commands_are_fatal() {
    let nsqd = Nsqd::start(&[]);
    expect_fatal(&nsqd, b"", b"BOGUS\n", "E_INVALID invalid command BOGUS");
    expect_fatal(&nsqd, b"", b"pub t\n", "E_INVALID invalid command pub");
    expect_fatal(&nsqd, b"", b"\n", "E_INVALID invalid command ");
    expect_fatal(
        &nsqd,
        b"",
        b"AUTH x\n",
        "E_INVALID AUTH invalid number of parameters",
    );
    expect_fatal(
        &nsqd,
        b"",
        b"CLS\n",
        "E_INVALID cannot CLS in current state",
    );
    // A command line that never ends is refused rather than buffered forever (NSQ closes
    // without a word; we send E_INVALID first, which a reset may swallow).
    let mut c = RawClient::connect(nsqd.tcp);
    c.send_raw(&vec![b'A'; 20 * 1024]);
    assert!(c.is_closed(Duration::from_secs(5)));
    // And nsqd is still fine for everyone else.
    RawClient::connect(nsqd.tcp).publish("after_garbage", b"ok");
}

#[test]
fn publish_size_and_name_limits() {
    let nsqd = Nsqd::start(&[
        "--max-msg-size=100",
        "--max-body-size=300",
        "--max-req-timeout=10s",
    ]);
    let big = vec![b'x'; 101];
    let mpub = |messages: &[&[u8]]| {
        let mut body = BytesMut::new();
        body.put_u32(messages.len() as u32);
        for m in messages {
            body.put_u32(m.len() as u32);
            body.put_slice(m);
        }
        with_body("MPUB t", &body)
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            with_body("PUB t", b""),
            "E_BAD_MESSAGE PUB invalid message body size 0",
        ),
        (
            with_body("PUB t", &big),
            "E_BAD_MESSAGE PUB message too big 101 > 100",
        ),
        (
            with_body("PUB a!b", b"x"),
            "E_BAD_TOPIC PUB topic name \"a!b\" is not valid",
        ),
        (
            b"PUB\n".to_vec(),
            "E_INVALID PUB insufficient number of parameters",
        ),
        (
            with_body("DPUB t 10001", b"x"),
            "E_INVALID DPUB timeout 10001 out of range 0-10000",
        ),
        (
            with_body("DPUB t -1", b"x"),
            "E_INVALID DPUB could not parse timeout -1",
        ),
        (
            with_body("DPUB t 1", &big),
            "E_BAD_MESSAGE DPUB message too big 101 > 100",
        ),
        (
            with_body("MPUB t", &[b'x'; 301]),
            "E_BAD_BODY MPUB body too big 301 > 300",
        ),
        (mpub(&[]), "E_BAD_BODY MPUB invalid message count 0"),
        (
            with_body("MPUB t", &100u32.to_be_bytes()),
            "E_BAD_BODY MPUB invalid message count 100",
        ),
        (
            mpub(&[b"ok", &big]),
            "E_BAD_MESSAGE MPUB message too big 101 > 100",
        ),
    ];
    for (bytes, text) in &cases {
        expect_fatal(&nsqd, b"", bytes, text);
    }
    // None of the refused publishes left anything behind (MPUB is all or nothing).
    let stats = nsq_tests::http_get(&nsqd.url("/stats?format=json&topic=t")).json();
    let depth = stats["topics"]
        .as_array()
        .and_then(|t| t.first())
        .map_or(0, |t| t["message_count"].as_u64().unwrap_or(0));
    assert_eq!(depth, 0, "{stats}");
    // The largest allowed sizes pass.
    let mut c = RawClient::connect(nsqd.tcp);
    c.publish("t", &[b'y'; 100]);
    c.send_raw(&with_body("DPUB t 10000", b"later"));
    c.expect_response(b"OK");
}

#[test]
fn a_half_sent_command_does_not_block_other_clients() {
    let nsqd = Nsqd::start(&[]);
    let mut staller = RawClient::connect(nsqd.tcp);
    let full = with_body("PUB stall", b"finally");
    staller.send_raw(&full[..full.len() - 3]);

    let mut other = RawClient::connect(nsqd.tcp);
    other.publish("stall", b"first");
    other.subscribe("stall", "c");
    other.send_raw(b"RDY 10\n");
    assert_eq!(other.message().2, b"first");

    // The staller's command completes when the rest arrives.
    staller.send_raw(&full[full.len() - 3..]);
    staller.expect_response(b"OK");
    assert_eq!(other.message().2, b"finally");
    assert!(staller.try_frame(SHORT).is_none());
}

#[test]
fn max_channel_consumers_refuses_one_more() {
    let nsqd = Nsqd::start(&["--max-channel-consumers=1"]);
    let mut first = RawClient::connect(nsqd.tcp);
    first.subscribe("mc", "c");
    expect_fatal(
        &nsqd,
        b"",
        b"SUB mc c\n",
        "E_SUB_FAILED SUB failed consumers for mc:c exceeds limit of 1",
    );
    // Other channels are not affected.
    RawClient::connect(nsqd.tcp).subscribe("mc", "d");
}
