//! Prometheus `/metrics` on nsqd, checked with a real parser (Python's `prometheus_client`
//! OpenMetrics parser, in the venv tests/run.sh creates).

use nsq_server::protocol::Command;
use nsq_tests::python::python;
use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use serde_json::Value;
use std::io::Write;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

/// Parses OpenMetrics text; returns `[{family, type, unit, samples: [{name, labels, value}]}]`.
fn parse(text: &str) -> Vec<Value> {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"family": f.name, "type": f.type, "unit": f.unit,
                "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
"#;
    let mut child = Process::new(python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "the parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("json")
}

/// The value of sample `name` with exactly these labels.
fn sample(families: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    for f in families {
        for s in f["samples"].as_array().expect("samples") {
            let l = s["labels"].as_object().expect("labels");
            if s["name"] == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
            {
                return s["value"].as_f64().expect("number");
            }
        }
    }
    panic!("no sample {name} {labels:?}");
}

fn family<'a>(families: &'a [Value], name: &str) -> &'a Value {
    families
        .iter()
        .find(|f| f["family"] == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

fn scrape(nsqd: &Nsqd) -> Vec<Value> {
    let reply = http_get(&nsqd.url("/metrics"));
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        reply.content_type
    );
    parse(&reply.body)
}

#[test]
fn metrics_hold_the_stats_numbers_and_ours() {
    let nsqd = Nsqd::start(&["--e2e-processing-latency-percentile=0.99"]);
    http_post(&nsqd.url("/topic/create?topic=m"), b"");
    http_post(&nsqd.url("/channel/create?topic=m&channel=idle"), b"");
    let mut consumer = RawClient::connect(nsqd.tcp);
    consumer.subscribe("m", "work");
    let mut producer = RawClient::connect(nsqd.tcp);
    for body in [b"abc", b"def", b"ghi"] {
        producer.publish("m", body);
    }
    consumer.send(&Command::Rdy(2));
    let (_, id, _) = consumer.message();
    let id = std::str::from_utf8(&id).expect("hex id").to_string();
    consumer.message();
    consumer.send_raw(format!("FIN {id}\n").as_bytes());
    // One finished; RDY 2 keeps the other two in flight. Wait until the FIN shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let families = loop {
        let f = scrape(&nsqd);
        let done = sample(
            &f,
            "nsq_channel_e2e_processing_latency_seconds",
            &[("topic", "m"), ("channel", "work"), ("quantile", "0.99")],
        );
        if done > 0.0 {
            break f;
        }
        assert!(Instant::now() < deadline, "the FIN never showed");
        std::thread::sleep(Duration::from_millis(50));
    };
    let t = [("topic", "m")];
    let work = [("topic", "m"), ("channel", "work")];
    let idle = [("topic", "m"), ("channel", "idle")];
    assert_eq!(family(&families, "nsq_topic_messages")["type"], "counter");
    assert_eq!(sample(&families, "nsq_topic_messages_total", &t), 3.0);
    assert_eq!(
        family(&families, "nsq_topic_message_bytes")["unit"],
        "bytes"
    );
    assert_eq!(sample(&families, "nsq_topic_message_bytes_total", &t), 9.0);
    assert_eq!(sample(&families, "nsq_topic_end_offset", &t), 3.0);
    assert!(sample(&families, "nsq_topic_retained_bytes", &t) > 0.0);
    // The same numbers /stats shows (nothing moves any more: one finished, two in flight).
    let stats: Value = http_get(&nsqd.url("/stats?format=json&topic=m")).json();
    let work_stats = stats["topics"][0]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["channel_name"] == "work")
        .expect("work")
        .clone();
    for (metric, key) in [
        ("nsq_channel_depth", "depth"),
        ("nsq_channel_in_flight", "in_flight_count"),
        ("nsq_channel_deferred", "deferred_count"),
    ] {
        assert_eq!(
            sample(&families, metric, &work),
            work_stats[key].as_f64().expect("number"),
            "{metric}"
        );
    }
    assert_eq!(
        sample(&families, "nsq_channel_in_flight", &work),
        2.0,
        "RDY 2 after one FIN: the other two"
    );
    assert_eq!(sample(&families, "nsq_channel_clients", &work), 1.0);
    assert_eq!(sample(&families, "nsq_channel_messages_total", &work), 3.0);
    assert_eq!(sample(&families, "nsq_channel_requeues_total", &work), 0.0);
    assert_eq!(sample(&families, "nsq_channel_lag_messages", &work), 2.0);
    assert!(sample(&families, "nsq_channel_lag_seconds", &work) >= 0.0);
    assert_eq!(sample(&families, "nsq_channel_depth", &idle), 3.0);
    assert_eq!(sample(&families, "nsq_channel_lag_messages", &idle), 3.0);
    assert_eq!(
        family(&families, "nsq_channel_lag_seconds")["unit"],
        "seconds"
    );
    assert_eq!(sample(&families, "nsq_connections", &[]), 2.0);
    assert_eq!(sample(&families, "nsq_producers", &[]), 1.0);
    assert_eq!(sample(&families, "nsq_recovery_events_total", &[]), 0.0);
    assert_eq!(sample(&families, "nsq_healthy", &[]), 1.0);
    assert!(
        sample(
            &families,
            "nsq_topic_e2e_processing_latency_seconds",
            &[("topic", "m"), ("quantile", "0.99")]
        ) > 0.0
    );
    // No per-client series: nothing labelled by client.
    for f in &families {
        for s in f["samples"].as_array().expect("samples") {
            let labels = s["labels"].as_object().expect("labels");
            assert!(
                labels
                    .keys()
                    .all(|k| ["topic", "channel", "quantile", "le"].contains(&k.as_str())),
                "{s}"
            );
        }
    }
    drop(consumer);
}

#[test]
fn ephemeral_series_are_optional_and_deleted_topics_go() {
    let nsqd = Nsqd::start(&["--metrics-exclude-ephemeral"]);
    let mut producer = RawClient::connect(nsqd.tcp);
    producer.publish("kept", b"x");
    producer.publish("gone", b"x");
    let mut consumer = RawClient::connect(nsqd.tcp);
    consumer.subscribe("kept", "tmp#ephemeral");
    let families = scrape(&nsqd);
    assert_eq!(
        sample(&families, "nsq_topic_messages_total", &[("topic", "kept")]),
        1.0
    );
    assert!(
        !serde_json::to_string(&families)
            .expect("json")
            .contains("tmp#ephemeral"),
        "ephemeral channel left out"
    );
    http_post(&nsqd.url("/topic/delete?topic=gone"), b"");
    let text = http_get(&nsqd.url("/metrics")).body;
    assert!(!text.contains("topic=\"gone\""), "{text}");
    drop(consumer);
    let plain = Nsqd::start(&[]);
    let mut consumer = RawClient::connect(plain.tcp);
    consumer.subscribe("kept", "tmp#ephemeral");
    let families = scrape(&plain);
    assert_eq!(
        sample(
            &families,
            "nsq_channel_clients",
            &[("topic", "kept"), ("channel", "tmp#ephemeral")]
        ),
        1.0
    );
}

/// The samples of `name` (any labels), as `(labels, value)`.
fn samples<'a>(
    families: &'a [Value],
    name: &str,
) -> Vec<(&'a serde_json::Map<String, Value>, f64)> {
    families
        .iter()
        .flat_map(|f| f["samples"].as_array().expect("samples"))
        .filter(|s| s["name"] == name)
        .map(|s| {
            (
                s["labels"].as_object().expect("labels"),
                s["value"].as_f64().expect("number"),
            )
        })
        .collect()
}

#[test]
fn metrics_show_what_the_log_and_its_fsyncs_did() {
    // Every PUB is fsynced before its OK, so the counts are settled when the PUBs return.
    let nsqd = Nsqd::start(&["--sync-every=1"]);
    let mut producer = RawClient::connect(nsqd.tcp);
    for body in [b"abc", b"def", b"ghi"] {
        producer.publish("f", body);
    }
    let families = scrape(&nsqd);
    let t = [("topic", "f")];
    assert_eq!(family(&families, "nsq_topic_fsyncs")["type"], "counter");
    let fsyncs = sample(&families, "nsq_topic_fsyncs_total", &t);
    // One PUB at a time, each waiting for its fsync: one fsync each.
    assert_eq!(fsyncs, 3.0);
    assert_eq!(
        sample(&families, "nsq_topic_fsynced_messages_total", &t),
        3.0
    );
    assert_eq!(sample(&families, "nsq_topic_segments", &t), 1.0);
    // Three records with their headers: more than the 9 body bytes.
    let appended = sample(&families, "nsq_topic_appended_bytes_total", &t);
    assert!(appended > 9.0, "{appended}");
    // The segment also holds its header, which no append wrote.
    assert!(appended < sample(&families, "nsq_topic_retained_bytes", &t));
    let latency = family(&families, "nsq_topic_fsync_duration_seconds");
    assert_eq!(
        (&latency["type"], &latency["unit"]),
        (&"histogram".into(), &"seconds".into())
    );
    assert_eq!(
        sample(&families, "nsq_topic_fsync_duration_seconds_count", &t),
        fsyncs
    );
    assert!(sample(&families, "nsq_topic_fsync_duration_seconds_sum", &t) > 0.0);
    let inf = [("topic", "f"), ("le", "+Inf")];
    assert_eq!(
        sample(&families, "nsq_topic_fsync_duration_seconds_bucket", &inf),
        fsyncs
    );
    let buckets = samples(&families, "nsq_topic_fsync_duration_seconds_bucket");
    assert_eq!(buckets.len(), 15, "14 bounds and +Inf");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative buckets"
    );
    assert_eq!(
        family(&families, "nsq_topic_fsync_batch_messages")["type"],
        "histogram"
    );
    assert_eq!(
        sample(&families, "nsq_topic_fsync_batch_messages_sum", &t),
        3.0
    );
    assert_eq!(
        sample(
            &families,
            "nsq_topic_fsync_batch_messages_bucket",
            &[("topic", "f"), ("le", "1.0")]
        ),
        3.0,
        "one message per fsync"
    );
}

#[test]
fn lookupd_metrics_count_producers_topics_channels_and_tombstones() {
    use nsq_tests::Nsqlookupd;
    let lookupd = Nsqlookupd::start(&[]);
    let nsqd = Nsqd::start(&[&format!("--lookupd-tcp-address={}", lookupd.tcp)]);
    http_post(&nsqd.url("/topic/create?topic=a"), b"");
    http_post(&nsqd.url("/channel/create?topic=a&channel=c1"), b"");
    http_post(&nsqd.url("/channel/create?topic=a&channel=c2"), b"");
    http_post(&nsqd.url("/topic/create?topic=b"), b"");
    // A topic only lookupd knows: registered, nobody produces it.
    http_post(&lookupd.url("/topic/create?topic=orphan"), b"");
    let lookupd_scrape = || {
        let reply = http_get(&lookupd.url("/metrics"));
        assert_eq!(reply.status, 200);
        assert!(reply
            .content_type
            .starts_with("application/openmetrics-text"));
        parse(&reply.body)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let families = loop {
        let f = lookupd_scrape();
        if sample(&f, "nsq_lookupd_channels", &[]) == 2.0
            && sample(&f, "nsq_lookupd_topics", &[]) == 3.0
        {
            break f;
        }
        assert!(Instant::now() < deadline, "nsqd never registered: {f:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(family(&families, "nsq_lookupd_producers")["type"], "gauge");
    assert_eq!(sample(&families, "nsq_lookupd_producers", &[]), 1.0);
    let reg =
        |f: &[Value], category| sample(f, "nsq_lookupd_registrations", &[("category", category)]);
    assert_eq!(reg(&families, "client"), 1.0);
    assert_eq!(
        reg(&families, "topic"),
        2.0,
        "a and b; orphan has no producer"
    );
    assert_eq!(reg(&families, "channel"), 2.0);
    assert_eq!(sample(&families, "nsq_lookupd_tombstones", &[]), 0.0);
    let producers_of =
        |f: &[Value], topic| sample(f, "nsq_lookupd_topic_producers", &[("topic", topic)]);
    assert_eq!(producers_of(&families, "a"), 1.0);
    assert_eq!(producers_of(&families, "orphan"), 0.0);
    // The same numbers /nodes and /topics show.
    let topics = http_get(&lookupd.url("/topics")).json();
    assert_eq!(topics["topics"].as_array().map(Vec::len), Some(3));
    let node = format!("127.0.0.1:{}", nsqd.http.port());
    let reply = http_post(
        &lookupd.url(&format!("/topic/tombstone?topic=a&node={node}")),
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let families = lookupd_scrape();
    assert_eq!(sample(&families, "nsq_lookupd_tombstones", &[]), 1.0);
    assert_eq!(producers_of(&families, "a"), 0.0, "tombstoned");
    assert_eq!(producers_of(&families, "b"), 1.0);
    assert_eq!(sample(&families, "nsq_lookupd_producers", &[]), 1.0);
}
