//! tokio-nsq 0.14 (a Rust NSQ client nobody here wrote) against our nsqd: its producer
//! publishes with PUB and MPUB, its consumer (nsqd daemon sources, max_in_flight > 1) receives
//! everything, REQs failures and FINs the rest, with attempts counted up; two channels each
//! get every message; compressed connections work.

use nsq_tests::{http_post, Nsqd};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use tokio::time::{timeout, Instant};
use tokio_nsq::{
    NSQChannel, NSQConfigShared, NSQConfigSharedCompression, NSQConsumer, NSQConsumerConfig,
    NSQConsumerConfigSources, NSQDeflateLevel, NSQEvent, NSQProducer, NSQProducerConfig,
    NSQRequeueDelay, NSQTopic,
};

/// Overall budget of each step; generous because CI machines are slow, never a perf check.
const STEP: Duration = Duration::from_secs(30);

/// tokio-nsq's defaults, except that it flushes its writes (FIN, REQ, RDY) every 10 ms instead
/// of every 250 ms, which would pace a consumer at max_in_flight messages per 250 ms.
fn shared() -> NSQConfigShared {
    NSQConfigShared::new().set_flush_interval(Duration::from_millis(10))
}

fn bodies(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i:05}").into_bytes())
        .collect()
}

async fn wait_healthy_producer(producer: &mut NSQProducer) {
    let deadline = Instant::now() + STEP;
    loop {
        match timeout(deadline - Instant::now(), producer.consume()).await {
            Ok(Some(NSQEvent::Healthy())) => return,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("producer closed before it was healthy"),
            Err(_) => panic!("producer not healthy within {STEP:?}"),
        }
    }
}

/// Publishes the first half of `messages` with PUB and the rest with MPUB (batches of 25) and
/// waits for every acknowledgement.
async fn publish(nsqd: &Nsqd, topic: &str, messages: &[Vec<u8>], shared: NSQConfigShared) {
    let mut producer = NSQProducerConfig::new(nsqd.tcp.to_string())
        .set_shared(shared)
        .build();
    wait_healthy_producer(&mut producer).await;
    let topic = NSQTopic::new(topic).expect("topic name");
    let half = messages.len() / 2;
    let mut commands = 0;
    for body in &messages[..half] {
        producer
            .publish(&topic, body.clone())
            .await
            .expect("queue PUB");
        commands += 1;
    }
    for batch in messages[half..].chunks(25) {
        producer
            .publish_multiple(&topic, batch.to_vec())
            .await
            .expect("queue MPUB");
        commands += 1;
    }
    let deadline = Instant::now() + STEP;
    let mut acked = 0;
    while acked < commands {
        match timeout(deadline - Instant::now(), producer.consume()).await {
            Ok(Some(NSQEvent::Ok())) => acked += 1,
            Ok(Some(NSQEvent::Unhealthy())) => {
                panic!("producer connection failed after {acked} OKs")
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("producer closed after {acked} of {commands} OKs"),
            Err(_) => panic!("only {acked} of {commands} publishes acknowledged"),
        }
    }
}

fn consumer(nsqd: &Nsqd, topic: &str, channel: &str, shared: NSQConfigShared) -> NSQConsumer {
    NSQConsumerConfig::new(
        NSQTopic::new(topic).expect("topic name"),
        NSQChannel::new(channel).expect("channel name"),
    )
    .set_max_in_flight(50)
    .set_rebalance_interval(Duration::from_millis(200))
    .set_shared(shared)
    .set_sources(NSQConsumerConfigSources::Daemons(vec![nsqd
        .tcp
        .to_string()]))
    .build()
}

/// What a consumer saw: for each body, the attempt numbers of its deliveries in order.
type Seen = BTreeMap<Vec<u8>, Vec<u16>>;

/// Consumes until every body in `expected` was finished, REQing (no delay) every delivery
/// whose attempt number is at most `fail_attempts`; then lingers briefly to catch duplicates.
async fn consume_all(consumer: &mut NSQConsumer, expected: &[Vec<u8>], fail_attempts: u16) -> Seen {
    let expected: HashSet<&Vec<u8>> = expected.iter().collect();
    let mut finished = HashSet::new();
    let mut seen = Seen::new();
    let deadline = Instant::now() + STEP;
    let mut linger_until: Option<Instant> = None;
    loop {
        let until = linger_until.unwrap_or(deadline);
        let now = Instant::now();
        if now >= until {
            break;
        }
        let message = match timeout(until - now, consumer.consume_filtered()).await {
            Ok(Some(m)) => m,
            Ok(None) => panic!("consumer closed"),
            Err(_) => break,
        };
        assert!(
            expected.contains(&message.body),
            "unexpected body {:?}",
            String::from_utf8_lossy(&message.body)
        );
        seen.entry(message.body.clone())
            .or_default()
            .push(message.attempt);
        if message.attempt <= fail_attempts {
            message.requeue(NSQRequeueDelay::NoDelay).await;
        } else {
            finished.insert(message.body.clone());
            message.finish().await;
            if finished.len() == expected.len() && linger_until.is_none() {
                linger_until = Some(Instant::now() + Duration::from_millis(500));
            }
        }
    }
    assert_eq!(
        finished.len(),
        expected.len(),
        "not every message was finished within {STEP:?}"
    );
    seen
}

fn assert_attempts(seen: &Seen, expected: &[u16]) {
    for (body, attempts) in seen {
        assert_eq!(
            attempts,
            expected,
            "deliveries of {}",
            String::from_utf8_lossy(body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_publishes_consumer_receives_all() {
    let nsqd = Nsqd::start(&[]);
    let messages = bodies("plain", 1000);
    let mut c = consumer(&nsqd, "tokio_plain", "c", shared());
    publish(&nsqd, "tokio_plain", &messages, shared()).await;
    let seen = consume_all(&mut c, &messages, 0).await;
    assert_eq!(seen.len(), 1000);
    assert_attempts(&seen, &[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_requeued_with_growing_attempts() {
    let nsqd = Nsqd::start(&[]);
    let messages = bodies("req", 100);
    publish(&nsqd, "tokio_req", &messages, shared()).await;
    let mut c = consumer(&nsqd, "tokio_req", "c", shared());
    let seen = consume_all(&mut c, &messages, 2).await;
    assert_eq!(seen.len(), 100);
    assert_attempts(&seen, &[1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_channels_each_get_everything() {
    let nsqd = Nsqd::start(&[]);
    // Both channels exist before the first publish, so both see every message (as in NSQ,
    // /channel/create needs the topic to exist).
    for path in [
        "/topic/create?topic=tokio_two",
        "/channel/create?topic=tokio_two&channel=one",
        "/channel/create?topic=tokio_two&channel=two",
    ] {
        let reply = http_post(&nsqd.url(path), b"");
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    let messages = bodies("two", 400);
    publish(&nsqd, "tokio_two", &messages, shared()).await;
    let mut one = consumer(&nsqd, "tokio_two", "one", shared());
    let mut two = consumer(&nsqd, "tokio_two", "two", shared());
    let (seen_one, seen_two) = tokio::join!(
        consume_all(&mut one, &messages, 1),
        consume_all(&mut two, &messages, 0)
    );
    assert_attempts(&seen_one, &[1, 2]);
    assert_attempts(&seen_two, &[1]);
    assert_eq!((seen_one.len(), seen_two.len()), (400, 400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_connections_work() {
    let nsqd = Nsqd::start(&[]);
    let snappy = || shared().set_compression(NSQConfigSharedCompression::Snappy);
    let deflate = || {
        shared().set_compression(NSQConfigSharedCompression::Deflate(
            NSQDeflateLevel::new(3).expect("level"),
        ))
    };
    let messages = bodies("compressed", 300);
    publish(&nsqd, "tokio_zip", &messages, snappy()).await;
    let mut c = consumer(&nsqd, "tokio_zip", "deflate", deflate());
    let seen = consume_all(&mut c, &messages, 1).await;
    assert_attempts(&seen, &[1, 2]);

    let more = bodies("more", 300);
    publish(&nsqd, "tokio_zip2", &more, deflate()).await;
    let mut c = consumer(&nsqd, "tokio_zip2", "snappy", snappy());
    let seen = consume_all(&mut c, &more, 0).await;
    assert_attempts(&seen, &[1]);
}

/// tokio-nsq's TLS: a rustls 0.19 client trusting the test's CA, verifying `localhost`.
fn tls_shared(pki: &nsq_tests::tls::Pki) -> NSQConfigShared {
    let mut config = rustls019::ClientConfig::new();
    let pem = std::fs::read(&pki.ca).expect("read CA");
    let (added, _) = config
        .root_store
        .add_pem_file(&mut &pem[..])
        .expect("CA PEM");
    assert_eq!(added, 1);
    shared().set_tls(
        tokio_nsq::NSQConfigSharedTLS::new("localhost")
            .set_client_config(std::sync::Arc::new(config)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_producer_and_consumer() {
    let pki = nsq_tests::tls::Pki::new();
    let mut flags = pki.nsqd_flags();
    flags.push(format!(
        "--https-address=127.0.0.1:{}",
        nsq_tests::free_port()
    ));
    // TCP clients must upgrade: a plain fallback would fail here rather than pass silently.
    flags.push("--tls-required=tcp-https".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nsqd = Nsqd::start(&flags);
    let messages = bodies("tls", 200);
    let mut c = consumer(&nsqd, "tokio_tls", "c", tls_shared(&pki));
    publish(&nsqd, "tokio_tls", &messages, tls_shared(&pki)).await;
    let seen = consume_all(&mut c, &messages, 0).await;
    assert_eq!(seen.len(), 200);
    assert_attempts(&seen, &[1]);
    assert!(nsqd.log().contains("upgrading connection to TLS"));
}
