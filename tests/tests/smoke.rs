//! The harness works: nsqd starts, publishes over TCP and HTTP, delivers, and stops cleanly.

use nsq_tests::{http_post, Nsqd, RawClient};

#[test]
fn publish_and_consume_over_tcp_and_http() {
    let mut nsqd = Nsqd::start(&[]);
    let mut publisher = RawClient::connect(nsqd.tcp);
    publisher.publish("smoke", b"one");
    assert_eq!(http_post(&nsqd.url("/pub?topic=smoke"), b"two").body, "OK");

    let mut consumer = RawClient::connect(nsqd.tcp);
    consumer.subscribe("smoke", "c");
    consumer.send_raw(b"RDY 10\n");
    let (_, id1, body1) = consumer.message();
    let (_, id2, body2) = consumer.message();
    assert_eq!(
        (body1.as_slice(), body2.as_slice()),
        (&b"one"[..], &b"two"[..])
    );
    consumer.send_raw(
        format!(
            "FIN {}\nFIN {}\n",
            String::from_utf8_lossy(&id1),
            String::from_utf8_lossy(&id2)
        )
        .as_bytes(),
    );
    assert!(nsqd.terminate().success());
}
