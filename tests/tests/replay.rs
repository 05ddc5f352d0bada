//! Replay, which NSQ cannot do: a channel rewound to a time redelivers exactly what was
//! published from then on, while the topic's other channels carry on untouched; retention
//! keeps consumed data for the window only; replay survives a restart.

use nsq_server::protocol::Frame;
use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Publishes in MPUBs of 10 (an MPUB is one append, so small segments roll between them).
fn publish(nsqd: &Nsqd, topic: &str, bodies: &[String]) {
    for chunk in bodies.chunks(10) {
        let reply = http_post(
            &nsqd.url(&format!("/mpub?topic={topic}")),
            chunk.join("\n").as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

/// Waits until no client is subscribed to `topic`, so a closed consumer cannot take what a
/// rewind makes deliverable again.
fn wait_no_clients(nsqd: &Nsqd, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let topic = stats_topic(nsqd, topic);
        let busy = topic["channels"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["client_count"] != 0));
        if !busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "consumers never went away: {topic}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn batch(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i:03}")).collect()
}

/// A subscriber that FINs what it receives.
struct Consumer(RawClient);

impl Consumer {
    fn new(nsqd: &Nsqd, topic: &str, channel: &str) -> Consumer {
        let mut client = RawClient::connect(nsqd.tcp);
        client.subscribe(topic, channel);
        client.send_raw(b"RDY 100\n");
        Consumer(client)
    }

    /// Receives (and FINs) messages until `quiet` passes without one, or `limit` arrived.
    fn receive(&mut self, limit: usize, quiet: Duration) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < limit {
            match self.0.try_frame(quiet) {
                Some(Frame::Message { id, body, .. }) => {
                    got.push(String::from_utf8_lossy(&body).into_owned());
                    self.0
                        .send_raw(format!("FIN {}\n", String::from_utf8_lossy(&id)).as_bytes());
                }
                Some(Frame::Response(_)) => {}
                // FINs that crossed a rewind fail, as the API says they do.
                Some(Frame::Error(e)) if e.starts_with(b"E_FIN_FAILED") => {}
                Some(Frame::Error(e)) => panic!("error frame: {}", String::from_utf8_lossy(&e)),
                None => break,
            }
        }
        got
    }
}

fn rewind(nsqd: &Nsqd, topic: &str, channel: &str, to: &str) -> nsq_tests::HttpReply {
    http_post(
        &nsqd.url(&format!(
            "/channel/rewind?topic={topic}&channel={channel}&to={to}"
        )),
        b"",
    )
}

fn stats_topic(nsqd: &Nsqd, topic: &str) -> serde_json::Value {
    http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json()["topics"][0].clone()
}

#[test]
fn rewound_channel_redelivers_from_a_time_and_other_channels_are_untouched() {
    let nsqd = Nsqd::start(&["--retention-time=1h"]);
    http_post(&nsqd.url("/topic/create?topic=events"), b"");
    for channel in ["metrics", "archive"] {
        http_post(
            &nsqd.url(&format!("/channel/create?topic=events&channel={channel}")),
            b"",
        );
    }
    let (first, second, third) = (batch("one", 20), batch("two", 20), batch("three", 20));
    publish(&nsqd, "events", &first);
    std::thread::sleep(Duration::from_millis(300));
    let between = now_ns();
    std::thread::sleep(Duration::from_millis(300));
    publish(&nsqd, "events", &second);
    std::thread::sleep(Duration::from_millis(300));
    publish(&nsqd, "events", &third);
    let everything: Vec<String> = [first.clone(), second.clone(), third.clone()].concat();

    let mut metrics = Consumer::new(&nsqd, "events", "metrics");
    let mut archive = Consumer::new(&nsqd, "events", "archive");
    assert_eq!(metrics.receive(60, Duration::from_secs(5)), everything);
    assert_eq!(archive.receive(60, Duration::from_secs(5)), everything);

    // The downstream lost everything from `between` on: rewind metrics there (RFC 3339).
    let to = chrono::DateTime::from_timestamp_nanos(between)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let reply = rewind(&nsqd, "events", "metrics", &to.replace('+', "%2B"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["offset"], 20);
    let replayed = metrics.receive(40, Duration::from_secs(5));
    assert_eq!(
        replayed,
        [second.clone(), third.clone()].concat(),
        "exactly from there, in order"
    );
    assert!(metrics.receive(1, Duration::from_millis(500)).is_empty());
    assert!(
        archive.receive(1, Duration::from_millis(500)).is_empty(),
        "other channels untouched"
    );

    // Rewind by Unix nanoseconds and by offset work alike; positions show in /stats.
    assert_eq!(
        rewind(&nsqd, "events", "metrics", &between.to_string()).json()["offset"],
        20
    );
    assert_eq!(metrics.receive(40, Duration::from_secs(5)).len(), 40);
    assert_eq!(
        rewind(&nsqd, "events", "metrics", "55").json()["offset"],
        55
    );
    assert_eq!(
        metrics.receive(10, Duration::from_secs(5)),
        third[15..].to_vec()
    );
    let topic = stats_topic(&nsqd, "events");
    assert_eq!(topic["retained"]["first_offset"], 0);
    assert_eq!(topic["retained"]["end_offset"], 60);
    let position = &topic["channels"][1]["position"];
    assert_eq!(
        (
            position["floor"].as_u64(),
            position["lag_messages"].as_u64()
        ),
        (Some(60), Some(0)),
        "{topic}"
    );

    // A new channel can backfill the retained log from the start.
    let reply = http_post(
        &nsqd.url("/channel/create?topic=events&channel=backfill&start=earliest"),
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        Consumer::new(&nsqd, "events", "backfill").receive(60, Duration::from_secs(5)),
        everything
    );
}

#[test]
fn bad_rewinds_get_clear_errors() {
    let nsqd = Nsqd::start(&["--max-bytes-per-file=4096"]);
    http_post(&nsqd.url("/topic/create?topic=t"), b"");
    http_post(&nsqd.url("/channel/create?topic=t&channel=c"), b"");
    publish(&nsqd, "t", &batch("m", 300));
    let mut consumer = Consumer::new(&nsqd, "t", "c");
    assert_eq!(consumer.receive(300, Duration::from_secs(5)).len(), 300);
    // Without retention, consumed segments are reclaimed (NSQ's behaviour)...
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats_topic(&nsqd, "t")["retained"]["first_offset"] == 0 {
        assert!(
            Instant::now() < deadline,
            "consumed segments were never reclaimed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...so rewinding before them is refused, naming the earliest retained message and time.
    let reply = rewind(&nsqd, "t", "c", "0");
    assert_eq!(reply.status, 400);
    let message = reply.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.starts_with("BEFORE_RETENTION") && message.contains("published 20"),
        "{message}"
    );
    let reply = rewind(&nsqd, "t", "c", "2001-01-01T00:00:00Z");
    assert_eq!(reply.status, 400, "{}", reply.body);

    http_post(
        &nsqd.url("/channel/create?topic=t&channel=e%23ephemeral"),
        b"",
    );
    let reply = rewind(&nsqd, "t", "e%23ephemeral", "earliest");
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("EPHEMERAL"), "{}", reply.body);

    let cases = [
        ("/channel/rewind?topic=t&channel=c", "MISSING_ARG_TO"),
        (
            "/channel/rewind?topic=t&channel=c&to=yesterday",
            "INVALID_ARG_TO",
        ),
        (
            "/channel/rewind?topic=t&channel=nope&to=earliest",
            "CHANNEL_NOT_FOUND",
        ),
        (
            "/channel/rewind?topic=nope&channel=c&to=earliest",
            "TOPIC_NOT_FOUND",
        ),
        ("/channel/rewind?topic=t&channel=c&to=999999", "PAST_END"),
    ];
    for (path, expected) in cases {
        let reply = http_post(&nsqd.url(path), b"");
        assert!(
            (400..500).contains(&reply.status),
            "{path}: {}",
            reply.status
        );
        assert!(reply.body.contains(expected), "{path}: {}", reply.body);
    }
}

#[test]
fn retention_keeps_consumed_segments_for_the_window_only() {
    let nsqd = Nsqd::start(&["--max-bytes-per-file=4096", "--retention-time=3s"]);
    http_post(&nsqd.url("/topic/create?topic=t"), b"");
    http_post(&nsqd.url("/channel/create?topic=t&channel=c"), b"");
    publish(&nsqd, "t", &batch("m", 300));
    assert_eq!(
        Consumer::new(&nsqd, "t", "c")
            .receive(300, Duration::from_secs(5))
            .len(),
        300
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        stats_topic(&nsqd, "t")["retained"]["first_offset"],
        0,
        "kept inside the window"
    );
    wait_no_clients(&nsqd, "t");
    assert_eq!(rewind(&nsqd, "t", "c", "earliest").json()["offset"], 0);
    // Unfinished again after the rewind: retention never deletes what a channel still needs.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(stats_topic(&nsqd, "t")["retained"]["first_offset"], 0);
    assert_eq!(
        Consumer::new(&nsqd, "t", "c")
            .receive(300, Duration::from_secs(5))
            .len(),
        300
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while stats_topic(&nsqd, "t")["retained"]["first_offset"] == 0 {
        assert!(
            Instant::now() < deadline,
            "segments past the window were never deleted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A per-topic override: keep everything consumed from now on for an hour.
    let reply = http_post(&nsqd.url("/topic/retention?topic=t&time=1h"), b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bad = http_post(&nsqd.url("/topic/retention?topic=t&time=soon"), b"");
    assert_eq!(bad.status, 400);
}

#[test]
fn replay_continues_across_a_restart() {
    let mut nsqd = Nsqd::start(&["--retention-time=1h"]);
    http_post(&nsqd.url("/topic/create?topic=t"), b"");
    http_post(&nsqd.url("/channel/create?topic=t&channel=c"), b"");
    let all = batch("m", 100);
    publish(&nsqd, "t", &all);
    assert_eq!(
        Consumer::new(&nsqd, "t", "c").receive(100, Duration::from_secs(5)),
        all
    );
    wait_no_clients(&nsqd, "t");
    assert_eq!(rewind(&nsqd, "t", "c", "earliest").status, 200);
    let mut consumer = Consumer::new(&nsqd, "t", "c");
    let first_half = consumer.receive(50, Duration::from_secs(5));
    assert_eq!(first_half, all[..50].to_vec());
    // Let the FINs land and be persisted before stopping.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats_topic(&nsqd, "t")["channels"][0]["position"]["floor"] != 50 {
        assert!(Instant::now() < deadline, "FINs never reached the cursor");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(consumer);
    assert!(nsqd.terminate().success());
    nsqd.restart();
    assert_eq!(
        Consumer::new(&nsqd, "t", "c").receive(100, Duration::from_secs(5)),
        all[50..].to_vec()
    );
}

/// A new archiver backfills the whole retained topic with `nsq_to_file --start=earliest`,
/// though every other channel consumed it long ago.
#[test]
fn nsq_to_file_start_earliest_backfills_a_new_archive() {
    let nsqd = Nsqd::start(&["--retention-time=1h"]);
    http_post(&nsqd.url("/topic/create?topic=events"), b"");
    http_post(
        &nsqd.url("/channel/create?topic=events&channel=metrics"),
        b"",
    );
    let all = batch("e", 50);
    publish(&nsqd, "events", &all);
    assert_eq!(
        Consumer::new(&nsqd, "events", "metrics").receive(50, Duration::from_secs(5)),
        all
    );
    let out = tempfile::tempdir().expect("dir");
    let out_dir = out.path().to_string_lossy().into_owned();
    let mut archiver = nsq_tests::Tool::spawn(
        "nsq_to_file",
        &[
            &format!("--nsqd-tcp-address={}", nsqd.tcp),
            &format!("--nsqd-http-address={}", nsqd.http),
            "--topic=events",
            "--channel=archive",
            "--start=earliest",
            &format!("--output-dir={out_dir}"),
            "--sync-interval=100ms",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (lines, _) = nsq_tests::archive_lines(out.path());
        if lines.len() >= all.len() {
            let mut sorted = lines.clone();
            sorted.sort();
            assert_eq!(sorted, all, "the archive holds exactly the retained topic");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "archive has {} of {} lines",
            lines.len(),
            all.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(archiver.terminate().success(), "{}", archiver.stderr());
}
