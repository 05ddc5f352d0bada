//! The distributed topology: nsqd hosts register with two nsqlookupd; consumers configured
//! only with lookupd HTTP addresses (pynsq's Reader, tokio-nsq's consumer) find every producer,
//! keep consuming when one dies, and discover a new one within their poll interval.

use nsq_tests::python::{python, script};
use nsq_tests::{http_post, Nsqd, Nsqlookupd};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn nsqd_with(lookupds: &[&Nsqlookupd]) -> Nsqd {
    let flags: Vec<String> = lookupds
        .iter()
        .map(|l| format!("--lookupd-tcp-address={}", l.tcp))
        .collect();
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nsqd = Nsqd::start(&refs);
    assert_eq!(
        http_post(&nsqd.url("/topic/create?topic=events"), b"").status,
        200
    );
    nsqd
}

fn wait_registered(lookupd: &Nsqlookupd, nsqds: &[&Nsqd]) {
    nsq_tests::wait::lookupd_lists(lookupd, "events", nsqds, Duration::from_secs(15))
}

/// Publishes `n` messages named after `tag` to nsqd over HTTP; returns their bodies.
fn publish(nsqd: &Nsqd, tag: &str, n: usize) -> Vec<String> {
    let bodies: Vec<String> = (0..n).map(|i| format!("{tag}-{i:03}")).collect();
    let reply = http_post(
        &nsqd.url("/mpub?topic=events"),
        bodies.join("\n").as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    bodies
}

/// Waits until `received` holds every body in `expected`.
fn wait_received(received: &Mutex<Vec<String>>, expected: &[String], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<String> = received.lock().expect("lock").iter().cloned().collect();
        let missing: Vec<&String> = expected.iter().filter(|b| !got.contains(*b)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {} not received, e.g. {:?}",
            missing.len(),
            expected.len(),
            missing.first()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pynsq Reader process; killed on drop.
struct Reader {
    child: Child,
    received: Arc<Mutex<Vec<String>>>,
}

impl Reader {
    fn start(lookupds: &[&Nsqlookupd]) -> Reader {
        let mut command = Command::new(python());
        command.arg(script("lookupd_reader.py"));
        for l in lookupds {
            command.arg("--lookupd").arg(format!("http://{}", l.http));
        }
        let mut child = command
            .args(["--topic", "events", "--poll", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the pynsq reader");
        let stdout = child.stdout.take().expect("reader stdout");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        Reader { child, received }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pynsq_reader_follows_producers_through_two_lookupds() {
    let l1 = Nsqlookupd::start(&[]);
    let l2 = Nsqlookupd::start(&[]);
    let mut n: Vec<Nsqd> = (0..3).map(|_| nsqd_with(&[&l1, &l2])).collect();
    for l in [&l1, &l2] {
        wait_registered(l, &[&n[0], &n[1], &n[2]]);
    }
    let reader = Reader::start(&[&l1, &l2]);
    let mut expected = Vec::new();
    for (i, nsqd) in n.iter().enumerate() {
        expected.extend(publish(nsqd, &format!("first-{i}"), 20));
    }
    wait_received(&reader.received, &expected, "from all three nsqd");

    // One producer dies: lookupd drops it, the reader keeps consuming from the others.
    n[1].kill9();
    for l in [&l1, &l2] {
        wait_registered(l, &[&n[0], &n[2]]);
    }
    let after_death: Vec<String> = [0, 2]
        .iter()
        .flat_map(|&i| publish(&n[i], &format!("second-{i}"), 20))
        .collect();
    wait_received(&reader.received, &after_death, "after one nsqd died");

    // A new producer appears: discovered within the poll interval.
    n.push(nsqd_with(&[&l1, &l2]));
    wait_registered(&l1, &[&n[0], &n[2], &n[3]]);
    let from_new = publish(&n[3], "new", 20);
    wait_received(&reader.received, &from_new, "from the new nsqd");

    let received = reader.received.lock().expect("lock").clone();
    let unique: BTreeSet<&String> = received.iter().collect();
    assert_eq!(
        unique.len(),
        expected.len() + after_death.len() + from_new.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_nsq_consumer_discovers_producers_through_lookupd() {
    use tokio_nsq::{
        NSQChannel, NSQConsumerConfig, NSQConsumerConfigSources, NSQConsumerLookupConfig, NSQTopic,
    };
    let l = Nsqlookupd::start(&[]);
    let a = nsqd_with(&[&l]);
    let b = nsqd_with(&[&l]);
    wait_registered(&l, &[&a, &b]);
    let mut consumer = NSQConsumerConfig::new(
        NSQTopic::new("events").expect("topic"),
        NSQChannel::new("tokio").expect("channel"),
    )
    .set_max_in_flight(20)
    .set_sources(NSQConsumerConfigSources::Lookup(
        NSQConsumerLookupConfig::new()
            .set_poll_interval(Duration::from_millis(500))
            .set_addresses([format!("http://{}", l.http)].into_iter().collect()),
    ))
    .build();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let pump = tokio::spawn(async move {
        while let Some(message) = consumer.consume_filtered().await {
            sink.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&message.body).into_owned());
            message.finish().await;
        }
    });
    let wait = |expected: Vec<String>, what: &'static str| {
        let received = received.clone();
        tokio::task::spawn_blocking(move || wait_received(&received, &expected, what))
    };
    let mut expected = publish(&a, "a", 20);
    expected.extend(publish(&b, "b", 20));
    wait(expected, "from both nsqd").await.expect("wait");

    let c = nsqd_with(&[&l]);
    wait_registered(&l, &[&a, &b, &c]);
    wait(publish(&c, "c", 20), "from the new nsqd")
        .await
        .expect("wait");
    drop(b);
    wait(publish(&a, "a2", 20), "after one nsqd died")
        .await
        .expect("wait");
    pump.abort();
}
