//! The seed's two topologies, end to end with our client library and nsq_to_file.
//!
//! 1. Data collection: an app publishes JSON events to its local nsqd over HTTP (`/pub`,
//!    `/mpub`) and TCP (PUB, MPUB); the metrics consumer's downstream fails for a while, so
//!    it backs off and nsqd requeues; once it recovers every event is handled exactly once.
//! 2. Persistence: on the same kind of topic, nsq_to_file archives channel `archive` while
//!    the `metrics` consumer fails and then stops; nsq_to_file is killed with SIGKILL
//!    mid-stream and restarted: the archive holds every event (duplicates counted, allowed),
//!    and `metrics`, once back, still gets every event exactly once.

use nsq_tests::{archive_lines, http_get, http_post, Nsqd, Tool};
use nsq_tools::client::{Config, Consumer, ConsumerStats, Message, Producer};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn wait_for(what: &str, done: impl FnMut() -> bool) {
    nsq_tests::wait::until_async(what, Duration::from_secs(45), done).await
}

fn event(source: &str, n: usize) -> String {
    format!("{{\"source\":\"{source}\",\"n\":{n},\"kind\":\"page_view\"}}")
}

/// Parses an event line back to its key.
fn key(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(format!("{}-{}", v["source"].as_str()?, v["n"].as_u64()?))
}

fn create_channels(nsqd: &Nsqd, topic: &str, channels: &[&str]) {
    assert_eq!(
        http_post(&nsqd.url(&format!("/topic/create?topic={topic}")), b"").status,
        200
    );
    for c in channels {
        let url = nsqd.url(&format!("/channel/create?topic={topic}&channel={c}"));
        assert_eq!(http_post(&url, b"").status, 200);
    }
}

fn channel(nsqd: &Nsqd, topic: &str, name: &str) -> serde_json::Value {
    let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
    stats["topics"][0]["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["channel_name"] == name).cloned())
        .unwrap_or_default()
}

type Counts = Arc<Mutex<BTreeMap<String, u32>>>;

/// The metrics consumer: fails while `down` is set, else counts each event it handled.
fn metrics_consumer(topic: &str, down: Arc<AtomicBool>) -> (Consumer, Counts) {
    let counts: Counts = Arc::default();
    let seen = counts.clone();
    let config = Config {
        max_in_flight: 25,
        max_attempts: 0, // an outage must not make it give events up
        default_requeue_delay: Duration::from_millis(30),
        backoff_multiplier: Duration::from_millis(20),
        max_backoff_duration: Duration::from_millis(300),
        ..Config::default()
    };
    let consumer = Consumer::new(topic, "metrics", config, move |m: Message| {
        let (down, seen) = (down.clone(), seen.clone());
        async move {
            if down.load(Ordering::SeqCst) {
                return Err("metrics database unavailable".into());
            }
            let line = String::from_utf8_lossy(&m.body).into_owned();
            let key = key(&line).ok_or("not an event")?;
            *seen.lock().unwrap().entry(key).or_default() += 1;
            Ok(())
        }
    })
    .expect("consumer");
    (consumer, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_collection_backs_off_while_downstream_fails_then_counts_every_event_once() {
    let nsqd = Nsqd::start(&[]);
    create_channels(&nsqd, "events", &["metrics"]);
    let down = Arc::new(AtomicBool::new(true));
    let (consumer, counts) = metrics_consumer("events", down.clone());
    consumer
        .connect_to_nsqd(&nsqd.tcp.to_string())
        .await
        .unwrap();

    // The app: 300 events each over HTTP /pub, HTTP /mpub, TCP PUB and TCP MPUB.
    let n = 300;
    let http = {
        let url = nsqd.url("/pub?topic=events");
        let mpub = nsqd.url("/mpub?topic=events");
        tokio::task::spawn_blocking(move || {
            for i in 0..n {
                assert_eq!(http_post(&url, event("http_pub", i).as_bytes()).status, 200);
            }
            for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
                let body: Vec<String> = chunk.iter().map(|&i| event("http_mpub", i)).collect();
                assert_eq!(http_post(&mpub, body.join("\n").as_bytes()).status, 200);
            }
        })
    };
    let producer = Producer::new(&nsqd.tcp.to_string(), Config::default());
    for i in 0..n {
        producer
            .publish("events", event("tcp_pub", i))
            .await
            .expect("PUB");
    }
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let bodies: Vec<String> = chunk.iter().map(|&i| event("tcp_mpub", i)).collect();
        producer
            .multi_publish("events", bodies)
            .await
            .expect("MPUB");
    }
    http.await.unwrap();

    wait_for("backoff during the outage", || {
        let s = consumer.stats();
        s.backoffs >= 3 && s.requeued >= 3
    })
    .await;
    let during: ConsumerStats = consumer.stats();
    assert!(counts.lock().unwrap().is_empty());
    // Backing off keeps the failing consumer from churning through the backlog.
    assert!(during.received < 4 * n as u64, "{during:?}");
    down.store(false, Ordering::SeqCst);

    wait_for("every event handled", || {
        counts.lock().unwrap().len() == 4 * n
    })
    .await;
    wait_for("channel drained", || {
        let c = channel(&nsqd, "events", "metrics");
        c["depth"] == 0 && c["in_flight_count"] == 0 && c["deferred_count"] == 0
    })
    .await;
    consumer.stop().await;
    let stats = consumer.stats();
    let counts = counts.lock().unwrap();
    assert!(counts.values().all(|&c| c == 1), "each event handled once");
    assert_eq!(stats.finished, 4 * n as u64, "{stats:?}");
    assert_eq!(stats.received, stats.finished + stats.requeued, "{stats:?}");
    let c = channel(&nsqd, "events", "metrics");
    assert_eq!(c["requeue_count"], stats.requeued, "{c}");
    assert_eq!(c["timeout_count"], 0, "{c}");
    eprintln!("data collection: {stats:?}");
}

fn nsq_to_file(nsqd: &Nsqd, topic: &str, out: &Path, work: &Path, gzip: bool) -> Tool {
    let mut args = vec![
        format!("--topic={topic}"),
        "--channel=archive".to_string(),
        format!("--nsqd-tcp-address={}", nsqd.tcp),
        format!("--output-dir={}", out.display()),
        "--sync-interval=100ms".to_string(),
        "--max-in-flight=50".to_string(),
    ];
    if gzip {
        args.extend([
            format!("--work-dir={}", work.display()),
            "--gzip".to_string(),
            "--rotate-size=30000".to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Tool::spawn("nsq_to_file", &args)
}

async fn persistence(gzip: bool) {
    let topic = if gzip { "clicks_gz" } else { "clicks" };
    // What was in flight to the killed archiver comes back after the message timeout.
    let nsqd = Nsqd::start(&["--msg-timeout=2s"]);
    create_channels(&nsqd, topic, &["archive", "metrics"]);
    let root = tempfile::tempdir().unwrap();
    let (out, work) = (root.path().join("out"), root.path().join("work"));

    // metrics fails for a while, then is stopped (its database is down for maintenance).
    let down = Arc::new(AtomicBool::new(true));
    let (metrics, _) = metrics_consumer(topic, down.clone());
    metrics
        .connect_to_nsqd(&nsqd.tcp.to_string())
        .await
        .unwrap();
    let mut archiver = nsq_to_file(&nsqd, topic, &out, &work, gzip);

    let total = 4000;
    let producer = Producer::new(&nsqd.tcp.to_string(), Config::default());
    let publishing = {
        let topic = topic.to_string();
        tokio::spawn(async move {
            for start in (0..total).step_by(40) {
                let bodies: Vec<String> = (start..start + 40).map(|i| event("app", i)).collect();
                producer.multi_publish(&topic, bodies).await.expect("MPUB");
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
        })
    };
    wait_for("metrics failing", || metrics.stats().backoffs >= 1).await;
    metrics.stop().await;

    wait_for("part of the stream archived", || {
        channel(&nsqd, topic, "archive")["message_count"].as_u64() >= Some(800)
    })
    .await;
    archiver.kill9();
    let (before, _) = archive_lines(root.path());
    archiver = nsq_to_file(&nsqd, topic, &out, &work, gzip);
    publishing.await.unwrap();
    wait_for("archive drained", || {
        let c = channel(&nsqd, topic, "archive");
        c["depth"] == 0 && c["in_flight_count"] == 0 && c["deferred_count"] == 0 && {
            let t = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
            t["topics"][0]["message_count"] == total
        }
    })
    .await;
    assert!(archiver.terminate().success(), "{}", archiver.stderr());

    let (lines, files) = archive_lines(root.path());
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut torn = 0;
    for line in &lines {
        match key(line) {
            Some(k) => *seen.entry(k).or_default() += 1,
            None => torn += 1,
        }
    }
    let missing: Vec<usize> = (0..total)
        .filter(|i| !seen.contains_key(&format!("app-{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} events, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len(), total, "nothing but the events");
    assert!(torn <= 1, "{torn} torn lines");
    let duplicates: u32 = seen.values().map(|c| c - 1).sum();
    eprintln!(
        "persistence (gzip {gzip}): {} lines in {} files, {} written before the kill, {duplicates} duplicates, {torn} torn",
        lines.len(),
        files.len(),
        before.len()
    );
    if gzip {
        assert!(
            dir_has_only_killed_file(&work),
            "only the killed run's file stays in the work dir"
        );
    }

    // metrics comes back: it still gets every event, each once.
    let c = channel(&nsqd, topic, "metrics");
    assert_eq!(c["message_count"], total, "{c}");
    down.store(false, Ordering::SeqCst);
    let (metrics, counts) = metrics_consumer(topic, down);
    metrics
        .connect_to_nsqd(&nsqd.tcp.to_string())
        .await
        .unwrap();
    wait_for("metrics caught up", || {
        counts.lock().unwrap().len() == total
    })
    .await;
    wait_for("metrics drained", || {
        let c = channel(&nsqd, topic, "metrics");
        c["depth"] == 0 && c["in_flight_count"] == 0 && c["deferred_count"] == 0
    })
    .await;
    metrics.stop().await;
    assert!(counts.lock().unwrap().values().all(|&c| c == 1));
}

fn dir_has_only_killed_file(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |d| d.count() <= 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_archive_survives_kill9_plain_files() {
    persistence(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_archive_survives_kill9_gzip_rotation_work_dir() {
    persistence(true).await;
}
