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

#[test]
fn nsq_bench_drives_nsqd_and_reports_a_table() {
    let nsqd = Nsqd::start(&[]);
    let out = std::process::Command::new(nsq_tests::binary("nsq_bench"))
        .arg(format!("--nsqd-tcp-address={}", nsqd.tcp))
        .args(["--runfor", "1", "--size", "100", "--batch-size", "50"])
        .output()
        .expect("run nsq_bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let published: u64 = stdout
        .lines()
        .find(|l| l.starts_with("published"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("a published row");
    assert!(published > 0, "{stdout}");
    assert!(stdout.contains("p99"), "{stdout}");

    let unreachable = std::process::Command::new(nsq_tests::binary("nsq_bench"))
        .args(["--nsqd-tcp-address=127.0.0.1:1", "--runfor", "1"])
        .output()
        .expect("run nsq_bench");
    assert!(!unreachable.status.success());
    assert_eq!(
        String::from_utf8_lossy(&unreachable.stderr).lines().count(),
        1
    );
}
