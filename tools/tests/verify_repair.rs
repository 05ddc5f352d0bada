//! `nsq_log verify` and `nsq_log repair` on data directories damaged in each way a disk or a
//! crash can damage them: every intact record survives repair, and only damaged ones are lost.

mod common;

use common::{nsq_log, text};
use nsq_engine::{ChannelStart, Engine, Options};
use serde_json::Value;
use std::path::{Path, PathBuf};

const MESSAGES: usize = 300;
const SEC: i64 = 1_000_000_000;

fn options() -> Options {
    Options {
        max_bytes_per_file: 8 * 1024,
        index_interval_bytes: 1024,
        ..Options::default()
    }
}

fn body(i: usize) -> String {
    format!("message-{i:04}-{}", "x".repeat(i % 50))
}

/// A data directory with topic `t` (MESSAGES messages over several segments) and channel `c`.
fn build() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(dir.path(), options()).expect("open");
    engine
        .create_channel("t", "c", ChannelStart::Default)
        .expect("channel");
    let topic = engine.topic("t").expect("topic");
    for i in 0..MESSAGES {
        topic.publish(&[body(i)], 0).expect("publish");
    }
    engine.close().expect("close");
    dir
}

fn segments(data: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(data.join("topics/t"))
        .expect("topic dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    out
}

fn verify_json(data: &Path) -> (i32, Value) {
    let out = nsq_log(data, &["verify", "--json"]);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify --json output is not JSON ({e}): {}", text(&out)));
    (out.status.code().unwrap_or(-1), json)
}

fn repair(data: &Path) -> String {
    let out = nsq_log(data, &["repair"]);
    assert!(out.status.success(), "repair failed: {}", text(&out));
    text(&out)
}

/// Everything channel `c` delivers after opening the directory with the engine.
fn delivered(data: &Path) -> Vec<String> {
    let engine = Engine::open(data, options()).expect("engine opens after repair");
    let channel = engine.channel("t", "c").expect("channel");
    let mut got = Vec::new();
    let mut out = Vec::new();
    loop {
        out.clear();
        channel
            .take(engine.now(), 1, 60 * SEC, 100, &mut out)
            .expect("take");
        if out.is_empty() {
            break;
        }
        for d in &out {
            got.push(String::from_utf8_lossy(&d.body).into_owned());
            channel.finish(1, &d.id).expect("finish");
        }
    }
    got
}

fn all_but(lost: &[usize]) -> Vec<String> {
    (0..MESSAGES)
        .filter(|i| !lost.contains(i))
        .map(body)
        .collect()
}

/// Asserts verify fails naming `kind`, repair fixes it, verify then passes, and returns what
/// the channel delivers afterwards.
fn break_and_repair(data: &Path, kind: &str) -> Vec<String> {
    let (code, report) = verify_json(data);
    assert_eq!(code, 1, "verify must fail: {report}");
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert!(kinds.contains(&kind), "expected a {kind} finding: {report}");
    let summary = repair(data);
    let (code, after) = verify_json(data);
    assert_eq!(
        code, 0,
        "verify after repair: {after}\nrepair said: {summary}"
    );
    delivered(data)
}

#[test]
fn a_sound_directory_verifies_and_repair_does_nothing() {
    let dir = build();
    let out = nsq_log(dir.path(), &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no problems found"), "{}", text(&out));
    assert!(repair(dir.path()).contains("nothing to repair"));
    assert_eq!(delivered(dir.path()), all_but(&[]));
}

#[test]
fn flipped_byte_in_a_sealed_segment_costs_that_record_only() {
    let dir = build();
    let victim = &segments(dir.path())[1];
    let mut bytes = std::fs::read(victim).expect("read");
    let at = 32 + 48 + 10; // inside the body of the segment's first record
    bytes[at] ^= 0x01;
    std::fs::write(victim, &bytes).expect("write");

    // The human report names the file, the byte and the offset.
    let out = nsq_log(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out);
    let name = victim.file_name().and_then(|n| n.to_str()).expect("name");
    let first: usize = name.trim_end_matches(".log").parse().expect("offset name");
    assert!(
        report.contains(name) && report.contains(" 32 ") && report.contains("checksum"),
        "{report}"
    );
    assert!(report.contains("nsq_log repair"), "{report}");

    let got = break_and_repair(dir.path(), "bad_record");
    assert_eq!(got, all_but(&[first]));
    let quarantine = victim.with_extension("log.quarantine");
    assert!(quarantine.exists(), "unreadable bytes are kept");
}

#[test]
fn zero_filled_block_loses_only_the_records_it_covers() {
    let dir = build();
    let victim = &segments(dir.path())[2];
    let mut bytes = std::fs::read(victim).expect("read");
    for b in &mut bytes[500..900] {
        *b = 0;
    }
    std::fs::write(victim, &bytes).expect("write");
    let got = break_and_repair(dir.path(), "bad_record");
    let lost = MESSAGES - got.len();
    assert!(
        (1..=7).contains(&lost),
        "lost {lost} records to a 400-byte hole"
    );
    // Whatever survived is intact and in order.
    let expected = all_but(&[]);
    assert!(got.iter().all(|m| expected.contains(m)));
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn torn_tail_is_cut_back_to_the_last_good_record() {
    let dir = build();
    let segs = segments(dir.path());
    let last = segs.last().expect("segments");
    let len = std::fs::metadata(last).expect("meta").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open");
    file.set_len(len - 5).expect("truncate");
    let got = break_and_repair(dir.path(), "torn_tail");
    assert_eq!(got, all_but(&[MESSAGES - 1]));
}

#[test]
fn truncated_index_is_rebuilt() {
    let dir = build();
    let index = segments(dir.path())[0].with_extension("idx");
    let len = std::fs::metadata(&index).expect("meta").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .expect("open");
    file.set_len(len - 7).expect("truncate");
    assert_eq!(break_and_repair(dir.path(), "index"), all_but(&[]));
}

#[test]
fn missing_segment_becomes_holes_and_the_rest_is_served() {
    let dir = build();
    let segs = segments(dir.path());
    let victim = &segs[1];
    let first: usize = victim
        .file_stem()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("offset name");
    let next: usize = segs[2]
        .file_stem()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("offset name");
    std::fs::remove_file(victim).expect("remove");
    std::fs::remove_file(victim.with_extension("idx")).expect("remove index");
    let got = break_and_repair(dir.path(), "missing_offsets");
    let lost: Vec<usize> = (first..next).collect();
    assert_eq!(got, all_but(&lost));
}

#[test]
fn cursor_past_the_log_is_clamped() {
    let dir = build();
    // Cut the log back, as an unsynced tail lost in a power cut would, after the cursor moved.
    {
        let engine = Engine::open(dir.path(), options()).expect("open");
        let channel = engine.channel("t", "c").expect("c");
        let mut out = Vec::new();
        channel
            .take(engine.now(), 1, 60 * SEC, 1000, &mut out)
            .expect("take");
        for d in &out {
            channel.finish(1, &d.id).expect("finish");
        }
        engine.close().expect("close");
    }
    let segs = segments(dir.path());
    std::fs::remove_file(segs.last().expect("last")).expect("remove");
    std::fs::remove_file(segs.last().expect("last").with_extension("idx")).expect("remove");
    break_and_repair(dir.path(), "cursor");
}

#[test]
fn dry_run_changes_nothing_and_a_live_engine_locks_the_tools_out() {
    let dir = build();
    let victim = &segments(dir.path())[1];
    let mut bytes = std::fs::read(victim).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(victim, &bytes).expect("write");
    let out = nsq_log(dir.path(), &["repair", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("WOULD DO"), "{}", text(&out));
    assert_eq!(std::fs::read(victim).expect("read"), bytes);

    let engine = Engine::open(dir.path(), options()).expect("open");
    for command in ["verify", "repair"] {
        let out = nsq_log(dir.path(), &[command]);
        assert!(!out.status.success());
        assert!(text(&out).contains("locked"), "{}", text(&out));
    }
    drop(engine);
    let missing = nsq_log(&dir.path().join("nope"), &["verify"]);
    assert!(!missing.status.success());
    assert_eq!(String::from_utf8_lossy(&missing.stderr).lines().count(), 1);
}

/// Before any repair, the engine itself serves every sound record around damage in sealed
/// segments (skipping what it cannot read, with a log line), never garbage and never stalling.
#[test]
fn engine_serves_what_is_sound_around_unrepaired_damage() {
    let dir = build();
    let segs = segments(dir.path());
    let mut bytes = std::fs::read(&segs[1]).expect("read");
    bytes[32 + 48 + 3] ^= 0x10;
    std::fs::write(&segs[1], &bytes).expect("write");
    let first = |p: &Path| -> usize {
        p.file_stem()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("offset name")
    };
    let flipped = first(&segs[1]);
    std::fs::remove_file(&segs[2]).expect("remove");
    let mut lost: Vec<usize> = (first(&segs[2])..first(&segs[3])).collect();
    lost.push(flipped);
    assert_eq!(delivered(dir.path()), all_but(&lost));
}
