//! Our client library (`nsq_tools::client`) against our nsqd and nsqlookupd: publishing with
//! typed errors and reconnects, consuming with RDY spread, requeue and max_attempts, TOUCH
//! for slow handlers, lookupd discovery (producers appearing and going), clean stop.

use nsq_tests::{http_get, http_post, Nsqd, Nsqlookupd};
use nsq_tools::client::{Config, Consumer, Error, Message, Producer};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const STEP: Duration = Duration::from_secs(30);

/// Settings that keep the tests quick: short requeue delays, backoff and polls.
fn quick(max_in_flight: u32) -> Config {
    Config {
        max_in_flight,
        default_requeue_delay: Duration::from_millis(20),
        backoff_multiplier: Duration::from_millis(20),
        max_backoff_duration: Duration::from_millis(200),
        lookupd_poll_interval: Duration::from_millis(200),
        rdy_redistribute_interval: Duration::from_millis(100),
        reconnect_interval: Duration::from_millis(200),
        ..Config::default()
    }
}

async fn wait_for(what: &str, done: impl FnMut() -> bool) {
    nsq_tests::wait::until_async(what, STEP, done).await
}

fn channel_stats(nsqd: &Nsqd, topic: &str, channel: &str) -> serde_json::Value {
    let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
    let channels = stats["topics"][0]["channels"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    channels
        .into_iter()
        .find(|c| c["channel_name"] == channel)
        .unwrap_or_default()
}

type Seen = Arc<Mutex<BTreeMap<String, u32>>>;

/// A consumer that counts bodies; fails a body's first `fail_first` deliveries.
fn counting(topic: &str, channel: &str, config: Config, fail_first: u16) -> (Consumer, Seen) {
    let seen: Seen = Arc::default();
    let counts = seen.clone();
    let consumer = Consumer::new(topic, channel, config, move |m: Message| {
        let counts = counts.clone();
        async move {
            if m.attempts <= fail_first {
                return Err("downstream unavailable".into());
            }
            let body = String::from_utf8_lossy(&m.body).into_owned();
            *counts.lock().unwrap().entry(body).or_default() += 1;
            Ok(())
        }
    })
    .expect("consumer");
    (consumer, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_publishes_and_reports_nsq_errors() {
    let nsqd = Nsqd::start(&["--max-msg-size=100"]);
    let producer = Producer::new(&nsqd.tcp.to_string(), Config::default());
    producer.publish("p", b"one".to_vec()).await.expect("PUB");
    producer
        .multi_publish("p", vec![b"two".to_vec(), b"three".to_vec()])
        .await
        .expect("MPUB");
    producer
        .deferred_publish("p", Duration::from_millis(10), b"four".to_vec())
        .await
        .expect("DPUB");
    let error = producer.publish("p", vec![b'x'; 200]).await.unwrap_err();
    assert_eq!(error.code(), Some("E_BAD_MESSAGE"), "{error}");
    assert!(matches!(
        producer.publish("bad topic!", b"x".to_vec()).await,
        Err(Error::InvalidName(_))
    ));
    // The connection nsqd closed after the fatal error is replaced on the next request.
    producer
        .publish("p", b"five".to_vec())
        .await
        .expect("PUB after error");
    let stats = http_get(&nsqd.url("/stats?format=json&topic=p")).json();
    assert_eq!(stats["topics"][0]["message_count"], 5);

    // Unreachable nsqd: a typed I/O error, no panic.
    let nowhere = Producer::new("127.0.0.1:1", Config::default());
    assert!(matches!(nowhere.connect().await, Err(Error::Io { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_reconnects_after_nsqd_restarts() {
    let mut nsqd = Nsqd::start(&[]);
    let producer = Producer::new(&nsqd.tcp.to_string(), Config::default());
    producer
        .publish("r", b"before".to_vec())
        .await
        .expect("PUB");
    assert!(nsqd.terminate().success());
    nsqd.restart();
    // The old connection's end is noticed by its reader; give it a moment, then publish.
    let deadline = Instant::now() + STEP;
    while producer.publish("r", b"after".to_vec()).await.is_err() {
        assert!(Instant::now() < deadline, "no reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = http_get(&nsqd.url("/stats?format=json&topic=r")).json();
    assert_eq!(stats["topics"][0]["depth"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_gets_everything_from_two_nsqd_and_stops_cleanly() {
    let a = Nsqd::start(&[]);
    let b = Nsqd::start(&[]);
    for (nsqd, tag) in [(&a, "a"), (&b, "b")] {
        let body: Vec<u8> = (0..300)
            .flat_map(|i| format!("{tag}{i}\n").into_bytes())
            .collect();
        assert_eq!(http_post(&nsqd.url("/mpub?topic=c"), &body).status, 200);
    }
    let (consumer, seen) = counting("c", "ch", quick(16), 0);
    consumer
        .connect_to_nsqd(&a.tcp.to_string())
        .await
        .expect("connect a");
    consumer
        .connect_to_nsqd(&b.tcp.to_string())
        .await
        .expect("connect b");
    wait_for("600 messages", || seen.lock().unwrap().len() == 600).await;
    assert_eq!(consumer.stats().connections, 2);
    consumer.stop().await;
    let stats = consumer.stats();
    assert_eq!(stats.received, 600);
    assert_eq!(stats.finished, 600);
    assert!(seen.lock().unwrap().values().all(|&n| n == 1));
    for nsqd in [&a, &b] {
        let ch = channel_stats(nsqd, "c", "ch");
        assert_eq!(ch["depth"], 0, "{ch}");
        assert_eq!(ch["in_flight_count"], 0, "{ch}");
    }
    // A second stop is harmless; an unreachable nsqd is an error.
    consumer.stop().await;
    let (other, _) = counting("c", "ch2", quick(1), 0);
    assert!(other.connect_to_nsqd("127.0.0.1:1").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_in_flight_rotates_over_two_connections() {
    let a = Nsqd::start(&[]);
    let b = Nsqd::start(&[]);
    for nsqd in [&a, &b] {
        assert_eq!(
            http_post(&nsqd.url("/mpub?topic=rot"), b"1\n2\n3").status,
            200
        );
    }
    let (consumer, seen) = counting("rot", "ch", quick(1), 0);
    consumer.connect_to_nsqd(&a.tcp.to_string()).await.unwrap();
    consumer.connect_to_nsqd(&b.tcp.to_string()).await.unwrap();
    wait_for("6 deliveries", || {
        seen.lock().unwrap().values().sum::<u32>() == 6
    })
    .await;
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_requeue_back_off_and_give_up_after_max_attempts() {
    let nsqd = Nsqd::start(&[]);
    assert_eq!(http_post(&nsqd.url("/pub?topic=f"), b"doomed").status, 200);
    assert_eq!(http_post(&nsqd.url("/pub?topic=f"), b"flaky").status, 200);
    let attempts: Seen = Arc::default();
    let log = attempts.clone();
    let config = Config {
        max_attempts: 3,
        ..quick(4)
    };
    let consumer = Consumer::new("f", "ch", config, move |m: Message| {
        let log = log.clone();
        async move {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            *log.lock().unwrap().entry(body.clone()).or_default() += 1;
            if body == "doomed" || m.attempts < 2 {
                Err("no".into())
            } else {
                Ok(())
            }
        }
    })
    .unwrap();
    consumer
        .connect_to_nsqd(&nsqd.tcp.to_string())
        .await
        .unwrap();
    wait_for("give up", || consumer.stats().given_up == 1).await;
    wait_for("channel empty", || {
        channel_stats(&nsqd, "f", "ch")["depth"] == 0
    })
    .await;
    consumer.stop().await;
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(attempts["doomed"], 3, "handler runs max_attempts times");
    assert_eq!(attempts["flaky"], 2);
    let stats = consumer.stats();
    assert!(stats.backoffs >= 1, "{stats:?}");
    assert_eq!(stats.requeued, 4, "3 for doomed, 1 for flaky: {stats:?}");
    assert_eq!(stats.finished, 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_is_touched_instead_of_timing_out() {
    let nsqd = Nsqd::start(&[]);
    assert_eq!(http_post(&nsqd.url("/pub?topic=slow"), b"x").status, 200);
    let config = Config {
        msg_timeout: Some(Duration::from_millis(1000)),
        heartbeat_interval: Duration::from_millis(1000),
        ..quick(1)
    };
    let consumer = Consumer::new("slow", "ch", config, |_m: Message| async {
        tokio::time::sleep(Duration::from_millis(2600)).await;
        Ok(())
    })
    .unwrap();
    consumer
        .connect_to_nsqd(&nsqd.tcp.to_string())
        .await
        .unwrap();
    wait_for("finish", || consumer.stats().finished == 1).await;
    let ch = channel_stats(&nsqd, "slow", "ch");
    assert_eq!(ch["timeout_count"], 0, "{ch}");
    assert_eq!(consumer.stats().received, 1);
    // Heartbeats (every second here) were answered: still connected.
    assert_eq!(consumer.connections().len(), 1);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_follows_producers_through_lookupd() {
    let lookupd = Nsqlookupd::start(&[]);
    let flag = format!("--lookupd-tcp-address={}", lookupd.tcp);
    let a = Nsqd::start(&[&flag]);
    assert_eq!(http_post(&a.url("/pub?topic=d"), b"a1").status, 200);
    let lookup = |n: usize| {
        let l = http_get(&lookupd.url("/lookup?topic=d"));
        l.status == 200 && l.json()["producers"].as_array().map_or(0, Vec::len) == n
    };
    wait_for("a registered", || lookup(1)).await;
    let (consumer, seen) = counting("d", "ch", quick(10), 0);
    consumer
        .connect_to_lookupd(&lookupd.http.to_string())
        .await
        .unwrap();
    wait_for("a1", || seen.lock().unwrap().contains_key("a1")).await;

    // A second producer appears: the next poll connects to it.
    let mut b = Nsqd::start(&[&flag]);
    assert_eq!(http_post(&b.url("/pub?topic=d"), b"b1").status, 200);
    wait_for("b1", || seen.lock().unwrap().contains_key("b1")).await;
    assert_eq!(consumer.connections().len(), 2);

    // It goes away: its connection is dropped and not retried.
    b.kill9();
    wait_for("b dropped", || {
        consumer.connections() == vec![a.tcp.to_string()]
    })
    .await;
    assert_eq!(http_post(&a.url("/pub?topic=d"), b"a2").status, 200);
    wait_for("a2", || seen.lock().unwrap().contains_key("a2")).await;
    consumer.stop().await;

    // An unreachable lookupd is an error on the first query.
    let (other, _) = counting("d", "ch", quick(1), 0);
    assert!(other.connect_to_lookupd("127.0.0.1:1").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_and_deflate_streams_carry_everything() {
    let nsqd = Nsqd::start(&[]);
    let snappy = Config {
        snappy: true,
        ..quick(20)
    };
    let deflate = Config {
        deflate: true,
        deflate_level: 3,
        ..quick(20)
    };
    for name in ["s", "d"] {
        assert_eq!(
            http_post(
                &nsqd.url(&format!("/channel/create?topic=z&channel={name}")),
                b""
            )
            .status,
            404
        );
    }
    let producer = Producer::new(&nsqd.tcp.to_string(), snappy.clone());
    producer
        .publish("z", b"first".to_vec())
        .await
        .expect("snappy PUB");
    for name in ["s", "d"] {
        let url = nsqd.url(&format!("/channel/create?topic=z&channel={name}"));
        assert_eq!(http_post(&url, b"").status, 200);
    }
    let bodies: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("compressible body {i:04} {}", "abc".repeat(50)).into_bytes())
        .collect();
    producer
        .multi_publish("z", bodies[..150].to_vec())
        .await
        .expect("snappy MPUB");
    let deflating = Producer::new(&nsqd.tcp.to_string(), deflate.clone());
    deflating
        .multi_publish("z", bodies[150..].to_vec())
        .await
        .expect("deflate MPUB");
    let (s, seen_s) = counting("z", "s", snappy, 0);
    let (d, seen_d) = counting("z", "d", deflate, 0);
    s.connect_to_nsqd(&nsqd.tcp.to_string())
        .await
        .expect("snappy SUB");
    d.connect_to_nsqd(&nsqd.tcp.to_string())
        .await
        .expect("deflate SUB");
    // The topic's first channel gets its backlog ("first"); the second starts after it.
    wait_for("snappy consumer", || seen_s.lock().unwrap().len() == 301).await;
    wait_for("deflate consumer", || seen_d.lock().unwrap().len() == 300).await;
    for (channel, flag) in [("s", "snappy"), ("d", "deflate")] {
        let clients = channel_stats(&nsqd, "z", channel)["clients"].clone();
        assert_eq!(clients[0][flag], true, "{channel}: {clients}");
    }
    s.stop().await;
    d.stop().await;
    let stats = http_get(&nsqd.url("/stats?format=json&topic=z")).json();
    assert_eq!(stats["topics"][0]["message_count"], 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_zero_pauses_and_raising_it_resumes() {
    let nsqd = Nsqd::start(&[]);
    let (consumer, seen) = counting("pause", "ch", quick(5), 0);
    consumer
        .connect_to_nsqd(&nsqd.tcp.to_string())
        .await
        .unwrap();
    assert_eq!(http_post(&nsqd.url("/pub?topic=pause"), b"one").status, 200);
    wait_for("one", || seen.lock().unwrap().len() == 1).await;
    consumer.set_max_in_flight(0);
    wait_for("RDY 0", || {
        let ch = channel_stats(&nsqd, "pause", "ch");
        ch["clients"][0]["ready_count"] == 0
    })
    .await;
    assert_eq!(http_post(&nsqd.url("/pub?topic=pause"), b"two").status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "paused consumers get nothing"
    );
    consumer.set_max_in_flight(5);
    wait_for("two", || seen.lock().unwrap().len() == 2).await;
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reconnects_to_an_nsqd_that_restarts() {
    let mut nsqd = Nsqd::start(&[]);
    let (consumer, seen) = counting("back", "ch", quick(5), 0);
    consumer
        .connect_to_nsqd(&nsqd.tcp.to_string())
        .await
        .unwrap();
    assert_eq!(
        http_post(&nsqd.url("/pub?topic=back"), b"before").status,
        200
    );
    wait_for("before", || seen.lock().unwrap().contains_key("before")).await;
    assert!(nsqd.terminate().success());
    wait_for("disconnect noticed", || consumer.connections().is_empty()).await;
    nsqd.restart();
    wait_for("reconnected", || consumer.connections().len() == 1).await;
    assert_eq!(
        http_post(&nsqd.url("/pub?topic=back"), b"after").status,
        200
    );
    wait_for("after", || seen.lock().unwrap().contains_key("after")).await;
    consumer.stop().await;
}
