//! The `nsq-client` crate's examples (`tools/client/examples/`), run as built binaries
//! against our nsqd and nsqlookupd: what each one prints, and what nsqd's `/stats` says it did.
//! They are built by `cargo build -p nsq-client --examples` (tests/run.sh does).

use nsq_tests::{http_get, http_post, run_tool, Nsqd, Nsqlookupd, ToolOutput};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `examples/<name>` with `args`; panics (with its stderr) unless it exits 0.
fn run_example(name: &str, args: &[&str]) -> ToolOutput {
    let out = run_tool(&format!("examples/{name}"), args, b"", LIMIT);
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{}",
        out.status,
        out.stderr
    );
    out
}

fn topic_stats(nsqd: &Nsqd, topic: &str) -> serde_json::Value {
    let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
    stats["topics"][0].clone()
}

fn channel_stats(nsqd: &Nsqd, topic: &str, channel: &str) -> serde_json::Value {
    let topic = topic_stats(nsqd, topic);
    let channels = topic["channels"].as_array().cloned().unwrap_or_default();
    channels
        .into_iter()
        .find(|c| c["channel_name"] == channel)
        .unwrap_or_default()
}

/// The `seq` fields of publish_json's events, checking each is one.
fn seqs(lines: &[&str]) -> Vec<u64> {
    lines
        .iter()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("a JSON event");
            assert_eq!(event["kind"], "click", "{line}");
            assert!(event["at_ms"].as_u64().is_some(), "{line}");
            event["seq"].as_u64().expect("seq")
        })
        .collect()
}

#[test]
fn publish_json_stores_every_event_as_json() {
    let nsqd = Nsqd::start(&[]);
    let addr = nsqd.tcp.to_string();
    // A channel first, so the events stay there to be counted.
    let created = http_post(&nsqd.url("/topic/create?topic=events"), b"");
    assert_eq!(created.status, 200);
    let created = http_post(&nsqd.url("/channel/create?topic=events&channel=check"), b"");
    assert_eq!(created.status, 200);
    let out = run_example(
        "publish_json",
        &[
            "--nsqd-tcp-address",
            &addr,
            "--topic",
            "events",
            "--count",
            "25",
        ],
    );
    assert_eq!(out.stdout.trim(), "published 25 events to events");
    let topic = topic_stats(&nsqd, "events");
    assert_eq!(topic["message_count"], 25, "{topic}");
    // The bodies themselves are read back as JSON in the discovery test below.
    assert_eq!(channel_stats(&nsqd, "events", "check")["depth"], 25);
}

#[test]
fn metrics_consumer_requeues_failed_writes_and_backs_off() {
    let nsqd = Nsqd::start(&[]);
    let addr = nsqd.tcp.to_string();
    let metrics: Vec<String> = (0..20)
        .map(|i| {
            let name = if i % 2 == 0 { "cpu" } else { "mem" };
            format!(r#"{{"name":"{name}","value":{}}}"#, i % 2 + 1)
        })
        .collect();
    let reply = http_post(
        &nsqd.url("/mpub?topic=metrics"),
        metrics.join("\n").as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);

    let out = run_example(
        "metrics_consumer",
        &[
            "--nsqd-tcp-address",
            &addr,
            "--count",
            "20",
            "--store-down-for",
            "3",
            "--requeue-delay-ms",
            "50",
            "--backoff-ms",
            "50",
        ],
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert_eq!(lines[0], "cpu 10");
    assert_eq!(lines[1], "mem 20");
    // Every metric stored once; the three failed writes were REQueued and delivered again.
    let counters: std::collections::BTreeMap<&str, u64> = lines[2]
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.parse().expect("a count")))
        .collect();
    assert_eq!(counters["stored"], 20, "{}", lines[2]);
    assert_eq!(counters["requeued"], 3, "{}", lines[2]);
    assert_eq!(counters["received"], 23, "{}", lines[2]);
    assert_eq!(counters["finished"], 20, "{}", lines[2]);
    assert!(counters["backoffs"] >= 1, "{}", lines[2]);

    let channel = channel_stats(&nsqd, "metrics", "aggregate");
    assert_eq!(channel["requeue_count"], 3, "{channel}");
    assert_eq!(channel["depth"], 0, "{channel}");
    assert_eq!(channel["in_flight_count"], 0, "{channel}");
}

fn wait_registered(lookupd: &Nsqlookupd, nsqds: &[&Nsqd]) {
    nsq_tests::wait::lookupd_lists(lookupd, "events", nsqds, LIMIT)
}

#[test]
fn discovery_consumes_from_every_nsqd_lookupd_lists() {
    let lookupd = Nsqlookupd::start(&[]);
    let flag = format!("--lookupd-tcp-address={}", lookupd.tcp);
    let a = Nsqd::start(&[&flag]);
    let b = Nsqd::start(&[&flag]);
    // Events on both nsqd, published by the publish_json example.
    for (nsqd, count) in [(&a, "7"), (&b, "5")] {
        let addr = nsqd.tcp.to_string();
        run_example(
            "publish_json",
            &["--nsqd-tcp-address", &addr, "--count", count],
        );
    }
    wait_registered(&lookupd, &[&a, &b]);

    let lookupd_addr = lookupd.http.to_string();
    let out = run_example(
        "lookupd_discovery",
        &["--lookupd-http-address", &lookupd_addr, "--count", "12"],
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 13, "{}", out.stdout);
    // Each message line: `<nsqd address> <body>`; group the bodies by the port they came from.
    let mut by_port: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
    for line in &lines[..12] {
        let (nsqd, body) = line.split_once(' ').expect("address and body");
        let port = nsqd.rsplit(':').next().and_then(|p| p.parse().ok());
        by_port.entry(port.expect("a port")).or_default().push(body);
    }
    let mut from_a = seqs(&by_port[&a.tcp.port()]);
    let mut from_b = seqs(&by_port[&b.tcp.port()]);
    from_a.sort_unstable();
    from_b.sort_unstable();
    assert_eq!(from_a, (0..7).collect::<Vec<_>>());
    assert_eq!(from_b, (0..5).collect::<Vec<_>>());
    assert!(
        lines[12].starts_with("received 12 messages over 2 connections: "),
        "{}",
        lines[12]
    );
    for nsqd in [&a, &b] {
        let channel = channel_stats(nsqd, "events", "discovery");
        assert_eq!(channel["depth"], 0, "{channel}");
        assert_eq!(channel["in_flight_count"], 0, "{channel}");
    }
}
