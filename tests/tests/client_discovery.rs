//! `nsq_client::Consumer` discovering producers through nsqlookupd follows lookupd's list both
//! ways: an nsqd that lookupd stops listing (tombstoned while still running, or shut down) is
//! disconnected and not retried, a new one is picked up, and the rest keep delivering.
//! tokio-nsq 0.14 never drops a producer lookupd stopped listing; this is the same scenario,
//! asserted for ours.

use nsq_client::{Config, Consumer, Message};
use nsq_tests::{http_get, http_post, Nsqd, Nsqlookupd};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const STEP: Duration = Duration::from_secs(30);

async fn wait_for(what: &str, done: impl FnMut() -> bool) {
    nsq_tests::wait::until_async(what, STEP, done).await
}

/// The nsqd TCP ports lookupd lists for topic `d`.
fn listed(lookupd: &Nsqlookupd) -> BTreeSet<u16> {
    let reply = http_get(&lookupd.url("/lookup?topic=d"));
    if reply.status != 200 {
        return BTreeSet::new();
    }
    reply.json()["producers"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["tcp_port"].as_u64())
                .filter_map(|port| u16::try_from(port).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn ports(nsqds: &[&Nsqd]) -> BTreeSet<u16> {
    nsqds.iter().map(|n| n.tcp.port()).collect()
}

fn addrs(nsqds: &[&Nsqd]) -> BTreeSet<String> {
    nsqds.iter().map(|n| n.tcp.to_string()).collect()
}

fn publish(nsqd: &Nsqd, body: &str) {
    let reply = http_post(&nsqd.url("/pub?topic=d"), body.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Channel `ch` of topic `d` on `nsqd`, from `/stats`.
fn channel(nsqd: &Nsqd) -> serde_json::Value {
    let stats = http_get(&nsqd.url("/stats?format=json&topic=d")).json();
    let channels = stats["topics"][0]["channels"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    channels
        .into_iter()
        .find(|c| c["channel_name"] == "ch")
        .unwrap_or_default()
}

type Seen = Arc<Mutex<BTreeSet<String>>>;

/// A consumer of `d`/`ch` through `lookupd`, polling every 200 ms, recording bodies.
async fn consumer_via(lookupd: &Nsqlookupd) -> (Consumer, Seen) {
    let config = Config {
        max_in_flight: 10,
        lookupd_poll_interval: Duration::from_millis(200),
        ..Config::default()
    };
    let seen: Seen = Arc::default();
    let bodies = seen.clone();
    let consumer = Consumer::new("d", "ch", config, move |m: Message| {
        let bodies = bodies.clone();
        async move {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            bodies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(body);
            Ok(())
        }
    })
    .expect("consumer");
    consumer
        .connect_to_lookupd(&lookupd.http.to_string())
        .await
        .expect("lookupd answers");
    (consumer, seen)
}

fn has(seen: &Seen, body: &str) -> bool {
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(body)
}

fn connected(consumer: &Consumer) -> BTreeSet<String> {
    consumer.connections().into_iter().collect()
}

/// Two nsqd with topic `d` (one message each, `a1` and `b1`), both listed by `lookupd`, and a
/// consumer through lookupd that has received from both.
async fn two_producers(lookupd: &Nsqlookupd) -> (Nsqd, Nsqd, Consumer, Seen) {
    let flag = format!("--lookupd-tcp-address={}", lookupd.tcp);
    let a = Nsqd::start(&[&flag]);
    let b = Nsqd::start(&[&flag]);
    publish(&a, "a1");
    publish(&b, "b1");
    wait_for("both registered", || listed(lookupd) == ports(&[&a, &b])).await;
    let (consumer, seen) = consumer_via(lookupd).await;
    wait_for("a1 and b1", || has(&seen, "a1") && has(&seen, "b1")).await;
    assert_eq!(connected(&consumer), addrs(&[&a, &b]));
    assert_eq!(consumer.stats().connections, 2);
    (a, b, consumer, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_drops_a_running_producer_lookupd_no_longer_lists() {
    let lookupd = Nsqlookupd::start(&[]);
    let (a, b, consumer, seen) = two_producers(&lookupd).await;

    // b keeps running, but lookupd stops listing it for the topic.
    let node = format!("127.0.0.1:{}", b.http.port());
    let reply = http_post(
        &lookupd.url(&format!("/topic/tombstone?topic=d&node={node}")),
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(listed(&lookupd), ports(&[&a]));

    // The next poll closes the connection to b (CLS, then close): b sees no client left.
    wait_for("b dropped", || {
        connected(&consumer) == addrs(&[&a]) && consumer.stats().connections == 1
    })
    .await;
    wait_for("b's channel without clients", || {
        channel(&b)["clients"].as_array().is_some_and(Vec::is_empty)
    })
    .await;

    // a still delivers; what b gets now stays in b, as nobody is subscribed there.
    publish(&b, "b2");
    publish(&a, "a2");
    wait_for("a2", || has(&seen, "a2")).await;
    assert!(!has(&seen, "b2"));
    assert_eq!(channel(&b)["depth"], 1);
    assert_eq!(consumer.stats().connections, 1);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_drops_a_stopped_producer_and_picks_up_a_new_one() {
    let lookupd = Nsqlookupd::start(&[]);
    let (a, mut b, consumer, seen) = two_producers(&lookupd).await;

    // b shuts down: lookupd forgets it and the consumer's connection to it ends for good.
    assert!(b.terminate().success());
    wait_for("b unregistered", || listed(&lookupd) == ports(&[&a])).await;
    wait_for("b dropped", || {
        connected(&consumer) == addrs(&[&a]) && consumer.stats().connections == 1
    })
    .await;
    publish(&a, "a2");
    wait_for("a2", || has(&seen, "a2")).await;

    // A new producer of the topic appears: the next poll connects to it.
    let flag = format!("--lookupd-tcp-address={}", lookupd.tcp);
    let c = Nsqd::start(&[&flag]);
    publish(&c, "c1");
    wait_for("c registered", || listed(&lookupd) == ports(&[&a, &c])).await;
    wait_for("c1", || has(&seen, "c1")).await;
    assert_eq!(connected(&consumer), addrs(&[&a, &c]));
    assert_eq!(consumer.stats().connections, 2);
    // b is not retried: only a and c are connections, b stays gone.
    assert!(!connected(&consumer).contains(&b.tcp.to_string()));
    consumer.stop().await;
}
