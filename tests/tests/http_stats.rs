//! `/stats` in NSQ's shapes: the JSON key set NSQ v1.3.0 answers for the same actions, the
//! topic/channel/include_clients/include_mem parameters, counters, and the text format.

use nsq_server::protocol::Command;
use nsq_tests::{http_get, Nsqd, RawClient};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Every key path of a JSON document (`.a.b`, `[]` for array elements).
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let p = format!("{prefix}.{k}");
                out.insert(p.clone());
                paths(x, &p, out);
            }
        }
        Value::Array(items) => {
            for x in items {
                paths(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// What the reference nsqd's `/stats?format=json&topic=ks` holds after: a producer PUBs two
/// messages, a consumer IDENTIFYs, SUBs and holds one message in flight.
const REFERENCE_KEYS: &str = ".health .memory .memory.gc_pause_usec_100 .memory.gc_pause_usec_95 .memory.gc_pause_usec_99 .memory.gc_total_runs .memory.heap_idle_bytes .memory.heap_in_use_bytes .memory.heap_objects .memory.heap_released_bytes .memory.next_gc_bytes .producers .producers[].client_id .producers[].connect_ts .producers[].deflate .producers[].finish_count .producers[].hostname .producers[].in_flight_count .producers[].message_count .producers[].pub_counts .producers[].pub_counts[].count .producers[].pub_counts[].topic .producers[].ready_count .producers[].remote_address .producers[].requeue_count .producers[].sample_rate .producers[].snappy .producers[].state .producers[].tls .producers[].tls_cipher_suite .producers[].tls_negotiated_protocol .producers[].tls_negotiated_protocol_is_mutual .producers[].tls_version .producers[].user_agent .producers[].version .start_time .topics .topics[].backend_depth .topics[].channels .topics[].channels[].backend_depth .topics[].channels[].channel_name .topics[].channels[].client_count .topics[].channels[].clients .topics[].channels[].clients[].client_id .topics[].channels[].clients[].connect_ts .topics[].channels[].clients[].deflate .topics[].channels[].clients[].finish_count .topics[].channels[].clients[].hostname .topics[].channels[].clients[].in_flight_count .topics[].channels[].clients[].message_count .topics[].channels[].clients[].ready_count .topics[].channels[].clients[].remote_address .topics[].channels[].clients[].requeue_count .topics[].channels[].clients[].sample_rate .topics[].channels[].clients[].snappy .topics[].channels[].clients[].state .topics[].channels[].clients[].tls .topics[].channels[].clients[].tls_cipher_suite .topics[].channels[].clients[].tls_negotiated_protocol .topics[].channels[].clients[].tls_negotiated_protocol_is_mutual .topics[].channels[].clients[].tls_version .topics[].channels[].clients[].user_agent .topics[].channels[].clients[].version .topics[].channels[].deferred_count .topics[].channels[].depth .topics[].channels[].e2e_processing_latency .topics[].channels[].e2e_processing_latency.count .topics[].channels[].e2e_processing_latency.percentiles .topics[].channels[].in_flight_count .topics[].channels[].message_count .topics[].channels[].paused .topics[].channels[].requeue_count .topics[].channels[].timeout_count .topics[].depth .topics[].e2e_processing_latency .topics[].e2e_processing_latency.count .topics[].e2e_processing_latency.percentiles .topics[].message_bytes .topics[].message_count .topics[].paused .topics[].topic_name .version";

/// Keys we add for replay (ignored by NSQ's clients, which decode into structs).
const OUR_KEYS: &str = ".topics[].retained .topics[].retained.first_offset .topics[].retained.end_offset .topics[].retained.first_timestamp .topics[].retained.last_timestamp .topics[].retained.bytes .topics[].retained.fsyncs .topics[].retained.fsynced_messages .topics[].channels[].position .topics[].channels[].position.floor .topics[].channels[].position.next .topics[].channels[].position.lag_messages .topics[].channels[].position.lag_seconds";

fn stats(nsqd: &Nsqd, query: &str) -> Value {
    http_get(&nsqd.url(&format!("/stats?format=json{query}"))).json()
}

/// The reference scenario; returns (producer, consumer) so they stay connected.
fn scenario(nsqd: &Nsqd) -> (RawClient, RawClient) {
    let mut producer = RawClient::connect(nsqd.tcp);
    producer.publish("ks", b"a");
    producer.publish("ks", b"b");
    let mut consumer = RawClient::connect(nsqd.tcp);
    consumer.identify(json!({"client_id": "cid", "hostname": "hn", "user_agent": "ua/1"}));
    consumer.subscribe("ks", "c");
    consumer.send(&Command::Rdy(1));
    consumer.message();
    (producer, consumer)
}

/// Polls until `check` holds for the stats of `query` (counters update asynchronously).
fn wait_stats(nsqd: &Nsqd, query: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(nsqd, query);
        if check(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "stats never matched: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn json_has_the_reference_key_set_and_values() {
    let nsqd = Nsqd::start(&[]);
    let (_producer, _consumer) = scenario(&nsqd);
    let s = wait_stats(&nsqd, "&topic=ks", |s| {
        s["topics"][0]["channels"][0]["in_flight_count"] == 1
    });
    let mut keys = BTreeSet::new();
    paths(&s, "", &mut keys);
    let expected: BTreeSet<String> = REFERENCE_KEYS
        .split(' ')
        .chain(OUR_KEYS.split(' '))
        .map(String::from)
        .collect();
    assert_eq!(
        keys.symmetric_difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{s}"
    );
    // Field order follows NSQ's Go structs.
    let raw = http_get(&nsqd.url("/stats?format=json&topic=ks")).body;
    assert!(
        raw.starts_with(r#"{"version":"1.3.0","health":"OK","start_time":"#),
        "{raw}"
    );

    let topic = &s["topics"][0];
    assert_eq!(topic["topic_name"], "ks");
    assert_eq!(topic["message_count"], 2);
    assert_eq!(topic["message_bytes"], 2);
    let channel = &topic["channels"][0];
    assert_eq!(
        (
            &channel["depth"],
            &channel["in_flight_count"],
            &channel["client_count"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    let client = &channel["clients"][0];
    assert_eq!(client["client_id"], "cid");
    assert_eq!(client["hostname"], "hn");
    assert_eq!(client["user_agent"], "ua/1");
    assert_eq!(client["state"], 3);
    assert_eq!(client["ready_count"], 1);
    assert_eq!(client["message_count"], 1);
    assert_eq!(client["version"], "V2");
    let producer = &s["producers"][0];
    // Without IDENTIFY a client is named by its host, as NSQ does.
    assert_eq!(producer["client_id"], "127.0.0.1");
    assert_eq!(producer["state"], 0);
    assert_eq!(producer["pub_counts"], json!([{"topic": "ks", "count": 2}]));
}

#[test]
fn filters_and_includes() {
    let nsqd = Nsqd::start(&[]);
    let (_producer, _consumer) = scenario(&nsqd);
    let mut other = RawClient::connect(nsqd.tcp);
    other.subscribe("other", "d");

    let all = stats(&nsqd, "");
    let names: BTreeSet<&str> = all["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["topic_name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["ks", "other"]));
    assert!(all["memory"].is_object());

    let one = stats(&nsqd, "&topic=other");
    assert_eq!(one["topics"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        one["producers"],
        Value::Null,
        "ks's producer is not other's"
    );
    // A channel filter leaves out topics that lack the channel.
    let by_channel = stats(&nsqd, "&channel=d");
    assert_eq!(by_channel["topics"].as_array().map(Vec::len), Some(1));
    assert_eq!(by_channel["topics"][0]["topic_name"], "other");
    assert_eq!(stats(&nsqd, "&topic=ks&channel=nope")["topics"], json!([]));
    assert_eq!(stats(&nsqd, "&topic=nothere")["topics"], Value::Null);

    let bare = stats(&nsqd, "&topic=ks&include_clients=false&include_mem=false");
    assert!(bare.get("memory").is_none());
    assert_eq!(bare["producers"], Value::Null);
    assert_eq!(bare["topics"][0]["channels"][0]["clients"], Value::Null);
    assert_eq!(bare["topics"][0]["channels"][0]["client_count"], 1);
}

#[test]
fn counters_follow_requeues_timeouts_deferrals_and_pauses() {
    let nsqd = Nsqd::start(&[]);
    let mut c = RawClient::connect(nsqd.tcp);
    c.identify(json!({"msg_timeout": 1000}));
    c.subscribe("counted", "c");
    // The deferred message goes first: counted as deferred at once, as NSQ does (see
    // deferred_counts.rs), and still after the channel has read past it.
    c.send(&Command::Dpub {
        topic: "counted".into(),
        defer_ms: 60_000,
        body: b"later".to_vec().into(),
    });
    c.expect_response(b"OK");
    c.publish("counted", b"one");
    c.send(&Command::Rdy(1));
    let (_, id, _) = c.message();
    c.send_raw(format!("REQ {} 0\n", String::from_utf8_lossy(&id)).as_bytes());
    c.message(); // attempts 2; left to time out, and not redelivered with RDY 0
    c.send(&Command::Rdy(0));
    let s = wait_stats(&nsqd, "&topic=counted", |s| {
        s["topics"][0]["channels"][0]["timeout_count"] == 1
    });
    let channel = &s["topics"][0]["channels"][0];
    assert_eq!(channel["requeue_count"], 1);
    assert_eq!(channel["deferred_count"], 1);
    assert_eq!(channel["clients"][0]["requeue_count"], 1);
    assert_eq!(s["topics"][0]["message_count"], 2);

    let post = |path: &str| nsq_tests::http_post(&nsqd.url(path), b"").status;
    assert_eq!(post("/channel/pause?topic=counted&channel=c"), 200);
    assert_eq!(post("/topic/pause?topic=counted"), 200);
    let paused = stats(&nsqd, "&topic=counted");
    assert_eq!(paused["topics"][0]["paused"], true);
    assert_eq!(paused["topics"][0]["channels"][0]["paused"], true);

    // CLS shows as NSQ's closing state.
    c.send(&Command::Cls);
    c.expect_response(b"CLOSE_WAIT");
    wait_stats(&nsqd, "&topic=counted", |s| {
        s["topics"][0]["channels"][0]["clients"][0]["state"] == 4
    });
}

#[test]
fn text_format_reads_like_nsq() {
    let nsqd = Nsqd::start(&[]);
    let (_producer, consumer) = scenario(&nsqd);
    let text = http_get(&nsqd.url("/stats?format=text&topic=ks")).body;
    let port = consumer_port(&nsqd);
    for line in [
        "nsqd v1.3.0",
        "start_time 20",
        "uptime ",
        "Health: OK",
        "Memory:",
        "   heap_in_use_bytes        \t",
        "Topics:",
        "   [ks             ] depth: 0     be-depth: 0     msgs: 2        e2e%: ",
        "      [c                        ] depth: 1     ",
        "inflt: 1    def: 0    re-q: 0     timeout: 0     msgs: 2        e2e%: ",
        &format!("        [V2 hn:{port} ua/1"),
        "] state: 3 inflt: 1    rdy: 1    fin: 0        re-q: 0        msgs: 1        connected: ",
        "Producers:",
        "] msgs: 2        topics: ks=2 connected: ",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    drop(consumer);
    // Default format is text; an empty nsqd has no topics and no producers.
    let empty = Nsqd::start(&[]);
    let text = http_get(&empty.url("/stats")).body;
    assert!(text.contains("Topics: None"), "{text}");
    assert!(text.contains("Producers: None"), "{text}");
}

/// The consumer's port as nsqd sees it (from its JSON stats).
fn consumer_port(nsqd: &Nsqd) -> String {
    let s = stats(nsqd, "&topic=ks");
    let address = s["topics"][0]["channels"][0]["clients"][0]["remote_address"]
        .as_str()
        .expect("remote_address")
        .to_string();
    address.rsplit(':').next().unwrap_or_default().to_string()
}
