//! End-to-end tests of the `nsq_log` binary on data directories built with the engine.

mod common;

use common::nsq_log;
use nsq_engine::{ChannelStart, Engine, Options};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const SEC: i64 = 1_000_000_000;

/// Builds a data directory:
/// - `events`: m0..m9 (published as m0..m4, then m5..m9 a few ms later), channels
///   - `fast`: took and finished everything (floor 10, lag 0),
///   - `slow`: took m0..m3, finished m0 and m1, requeued m2 for an hour, m3 left in flight
///     (floor 2, next 4, lag 8, one deferred);
/// - `idle`: no messages, channel `c`;
/// - `bin`: a non-UTF-8 body and one with a tab and a newline.
fn build_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(dir.path(), Options::default()).expect("open engine");
    let fast = engine
        .create_channel("events", "fast", ChannelStart::Default)
        .expect("fast");
    let slow = engine
        .create_channel("events", "slow", ChannelStart::Default)
        .expect("slow");
    let events = engine.topic("events").expect("events");
    let first: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    let second: Vec<String> = (5..10).map(|i| format!("m{i}")).collect();
    events.publish(&first, 0).expect("publish");
    std::thread::sleep(Duration::from_millis(5));
    events.publish(&second, 0).expect("publish");

    let mut got = Vec::new();
    fast.take(engine.now(), 1, 60 * SEC, 100, &mut got)
        .expect("take");
    assert_eq!(got.len(), 10);
    for d in &got {
        fast.finish(1, &d.id).expect("finish");
    }

    let mut got = Vec::new();
    slow.take(engine.now(), 1, 60 * SEC, 4, &mut got)
        .expect("take");
    assert_eq!(got.len(), 4);
    slow.finish(1, &got[0].id).expect("finish");
    slow.finish(1, &got[1].id).expect("finish");
    slow.requeue(1, &got[2].id, engine.now(), 3600 * SEC)
        .expect("requeue");

    engine
        .create_channel("idle", "c", ChannelStart::Default)
        .expect("idle");
    let bin = engine.create_topic("bin").expect("bin");
    bin.publish(&[&[0xffu8, 0xfe, 0x00][..], &b"hello\tworld\n"[..]], 0)
        .expect("publish");
    engine.close().expect("close");
    dir
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "nsq_log failed: {:?}\nstderr: {}",
        out.status,
        stderr(&out)
    );
    stdout(&out)
}

/// Exit code 1 and exactly one `nsq_log: ...` line on stderr; returns that line.
fn fails(out: Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout: {}", stdout(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one error line expected, got {err:?}");
    assert!(lines[0].starts_with("nsq_log: "), "{err:?}");
    lines[0].to_string()
}

/// The whitespace-separated cells of the table row whose first cell is `name`.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                files.insert(path, bytes);
            }
        }
    }
    files
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn bodies(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('\t').nth(4).expect("five fields").to_string())
        .collect()
}

fn offsets(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            l.split('\t')
                .next()
                .and_then(|o| o.parse().ok())
                .expect("offset field")
        })
        .collect()
}

fn msgs(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

#[test]
fn stat_table_shows_topics_channels_and_lag() {
    let dir = build_data_dir();
    let out = nsq_log(dir.path(), &["stat"]);
    assert!(
        !stderr(&out).contains("recovered:"),
        "a clean close needs no recovery: {}",
        stderr(&out)
    );
    let table = ok(out);
    let events = row(&table, "events");
    assert_eq!(&events[..4], ["events", "0", "9", "10"], "{table}");
    assert_eq!(events[6], "1", "one segment: {table}");
    assert!(events[7].ends_with('Z'), "oldest time in RFC 3339: {table}");
    let fast = row(&table, "fast");
    assert_eq!(fast, ["fast", "10", "10", "0", "-", "0", "0"], "{table}");
    let slow = row(&table, "slow");
    assert_eq!(&slow[..4], ["slow", "2", "4", "8"], "{table}");
    assert_ne!(
        slow[4], "-",
        "slow has an oldest unfinished message: {table}"
    );
    assert_eq!(&slow[5..], ["0", "1"], "m2 deferred for an hour: {table}");
    let idle = row(&table, "idle");
    assert_eq!(&idle[..4], ["idle", "0", "-", "0"], "{table}");
    assert_eq!(idle.last(), Some(&"-"), "no oldest time: {table}");
    assert_eq!(row(&table, "c"), ["c", "0", "0", "0", "-", "0", "0"]);
    // Channel rows sit indented under their topic.
    let lines: Vec<&str> = table.lines().collect();
    let at = |name: &str| {
        lines
            .iter()
            .position(|l| l.split_whitespace().next() == Some(name))
            .expect("row")
    };
    assert!(at("events") < at("fast") && at("fast") < at("slow"));
    assert!(lines[at("slow")].starts_with("  slow"));
}

#[test]
fn stat_json_has_the_numbers() {
    let dir = build_data_dir();
    let text = ok(nsq_log(dir.path(), &["stat", "--json"]));
    let doc: Value = serde_json::from_str(&text).expect("one JSON document");
    let topics = doc["topics"].as_array().expect("topics");
    let names: Vec<&str> = topics.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["bin", "events", "idle"]);
    let events = &topics[1];
    assert_eq!(events["first_offset"], 0);
    assert_eq!(events["last_offset"], 9);
    assert_eq!(events["end_offset"], 10);
    assert_eq!(events["messages"], 10);
    assert_eq!(events["segments"], 1);
    assert!(events["bytes"].as_u64().expect("bytes") > 10 * 48);
    assert!(events["oldest_timestamp_ns"].as_i64().expect("oldest") > 0);
    let channels = events["channels"].as_array().expect("channels");
    let fast = &channels[0];
    assert_eq!(
        (&fast["name"], &fast["floor"], &fast["next"], &fast["lag"]),
        (
            &Value::from("fast"),
            &Value::from(10),
            &Value::from(10),
            &Value::from(0)
        )
    );
    assert!(fast["age_ns"].is_null());
    let slow = &channels[1];
    assert_eq!(
        (&slow["name"], &slow["floor"], &slow["next"], &slow["lag"]),
        (
            &Value::from("slow"),
            &Value::from(2),
            &Value::from(4),
            &Value::from(8)
        )
    );
    assert_eq!(slow["deferred"], 1);
    assert_eq!(
        slow["in_flight"], 0,
        "offline, in-flight messages are due again"
    );
    // depth: m4..m9 unread plus m3 due again.
    assert_eq!(slow["depth"], 7);
    assert!(slow["age_ns"].as_i64().expect("age") >= 0);
    // The floor's message is m2, published with m0..m4: as old as the topic's oldest.
    assert_eq!(
        slow["oldest_unfinished_timestamp_ns"],
        events["oldest_timestamp_ns"]
    );
    let idle = &topics[2];
    assert!(idle["last_offset"].is_null());
    assert_eq!(idle["messages"], 0);
    assert_eq!(idle["channels"][0]["lag"], 0);

    let only = ok(nsq_log(dir.path(), &["stat", "--json", "--topic", "idle"]));
    let doc: Value = serde_json::from_str(&only).expect("one JSON document");
    assert_eq!(doc["topics"].as_array().map(Vec::len), Some(1));
    assert_eq!(doc["topics"][0]["name"], "idle");
}

#[test]
fn stat_and_dump_write_nothing() {
    let dir = build_data_dir();
    let before = snapshot(dir.path());
    ok(nsq_log(dir.path(), &["stat"]));
    ok(nsq_log(dir.path(), &["stat", "--json"]));
    ok(nsq_log(dir.path(), &["dump", "--topic", "events"]));
    assert!(before == snapshot(dir.path()), "the data directory changed");
}

#[test]
fn dump_prints_records_in_order() {
    let dir = build_data_dir();
    let all = ok(nsq_log(dir.path(), &["dump", "--topic", "events"]));
    assert_eq!(bodies(&all), msgs(0..10));
    assert_eq!(offsets(&all), (0..10).collect::<Vec<_>>());
    for line in all.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 5, "{line}");
        assert_eq!(fields[1].len(), 16, "NSQ id: {line}");
        assert!(fields[2].ends_with('Z'), "RFC 3339 UTC: {line}");
        assert_eq!(fields[3], "-", "not deferred: {line}");
    }

    let from = ok(nsq_log(
        dir.path(),
        &["dump", "--topic", "events", "--from", "7"],
    ));
    assert_eq!(bodies(&from), msgs(7..10));
    assert_eq!(offsets(&from), [7, 8, 9]);
    let head = ok(nsq_log(
        dir.path(),
        &["dump", "--topic", "events", "-n", "3"],
    ));
    assert_eq!(bodies(&head), msgs(0..3));
    let middle = ok(nsq_log(
        dir.path(),
        &["dump", "--topic", "events", "--from", "5", "-n", "2"],
    ));
    assert_eq!(bodies(&middle), msgs(5..7));
    let at_end = ok(nsq_log(
        dir.path(),
        &["dump", "--topic", "events", "--from", "10"],
    ));
    assert_eq!(at_end, "");
    let empty = ok(nsq_log(dir.path(), &["dump", "--topic", "idle"]));
    assert_eq!(empty, "");
    let past = fails(nsq_log(
        dir.path(),
        &["dump", "--topic", "events", "--from", "11"],
    ));
    assert!(past.contains("past the end"), "{past}");
}

#[test]
fn dump_json_lines() {
    let dir = build_data_dir();
    let text = ok(nsq_log(
        dir.path(),
        &["dump", "--topic", "events", "--format", "json"],
    ));
    let records = json_lines(&text);
    assert_eq!(records.len(), 10);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["offset"], i as u64);
        assert_eq!(r["body"], format!("m{i}"));
        assert!(r.get("body_base64").is_none());
        assert_eq!(r["id"].as_str().map(str::len), Some(16));
        assert!(r["deliver_at"].is_null());
        assert!(r["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    let bin = json_lines(&ok(nsq_log(
        dir.path(),
        &["dump", "--topic", "bin", "--format", "json"],
    )));
    assert_eq!(bin.len(), 2);
    assert_eq!(bin[0]["body_base64"], "//4A");
    assert!(bin[0].get("body").is_none());
    assert_eq!(bin[1]["body"], "hello\tworld\n");
    // Text keeps one record per line: tabs and newlines in bodies are escaped.
    let text = ok(nsq_log(dir.path(), &["dump", "--topic", "bin"]));
    assert_eq!(bodies(&text), ["\u{fffd}\u{fffd}\u{0}", "hello\\tworld\\n"]);
}

#[test]
fn dump_since_a_time() {
    let dir = build_data_dir();
    let records = json_lines(&ok(nsq_log(
        dir.path(),
        &["dump", "--topic", "events", "--format", "json"],
    )));
    // m5..m9 were published a few ms after m0..m4.
    let ns = records[5]["timestamp_ns"].as_i64().expect("ns").to_string();
    let rfc = records[5]["timestamp"]
        .as_str()
        .expect("rfc3339")
        .to_string();
    for since in [ns.as_str(), rfc.as_str()] {
        let text = ok(nsq_log(
            dir.path(),
            &["dump", "--topic", "events", "--since", since],
        ));
        assert_eq!(bodies(&text), msgs(5..10), "--since {since}");
    }
    let early = ok(nsq_log(
        dir.path(),
        &[
            "dump",
            "--topic",
            "events",
            "--since",
            "2000-01-01T00:00:00+01:00",
        ],
    ));
    assert_eq!(bodies(&early), msgs(0..10));
    let late = ok(nsq_log(
        dir.path(),
        &[
            "dump",
            "--topic",
            "events",
            "--since",
            "2200-01-01T00:00:00Z",
        ],
    ));
    assert_eq!(late, "");
    let bad = fails(nsq_log(
        dir.path(),
        &["dump", "--topic", "events", "--since", "noon"],
    ));
    assert!(bad.contains("invalid time"), "{bad}");
}

#[test]
fn locked_directory_is_one_clear_line() {
    let dir = build_data_dir();
    let engine = Engine::open(dir.path(), Options::default()).expect("hold the lock");
    for args in [&["stat"][..], &["dump", "--topic", "events"][..]] {
        let line = fails(nsq_log(dir.path(), args));
        assert!(line.contains("locked"), "{line}");
        assert!(line.contains("stop nsqd first"), "{line}");
    }
    drop(engine);
    ok(nsq_log(dir.path(), &["stat"]));
}

#[test]
fn missing_topic_is_one_line() {
    let dir = build_data_dir();
    let line = fails(nsq_log(dir.path(), &["dump", "--topic", "nope"]));
    assert_eq!(line, "nsq_log: topic nope not found");
    let line = fails(nsq_log(dir.path(), &["stat", "--topic", "nope"]));
    assert_eq!(line, "nsq_log: topic nope not found");
}

#[test]
fn refuses_what_is_not_a_data_directory() {
    let empty = tempfile::tempdir().expect("tempdir");
    let line = fails(nsq_log(empty.path(), &["stat"]));
    assert!(line.contains("not an nsq data directory"), "{line}");
    assert!(
        snapshot(empty.path()).is_empty(),
        "nothing is created in a directory that is not a data directory"
    );
    let missing = empty.path().join("missing");
    let line = fails(nsq_log(&missing, &["stat"]));
    assert!(line.contains("does not exist"), "{line}");
    assert!(!missing.exists());
}

#[test]
fn data_path_defaults_to_the_current_directory() {
    let dir = build_data_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_nsq_log"))
        .args(["dump", "--topic", "events", "-n", "1"])
        .current_dir(dir.path())
        .output()
        .expect("run nsq_log");
    assert_eq!(bodies(&ok(out)), ["m0"]);
}

#[test]
fn recovery_events_are_reported_on_stderr() {
    let dir = build_data_dir();
    // An unreadable cursor file the metadata does not name: recovery ignores it and says so.
    let stray = dir.path().join("topics/events/channels/ghost.cursor");
    assert!(stray.parent().is_some_and(Path::is_dir), "layout changed");
    std::fs::write(&stray, b"junk").expect("write stray");
    let out = nsq_log(dir.path(), &["stat"]);
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("recovered: ") && l.contains("ghost.cursor")),
        "{err}"
    );
    assert!(row(&ok(out), "slow").contains(&"8"));
}
