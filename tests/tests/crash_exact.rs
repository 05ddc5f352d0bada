//! The crash story with exact counts: 100,000 messages acknowledged over TCP survive
//! `kill -9`; after FINning the first half and a clean SIGTERM, exactly the other half comes
//! back. A FIN that reached nsqd survives `kill -9` too (the channel's journal), so a crash
//! redelivers only what was unfinished.

use nsq_server::protocol::{Command, Frame};
use nsq_tests::{http_get, Nsqd, RawClient};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const N: usize = 100_000;
const BATCH: usize = 1_000;

fn body(i: usize) -> Vec<u8> {
    format!("msg-{i:06}").into_bytes()
}

fn publish_all(nsqd: &Nsqd, n: usize) {
    let mut client = RawClient::connect(nsqd.tcp);
    for start in (0..n).step_by(BATCH) {
        client.send(&Command::Mpub {
            topic: "crash".into(),
            bodies: (start..start + BATCH).map(|i| body(i).into()).collect(),
        });
        client.expect_response(b"OK");
    }
}

/// Receives messages until `count` arrived (or 10 s of silence), FINning the first `fin`.
fn consume(nsqd: &Nsqd, count: usize, fin: usize) -> (RawClient, Vec<Vec<u8>>) {
    let mut client = RawClient::connect(nsqd.tcp);
    client.subscribe("crash", "c");
    // Room to hold the unfinished half in flight while the rest arrives.
    client.send_raw(format!("RDY {count}\n").as_bytes());
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match client.try_frame(Duration::from_secs(10)) {
            Some(Frame::Message { id, body, .. }) => {
                if got.len() < fin {
                    client.send_raw(format!("FIN {}\n", String::from_utf8_lossy(&id)).as_bytes());
                }
                got.push(body.to_vec());
            }
            Some(Frame::Response(_)) => {}
            Some(Frame::Error(e)) => panic!("{}", String::from_utf8_lossy(&e)),
            None => break,
        }
    }
    (client, got)
}

fn floor(nsqd: &Nsqd) -> u64 {
    channel_stat(nsqd, &["position", "floor"])
}

fn channel_stat(nsqd: &Nsqd, path: &[&str]) -> u64 {
    let stats = http_get(&nsqd.url("/stats?format=json&topic=crash")).json();
    let mut value = &stats["topics"][0]["channels"][0];
    for key in path {
        value = &value[*key];
    }
    value.as_u64().unwrap_or(u64::MAX)
}

#[test]
fn finished_messages_are_not_redelivered_after_kill9() {
    const M: usize = 20_000;
    let max_rdy = format!("--max-rdy-count={M}");
    let mut nsqd = Nsqd::start(&[&max_rdy]);
    RawClient::connect(nsqd.tcp).subscribe("crash", "c");
    publish_all(&nsqd, M);
    let (client, got) = consume(&nsqd, M, M / 2);
    assert_eq!(got.len(), M);
    // A connection journals the FINs of each read before it answers anything it read later,
    // so the E_FIN_FAILED for an unknown id, sent after every FIN, says they are all in the
    // journal. Kill nsqd at once: the cursor file, written about once a second, is then
    // almost surely older than the FINs, and only the journal remembers them.
    let mut client = client;
    client.send_raw(b"FIN 0000000000000000\n");
    match client.try_frame(Duration::from_secs(10)) {
        Some(Frame::Error(e)) => assert!(e.starts_with(b"E_FIN_FAILED"), "{e:?}"),
        other => panic!("expected E_FIN_FAILED, got {other:?}"),
    }
    assert_eq!(
        channel_stat(&nsqd, &["in_flight_count"]),
        (M / 2) as u64,
        "every FIN reached the channel"
    );
    nsqd.kill9();
    drop(client);
    nsqd.restart();
    let (_client, rest) = consume(&nsqd, M, 0);
    let expected: BTreeSet<Vec<u8>> = (M / 2..M).map(body).collect();
    let again: BTreeSet<Vec<u8>> = rest.iter().cloned().collect();
    let finished_again = again.iter().filter(|b| !expected.contains(*b)).count();
    assert_eq!(
        finished_again, 0,
        "finished messages redelivered after kill -9"
    );
    assert_eq!(again, expected, "every unfinished message comes back");
    assert_eq!(rest.len(), M / 2, "once each");
}

#[test]
fn acknowledged_messages_survive_kill9_and_finished_ones_survive_sigterm() {
    let max_rdy = format!("--max-rdy-count={N}");
    let mut nsqd = Nsqd::start(&[&max_rdy]);
    RawClient::connect(nsqd.tcp).subscribe("crash", "c");
    publish_all(&nsqd, N);
    nsqd.kill9();
    nsqd.restart();

    // Everything acknowledged arrives; FIN the first half.
    let (client, got) = consume(&nsqd, N, N / 2);
    let unique: BTreeSet<&Vec<u8>> = got.iter().collect();
    assert_eq!(
        (got.len(), unique.len()),
        (N, N),
        "all {N} acknowledged messages, once each"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while floor(&nsqd) < (N / 2) as u64 {
        assert!(Instant::now() < deadline, "FINs never reached the cursor");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(client);
    assert!(nsqd.terminate().success());
    nsqd.restart();

    // Exactly the unfinished half comes back.
    let (_client, rest) = consume(&nsqd, N, 0);
    let expected: BTreeSet<Vec<u8>> = (N / 2..N).map(body).collect();
    let rest_set: BTreeSet<Vec<u8>> = rest.iter().cloned().collect();
    assert_eq!(
        rest.len(),
        N / 2,
        "nothing finished came back, nothing unfinished is missing"
    );
    assert_eq!(rest_set, expected);
}
