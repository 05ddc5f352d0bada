//! nsq_to_nsq between two of our nsqd: every message of every `--topic` arrives (under its
//! own name or `--destination-topic`), from nsqd given directly or found through lookupd; the JSON filters pass, drop, requeue and re-encode as
//! NSQ v1.3.0's tool does (the expected bytes are what it published in the same run); with the
//! destination down nothing is FIN'd, and after `kill -9` of the destination or of the source
//! mid-stream every message still arrives at least once.

use nsq_engine::MessageId;
use nsq_server::protocol::Command;
use nsq_tests::{http_get, http_post, run_tool, Nsqd, Nsqlookupd, RawClient, Tool};
use std::collections::BTreeSet;
use std::time::Duration;

const CHECK: &str = "check";

use nsq_tests::wait::until as wait_for;

/// The channel's `(depth + deferred_count, in_flight_count, requeue_count)`, if it exists.
fn channel(nsqd: &Nsqd, topic: &str, channel: &str) -> Option<(u64, u64, u64)> {
    let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
    let channels = stats["topics"][0]["channels"].as_array()?.clone();
    let c = channels.iter().find(|c| c["channel_name"] == channel)?;
    Some((
        c["depth"].as_u64()? + c["deferred_count"].as_u64()?,
        c["in_flight_count"].as_u64()?,
        c["requeue_count"].as_u64()?,
    ))
}

fn drained(nsqd: &Nsqd, topic: &str) -> bool {
    channel(nsqd, topic, "nsq_to_nsq").is_some_and(|(d, f, _)| d == 0 && f == 0)
}

/// A `check` channel on the destination topic, so every relayed message waits there.
fn watch(nsqd: &Nsqd, topic: &str) {
    let reply = http_post(&nsqd.url(&format!("/topic/create?topic={topic}")), b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = http_post(
        &nsqd.url(&format!("/channel/create?topic={topic}&channel={CHECK}")),
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

fn publish(nsqd: &Nsqd, topic: &str, bodies: &[String]) {
    for chunk in bodies.chunks(100) {
        let reply = http_post(
            &nsqd.url(&format!("/mpub?topic={topic}")),
            chunk.join("\n").as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

/// Reads (and FINs) everything waiting in `topic`'s `check` channel.
fn read_all(nsqd: &Nsqd, topic: &str) -> Vec<String> {
    let (depth, _, _) = channel(nsqd, topic, CHECK).expect("check channel");
    let mut client = RawClient::connect(nsqd.tcp);
    client.subscribe(topic, CHECK);
    client.send(&Command::Rdy(depth.min(2500) as i64));
    (0..depth)
        .map(|_| {
            let (_, id, body) = client.message();
            client.send(&Command::Fin(MessageId(id)));
            String::from_utf8_lossy(&body).into_owned()
        })
        .collect()
}

fn relay(source: &Nsqd, destination: &Nsqd, extra: &[&str]) -> Tool {
    let mut args = vec![
        format!("--nsqd-tcp-address={}", source.tcp),
        format!("--destination-nsqd-tcp-address={}", destination.tcp),
        "--consumer-opt=default_requeue_delay,50ms".to_string(),
        "--consumer-opt=max_backoff_duration,200ms".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Tool::spawn("nsq_to_nsq", &args)
}

fn stop(mut tool: Tool) {
    let status = tool.terminate();
    assert!(status.success(), "{status}: {}", tool.stderr());
}

fn sorted(mut bodies: Vec<String>) -> Vec<String> {
    bodies.sort();
    bodies
}

fn bodies(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i:05}")).collect()
}

#[test]
fn every_message_of_every_topic_arrives() {
    let (source, destination) = (Nsqd::start(&[]), Nsqd::start(&[]));
    for topic in ["alpha", "beta", "merged"] {
        watch(&destination, topic);
    }
    let (alpha, beta) = (bodies("alpha", 300), bodies("beta", 200));
    publish(&source, "alpha", &alpha);
    publish(&source, "beta", &beta);
    let tool = relay(
        &source,
        &destination,
        &["--topic=alpha", "--topic=beta", "--status-every=100"],
    );
    wait_for("both topics relayed", Duration::from_secs(60), || {
        drained(&source, "alpha") && drained(&source, "beta")
    });
    let log = tool.stderr();
    stop(tool);
    // Publishes run concurrently (up to --max-in-flight), so the order may change, as NSQ
    // never promises one.
    assert_eq!(sorted(read_all(&destination, "alpha")), alpha, "once each");
    assert_eq!(sorted(read_all(&destination, "beta")), beta);
    assert!(log.contains("[aggregate]: finished 100 - 99th: "), "{log}");

    let more = bodies("again", 50);
    publish(&source, "alpha", &more);
    let tool = relay(
        &source,
        &destination,
        &[
            "--topic=alpha",
            "--destination-topic=merged",
            "--mode=round-robin",
        ],
    );
    wait_for(
        "relayed to --destination-topic",
        Duration::from_secs(60),
        || drained(&source, "alpha"),
    );
    stop(tool);
    assert_eq!(sorted(read_all(&destination, "merged")), more);
}

#[test]
fn sources_are_found_through_lookupd() {
    let lookupd = Nsqlookupd::start(&[]);
    let registered = format!("--lookupd-tcp-address={}", lookupd.tcp);
    let (a, b) = (Nsqd::start(&[&registered]), Nsqd::start(&[&registered]));
    let destination = Nsqd::start(&[]);
    watch(&destination, "found");
    let (from_a, from_b) = (bodies("a", 40), bodies("b", 60));
    publish(&a, "found", &from_a);
    publish(&b, "found", &from_b);
    wait_for("both nsqd registered", Duration::from_secs(30), || {
        let found = http_get(&lookupd.url("/lookup?topic=found"));
        found.status == 200
            && found.json()["producers"]
                .as_array()
                .is_some_and(|p| p.len() == 2)
    });
    let mut args = vec![
        "--topic=found".to_string(),
        format!("--lookupd-http-address={}", lookupd.http),
        format!("--destination-nsqd-tcp-address={}", destination.tcp),
    ];
    args.push("--consumer-opt=lookupd_poll_interval,200ms".to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tool = Tool::spawn("nsq_to_nsq", &args);
    wait_for("both sources relayed", Duration::from_secs(60), || {
        drained(&a, "found") && drained(&b, "found")
    });
    stop(tool);
    let mut expected = [from_a, from_b].concat();
    expected.sort();
    assert_eq!(sorted(read_all(&destination, "found")), expected);
}

#[test]
fn json_filters_work_as_nsq_does() {
    let (source, destination) = (Nsqd::start(&[]), Nsqd::start(&[]));
    watch(&destination, "out");
    let published = [
        "notjson",
        r#"{"k":"v","a":1,"z":[1.0,2.5],"f":2.0,"h":"<&>"}"#,
        r#"{"k":"w"}"#,
        r#"{"a":1}"#,
        r#"{"k":5}"#,
        "[1,2]",
        r#"{"k":"v","b":{"y":1,"x":2.0}}"#,
    ];
    for body in published {
        assert_eq!(
            http_post(&source.url("/pub?topic=json"), body.as_bytes()).status,
            200
        );
    }
    let tool = relay(
        &source,
        &destination,
        &[
            "--topic=json",
            "--destination-topic=out",
            "--require-json-field=k",
            "--require-json-value=v",
            "--whitelist-json-field=k",
            "--whitelist-json-field=a",
            "--whitelist-json-field=z",
            "--whitelist-json-field=f",
            "--whitelist-json-field=h",
            "--whitelist-json-field=b",
            "--consumer-opt=max_attempts,2",
        ],
    );
    // {"a":1} lacks the required field: REQ'd (with backoff) until max_attempts, then dropped.
    wait_for("every message judged", Duration::from_secs(60), || {
        drained(&source, "json")
    });
    let (_, _, requeued) = channel(&source, "json", "nsq_to_nsq").expect("channel");
    stop(tool);
    assert_eq!(
        requeued, 2,
        "the message missing the field was requeued until max_attempts"
    );
    assert_eq!(
        sorted(read_all(&destination, "out")),
        [
            r#"{"a":1,"f":2,"h":"\u003c\u0026\u003e","k":"v","z":[1,2.5]}"#,
            r#"{"b":{"x":2,"y":1},"k":"v"}"#,
        ]
    );
}

#[test]
fn nothing_is_finished_while_the_destination_is_down() {
    let (source, mut destination) = (Nsqd::start(&[]), Nsqd::start(&[]));
    watch(&destination, "held");
    destination.kill9();
    let sent = bodies("held", 100);
    publish(&source, "held", &sent);
    let tool = relay(&source, &destination, &["--topic=held"]);
    wait_for("failed publishes requeued", Duration::from_secs(30), || {
        channel(&source, "held", "nsq_to_nsq").is_some_and(|(_, _, r)| r >= 3)
    });
    let (depth, in_flight, _) = channel(&source, "held", "nsq_to_nsq").expect("channel");
    assert_eq!(
        depth + in_flight,
        100,
        "every message still in the source channel (waiting, deferred or in flight)"
    );
    destination.restart();
    wait_for(
        "relayed once the destination is back",
        Duration::from_secs(60),
        || drained(&source, "held"),
    );
    stop(tool);
    let got: BTreeSet<String> = read_all(&destination, "held").into_iter().collect();
    assert_eq!(got, sent.iter().cloned().collect::<BTreeSet<_>>());
}

#[test]
fn kill_9_of_either_side_mid_stream_loses_nothing() {
    let (mut source, mut destination) = (Nsqd::start(&[]), Nsqd::start(&[]));
    watch(&destination, "stream");
    let sent = bodies("stream", 3000);
    publish(&source, "stream", &sent);
    let tool = relay(
        &source,
        &destination,
        &["--topic=stream", "--max-in-flight=20"],
    );
    let relayed = |d: &Nsqd| channel(d, "stream", CHECK).map_or(0, |(depth, _, _)| depth);
    wait_for("relaying under way", Duration::from_secs(30), || {
        relayed(&destination) > 0
    });
    destination.kill9();
    destination.restart();
    let after_first = relayed(&destination);
    wait_for("relaying again", Duration::from_secs(60), || {
        relayed(&destination) > after_first
    });
    let (left, _, _) = channel(&source, "stream", "nsq_to_nsq").expect("channel");
    assert!(left > 0, "the source is killed mid-stream");
    source.kill9();
    source.restart();
    // The consumer reconnects to a lost nsqd after its 15 s reconnect interval.
    wait_for("every message relayed", Duration::from_secs(90), || {
        drained(&source, "stream")
    });
    stop(tool);
    let got = read_all(&destination, "stream");
    let distinct: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        distinct,
        sent.iter().cloned().collect::<BTreeSet<_>>(),
        "at least once each"
    );
    assert!(got.len() >= sent.len());
}

#[test]
fn bad_flags_fail_in_one_line() {
    let d = "--destination-nsqd-tcp-address=127.0.0.1:1";
    let s = "--nsqd-tcp-address=127.0.0.1:1";
    let cases: &[&[&str]] = &[
        &[],
        &["--topic=t", s],
        &["--topic=t", d],
        &["--topic=bad topic", s, d],
        &["--topic=t", s, d, "--destination-topic=bad topic"],
        &["--topic=t", s, d, "--lookupd-http-address=127.0.0.1:1"],
        &["--topic=t", s, d, "--mode=multicast"],
        &["--topic=t", s, d, "--producer-opt=nope,1"],
        &["--topic=t", s, d, "--consumer-opt=max_in_flight"],
        // Nothing listens there.
        &["--topic=t", s, d],
    ];
    for args in cases {
        let out = run_tool("nsq_to_nsq", args, b"", Duration::from_secs(20));
        assert!(!out.status.success(), "{args:?}: {out:?}");
        let line = out.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{args:?}: {line:?}");
        assert!(line.starts_with("nsq_to_nsq: "), "{args:?}: {line:?}");
    }
}
