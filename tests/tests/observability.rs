//! statsd pushes and end-to-end latency percentiles, with NSQ v1.3.0's names, types, packing
//! and `/stats` shapes (recorded from the reference nsqd for the same steps).

use nsq_server::protocol::Command;
use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use serde_json::Value;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// A statsd daemon stand-in: records every datagram.
struct StatsdListener {
    socket: UdpSocket,
}

impl StatsdListener {
    fn new() -> StatsdListener {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        StatsdListener { socket }
    }

    fn address(&self) -> String {
        self.socket.local_addr().expect("addr").to_string()
    }

    /// Datagrams until one push is complete: the last metric of a push (`mem.gc_runs`) seen.
    fn one_push(&self) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut datagrams = Vec::new();
        let mut buf = [0u8; 65_536];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let d = buf[..n].to_vec();
                let last = String::from_utf8_lossy(&d).contains(".mem.gc_runs:");
                datagrams.push(d);
                if last {
                    return datagrams;
                }
            }
        }
        panic!("no complete statsd push within 15s: {datagrams:?}");
    }
}

/// `name -> (value, type)` of one push.
fn metrics(datagrams: &[Vec<u8>]) -> HashMap<String, (i64, String)> {
    let mut out = HashMap::new();
    for d in datagrams {
        let text = String::from_utf8(d.clone()).expect("utf8 datagram");
        assert!(
            text.ends_with('\n'),
            "every metric ends with a newline: {text:?}"
        );
        for line in text.lines() {
            let (name, rest) = line.split_once(':').expect("name:value|type");
            let (value, kind) = rest.split_once('|').expect("value|type");
            out.insert(
                name.to_string(),
                (value.parse().expect("integer value"), kind.to_string()),
            );
        }
    }
    out
}

/// Takes `n` messages, stops further deliveries (RDY 0), then FINs the `n`.
fn finish(consumer: &mut RawClient, n: usize) {
    consumer.send(&Command::Rdy(n as i64));
    let ids: Vec<String> = (0..n)
        .map(|_| {
            let (_, id, _) = consumer.message();
            String::from_utf8(id.to_vec()).expect("hex id")
        })
        .collect();
    consumer.send(&Command::Rdy(0));
    for id in ids {
        consumer.send_raw(format!("FIN {id}\n").as_bytes());
    }
}

#[test]
fn statsd_pushes_nsq_names_types_and_deltas_packed_into_datagrams() {
    let statsd = StatsdListener::new();
    let address = statsd.address();
    let nsqd = Nsqd::start(&[
        &format!("--statsd-address={address}"),
        "--statsd-interval=1s",
        "--statsd-udp-packet-size=200",
        "--e2e-processing-latency-percentile=0.99,1.0",
        "--e2e-processing-latency-percentile=0.5",
    ]);
    http_post(&nsqd.url("/topic/create?topic=st"), b"");
    http_post(&nsqd.url("/channel/create?topic=st&channel=idle"), b"");
    let mut consumer = RawClient::connect(nsqd.tcp);
    consumer.subscribe("st", "work");
    let mut producer = RawClient::connect(nsqd.tcp);
    for body in [b"aa", b"bb", b"cc", b"dd", b"ee"] {
        producer.publish("st", body);
    }
    finish(&mut consumer, 3);
    // FINs are handed over per read; wait until /stats shows them, then for a fresh push.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&nsqd.url("/stats?format=json&topic=st")).json()["topics"][0]["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["channel_name"] == "work"))
        .map_or(0, |c| {
            c["e2e_processing_latency"]["count"].as_u64().unwrap_or(0)
        })
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "FIN latencies never reached /stats"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let prefix = format!("nsq.127_0_0_1_{}", nsqd.http.port());
    let key = |name: &str| format!("{prefix}.{name}");
    // A push can be half-written when we start listening: take whole ones until one shows
    // the state above.
    let push = loop {
        let push = statsd.one_push();
        let m = metrics(&push);
        if m.get(&key("topic.st.channel.work.depth")) == Some(&(2, "g".to_string()))
            && m.get(&key("topic.st.channel.work.e2e_processing_latency_100"))
                .is_some_and(|v| v.0 > 0)
        {
            break push;
        }
    };
    for d in &push {
        assert!(
            d.len() <= 200,
            "datagram of {} bytes over the limit",
            d.len()
        );
    }
    assert!(
        push.iter()
            .any(|d| String::from_utf8_lossy(d).lines().count() > 1),
        "several metrics share a datagram"
    );
    let m = metrics(&push);
    let get = |name: &str| {
        m.get(&key(name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {m:?}"))
    };
    let gauge = |name: &str, v: i64| assert_eq!(get(name), (v, "g".to_string()), "{name}");
    let counter_type = |name: &str| assert_eq!(get(name).1, "c", "{name} is a counter");
    gauge("topic.st.depth", 0);
    gauge("topic.st.backend_depth", 0);
    counter_type("topic.st.message_count");
    counter_type("topic.st.message_bytes");
    gauge("topic.st.channel.work.depth", 2);
    gauge("topic.st.channel.work.in_flight_count", 0);
    gauge("topic.st.channel.work.deferred_count", 0);
    gauge("topic.st.channel.work.clients", 1);
    gauge("topic.st.channel.idle.depth", 5);
    gauge("topic.st.channel.idle.clients", 0);
    counter_type("topic.st.channel.work.requeue_count");
    counter_type("topic.st.channel.work.timeout_count");
    counter_type("topic.st.channel.idle.message_count");
    for q in ["100", "99", "50"] {
        let (v, kind) = get(&format!("topic.st.channel.work.e2e_processing_latency_{q}"));
        assert_eq!(kind, "g");
        assert!(v > 0, "a FINished message took some time ({q}: {v})");
        assert_eq!(get(&format!("topic.st.e2e_processing_latency_{q}")).1, "g");
        gauge(
            &format!("topic.st.channel.idle.e2e_processing_latency_{q}"),
            0,
        );
    }
    gauge("mem.heap_objects", 0);
    assert!(get("mem.heap_in_use_bytes").0 > 0, "resident memory");
    counter_type("mem.gc_runs");
    // Counters are deltas since the previous push: each push so far was read whole before
    // the next publish, so from here on the deltas add up to exactly what is published next.
    assert_eq!(get("topic.st.message_count").1, "c");
    producer.publish("st", b"ffff");
    let (mut messages, mut bytes) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = metrics(&statsd.one_push());
        messages += m[&key("topic.st.message_count")].0;
        bytes += m[&key("topic.st.message_bytes")].0;
        if m[&key("topic.st.channel.idle.depth")].0 == 6 {
            break;
        }
        assert!(Instant::now() < deadline, "the publish never showed");
    }
    assert_eq!(
        (messages, bytes),
        (1, 4),
        "one message of 4 bytes since the last push"
    );
    drop(nsqd);
}

#[test]
fn e2e_latency_in_stats_like_nsq() {
    let nsqd = Nsqd::start(&["--e2e-processing-latency-percentile=0.99,0.5"]);
    http_post(&nsqd.url("/topic/create?topic=lat"), b"");
    http_post(&nsqd.url("/channel/create?topic=lat&channel=c1"), b"");
    http_post(&nsqd.url("/channel/create?topic=lat&channel=c2"), b"");
    let mut producer = RawClient::connect(nsqd.tcp);
    for _ in 0..5 {
        producer.publish("lat", b"x");
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut consumer = RawClient::connect(nsqd.tcp);
    consumer.subscribe("lat", "c1");
    finish(&mut consumer, 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let s: Value = http_get(&nsqd.url("/stats?format=json&topic=lat")).json();
        // The channel's figure and the topic's are read one after the other, so a FIN's
        // samples can land between them: wait for both.
        if s["topics"][0]["e2e_processing_latency"]["count"] == 3
            && s["topics"][0]["channels"][0]["e2e_processing_latency"]["count"] == 3
        {
            break s;
        }
        assert!(Instant::now() < deadline, "latencies never showed: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let topic = &stats["topics"][0];
    let c1 = &topic["channels"][0];
    let c2 = &topic["channels"][1];
    assert_eq!(c1["channel_name"], "c1");
    assert_eq!(c1["e2e_processing_latency"]["count"], 3);
    let ps = c1["e2e_processing_latency"]["percentiles"]
        .as_array()
        .expect("percentiles")
        .clone();
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0]["quantile"], 0.99, "highest first, as NSQ");
    assert_eq!(ps[1]["quantile"], 0.5);
    for p in &ps {
        let ns = p["value"].as_u64().expect("integer nanoseconds");
        assert!(ns >= 290_000_000, "waited at least the 300ms sleep: {ns}");
        assert!(ns < 60_000_000_000, "{ns}");
    }
    // An untouched channel: count 0, every quantile 0 (NSQ's answer).
    assert_eq!(
        c2["e2e_processing_latency"],
        serde_json::json!({"count": 0, "percentiles": [{"quantile": 0.99, "value": 0}, {"quantile": 0.5, "value": 0}]})
    );
    // The topic aggregates its channels.
    assert_eq!(topic["e2e_processing_latency"]["count"], 3);
    let text = http_get(&nsqd.url("/stats?format=text&topic=lat")).body;
    let line = text.lines().find(|l| l.contains("[c1 ")).expect("c1 line");
    let e2e = line.split("e2e%: ").nth(1).expect("e2e column");
    assert_eq!(e2e.split(", ").count(), 2, "{line}");
    assert!(e2e.ends_with("ms") || e2e.ends_with('s'), "{line}");
    drop(consumer);
}

#[test]
fn e2e_and_statsd_off_by_default_and_bad_values_refused() {
    let nsqd = Nsqd::start(&[]);
    let mut producer = RawClient::connect(nsqd.tcp);
    producer.publish("off", b"x");
    let s: Value = http_get(&nsqd.url("/stats?format=json&topic=off")).json();
    assert_eq!(
        s["topics"][0]["e2e_processing_latency"],
        serde_json::json!({"count": 0, "percentiles": null})
    );
    drop(nsqd);
    for bad in [
        "--e2e-processing-latency-percentile=99",
        "--e2e-processing-latency-percentile=0",
        "--e2e-processing-latency-percentile=x",
    ] {
        let out = std::process::Command::new(nsq_tests::binary("nsqd"))
            .arg(bad)
            .arg("--data-path=/nonexistent-nsqd-dir")
            .output()
            .expect("run nsqd");
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("e2e-processing-latency-percentile"),
            "{bad}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}
