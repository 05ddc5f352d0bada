//! A command cut short by the client's half-close is answered before nsqd closes, with the
//! texts NSQ v1.3.0 sends for the same bytes: `E_BAD_MESSAGE` for PUB/DPUB/MPUB messages,
//! `E_BAD_BODY` for IDENTIFY, AUTH and MPUB's framing. Nothing of the cut command is published.

use nsq_tests::{http_get, Nsqd, RawClient};
use std::time::Duration;

fn be(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

#[test]
fn a_half_closed_command_gets_nsqs_error_then_the_close() {
    let nsqd = Nsqd::start(&[]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"PUB t\n".to_vec(),
            "E_BAD_MESSAGE PUB failed to read message body size",
        ),
        (
            b"PUB t\n\0\0".to_vec(),
            "E_BAD_MESSAGE PUB failed to read message body size",
        ),
        (
            [b"PUB t\n".to_vec(), be(10), b"abc".to_vec()].concat(),
            "E_BAD_MESSAGE PUB failed to read message body",
        ),
        (
            b"DPUB t 1000\n\0".to_vec(),
            "E_BAD_MESSAGE DPUB failed to read message body size",
        ),
        (
            [b"DPUB t 1000\n".to_vec(), be(10), b"abc".to_vec()].concat(),
            "E_BAD_MESSAGE DPUB failed to read message body",
        ),
        (
            b"MPUB t\n\0".to_vec(),
            "E_BAD_BODY MPUB failed to read body size",
        ),
        (
            [b"MPUB t\n".to_vec(), be(20)].concat(),
            "E_BAD_BODY MPUB failed to read message count",
        ),
        (
            [b"MPUB t\n".to_vec(), be(20), be(2), b"ab".to_vec()].concat(),
            "E_BAD_MESSAGE MPUB failed to read message(0) body size",
        ),
        (
            [
                b"MPUB t\n".to_vec(),
                be(20),
                be(2),
                be(1),
                b"a".to_vec(),
                be(5),
                b"ab".to_vec(),
            ]
            .concat(),
            "E_BAD_MESSAGE MPUB failed to read message body",
        ),
        (
            b"IDENTIFY\n".to_vec(),
            "E_BAD_BODY IDENTIFY failed to read body size",
        ),
        (
            [b"IDENTIFY\n".to_vec(), be(30), b"{\"a\"".to_vec()].concat(),
            "E_BAD_BODY IDENTIFY failed to read body",
        ),
        (
            b"AUTH\n\0".to_vec(),
            "E_BAD_BODY AUTH failed to read body size",
        ),
    ];
    for (bytes, text) in cases {
        let mut client = RawClient::connect(nsqd.tcp);
        client.send_raw(&bytes);
        client.half_close();
        assert_eq!(
            client.expect_error("E_"),
            text,
            "answer to {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(client.is_closed(Duration::from_secs(5)));
    }
    // A command line without its newline is not a command yet: NSQ closes without a word.
    let mut client = RawClient::connect(nsqd.tcp);
    client.send_raw(b"PUB t");
    client.half_close();
    assert!(client.is_closed(Duration::from_secs(5)));
    let stats = http_get(&nsqd.url("/stats?format=json")).json();
    let published: u64 = stats["topics"]
        .as_array()
        .map(|ts| ts.iter().filter_map(|t| t["message_count"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(published, 0, "{stats}");
}
