//! nsqd tells nsqlookupd of topology changes as they happen, as NSQ v1.3.0's nsqd does: a
//! topic or channel is registered as part of creating it (a consumer looking a topic up right
//! after creating it finds it), and deleting a topic unregisters each of its channels too,
//! which is what makes nsqlookupd drop an `#ephemeral` channel's registration.

use nsq_tests::{http_get, http_post, Nsqd, Nsqlookupd};
use std::time::{Duration, Instant};

fn pair() -> (Nsqlookupd, Nsqd) {
    let lookupd = Nsqlookupd::start(&[]);
    let nsqd = Nsqd::start(&[&format!("--lookupd-tcp-address={}", lookupd.tcp)]);
    (lookupd, nsqd)
}

/// How long until `check` holds (panics after 10 s).
fn time_until(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    start.elapsed()
}

fn producers(lookupd: &Nsqlookupd, topic: &str) -> usize {
    let reply = http_get(&lookupd.url(&format!("/lookup?topic={topic}")));
    if reply.status != 200 {
        return 0;
    }
    reply.json()["producers"].as_array().map_or(0, Vec::len)
}

fn channels(lookupd: &Nsqlookupd, topic: &str) -> Vec<String> {
    let reply = http_get(&lookupd.url(&format!("/channels?topic={topic}")));
    let mut names: Vec<String> = reply.json()["channels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_new_topic_is_listed_by_lookupd_as_it_is_created() {
    let (lookupd, nsqd) = pair();
    // Wait for the registration connection, so the trials time registration alone.
    http_post(&nsqd.url("/topic/create?topic=warmup"), b"");
    time_until("warmup registered", || producers(&lookupd, "warmup") == 1);
    let mut delays: Vec<Duration> = (0..9)
        .map(|i| {
            let topic = format!("t{i}");
            assert_eq!(
                http_post(&nsqd.url(&format!("/topic/create?topic={topic}")), b"").status,
                200
            );
            // From the moment nsqd answered: the topic exists, lookupd should know.
            time_until(&topic, || producers(&lookupd, &topic) == 1)
        })
        .collect();
    delays.sort();
    // NSQ's nsqd lists a topic in 1–7 ms; a 100 ms poll of the topology would put the median
    // near 50 ms. The bound leaves room for a loaded machine and still tells the two apart.
    assert!(
        delays[delays.len() / 2] < Duration::from_millis(40),
        "registration is not event-driven: {delays:?}"
    );
    // Channels, and their deletion, travel the same way (an ephemeral channel's registration
    // goes with its last producer; a durable one's stays, as in NSQ).
    http_post(
        &nsqd.url("/channel/create?topic=t0&channel=c%23ephemeral"),
        b"",
    );
    time_until("channel registered", || {
        channels(&lookupd, "t0") == ["c#ephemeral"]
    });
    http_post(
        &nsqd.url("/channel/delete?topic=t0&channel=c%23ephemeral"),
        b"",
    );
    time_until("channel unregistered", || {
        channels(&lookupd, "t0").is_empty()
    });
}

#[test]
fn deleting_a_topic_unregisters_its_channels_so_ephemeral_ones_leave_lookupd() {
    let (lookupd, nsqd) = pair();
    http_post(&nsqd.url("/topic/create?topic=t"), b"");
    http_post(
        &nsqd.url("/channel/create?topic=t&channel=tail%23ephemeral"),
        b"",
    );
    http_post(&nsqd.url("/channel/create?topic=t&channel=durable"), b"");
    time_until("channels registered", || {
        channels(&lookupd, "t") == ["durable", "tail#ephemeral"]
    });
    assert_eq!(
        http_post(&nsqd.url("/topic/delete?topic=t"), b"").status,
        200
    );
    time_until("producer gone", || producers(&lookupd, "t") == 0);
    // What NSQ v1.3.0's pair shows after the same steps: the ephemeral channel is gone, the
    // durable one stays registered without producers, as does the topic.
    time_until("ephemeral channel dropped", || {
        channels(&lookupd, "t") == ["durable"]
    });
    let topics = http_get(&lookupd.url("/topics")).json();
    assert_eq!(topics["topics"], serde_json::json!(["t"]));
}
