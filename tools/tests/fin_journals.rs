//! `nsq_log verify` and `repair` on the channels' finished-offsets journals (`.fin`,
//! `.fin.next`), written by the engine and then damaged as a disk or a crash damages them:
//! verify's exit status and lines, and after repair a clean verify and the cursor state the
//! engine opens with (a FIN lost to damage is one redelivery, never a loss).

mod common;

use common::{nsq_log, text};
use nsq_engine::fin_journal::{self, JournalEntry, ENTRY_LEN, HEADER_LEN};
use nsq_engine::{ChannelStart, Engine, Options};
use std::path::{Path, PathBuf};

const MESSAGES: u64 = 300;
const SEC: i64 = 1_000_000_000;

fn options() -> Options {
    Options {
        max_bytes_per_file: 8 * 1024,
        index_interval_bytes: 1024,
        ..Options::default()
    }
}

fn channels(data: &Path) -> PathBuf {
    data.join("topics/t/channels")
}

fn journal(data: &Path) -> PathBuf {
    channels(data).join("c.fin")
}

/// Topic `t` with MESSAGES messages and channel `c`. The cursor file was persisted when
/// `persisted` offsets were finished; the journal holds the FINs of `persisted..finished`,
/// then the engine is dropped without closing (a kill -9).
fn build(persisted: u64, finished: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(dir.path(), options()).expect("open");
    engine
        .create_channel("t", "c", ChannelStart::Earliest)
        .expect("channel");
    let topic = engine.topic("t").expect("topic");
    for i in 0..MESSAGES {
        topic.publish(&[format!("m{i}")], 0).expect("publish");
    }
    let channel = engine.channel("t", "c").expect("c");
    let mut taken = Vec::new();
    channel
        .take(engine.now(), 1, 600 * SEC, MESSAGES as usize, &mut taken)
        .expect("take");
    assert_eq!(taken.len() as u64, MESSAGES);
    for d in &taken[..persisted as usize] {
        channel.finish(1, &d.id).expect("finish");
    }
    engine.persist_cursors().expect("persist");
    for d in &taken[persisted as usize..finished as usize] {
        channel.finish(1, &d.id).expect("finish");
    }
    channel.write_finished().expect("journal");
    drop(engine);
    dir
}

/// Runs verify; returns its exit code and its output lines naming `file`.
fn verify(data: &Path, file: &str) -> (i32, Vec<String>, String) {
    let out = nsq_log(data, &["verify"]);
    let all = text(&out);
    println!("{all}");
    let lines = all
        .lines()
        .filter(|l| l.contains(file))
        .map(str::to_string)
        .collect();
    (out.status.code().unwrap_or(-1), lines, all)
}

/// Repairs, then asserts verify is clean (no problems and no notes); returns repair's output.
fn repair_until_clean(data: &Path) -> String {
    let out = nsq_log(data, &["repair"]);
    let said = text(&out);
    println!("{said}");
    assert!(out.status.success(), "repair failed: {said}");
    let after = nsq_log(data, &["verify"]);
    assert_eq!(after.status.code(), Some(0), "{}", text(&after));
    assert!(
        text(&after).contains("no problems found") && !text(&after).contains("note"),
        "{}",
        text(&after)
    );
    said
}

/// The offsets channel `c` delivers when the engine opens the directory.
fn redelivered(data: &Path) -> Vec<u64> {
    let engine = Engine::open(data, options()).expect("engine opens after repair");
    let channel = engine.channel("t", "c").expect("channel");
    let mut out = Vec::new();
    while channel
        .take(engine.now(), 1, 60 * SEC, 1000, &mut out)
        .expect("take")
        > 0
    {}
    let mut offsets: Vec<u64> = out.iter().map(|d| d.offset).collect();
    offsets.sort_unstable();
    offsets
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..to).collect()
}

fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read journal");
    change(&mut bytes);
    std::fs::write(path, &bytes).expect("write journal");
}

#[test]
fn a_crash_left_journal_is_sound_and_replays() {
    let dir = build(100, 250);
    let (code, lines, all) = verify(dir.path(), "c.fin");
    assert_eq!(code, 0, "{all}");
    assert!(
        lines.is_empty() && all.contains("no problems found"),
        "{all}"
    );
    assert_eq!(redelivered(dir.path()), range(250, MESSAGES));
}

#[test]
fn a_flipped_bit_costs_one_fin_and_repair_says_it_is_a_redelivery() {
    let dir = build(100, 250);
    // Entry 10 of the journal: the FIN of offset 110.
    rewrite(&journal(dir.path()), |b| {
        b[HEADER_LEN + 10 * ENTRY_LEN + 6] ^= 0x01
    });
    let (code, lines, all) = verify(dir.path(), "c.fin");
    assert_eq!(code, 1, "{all}");
    let at = (HEADER_LEN + 10 * ENTRY_LEN).to_string();
    assert!(
        lines.len() == 1
            && lines[0].starts_with("journal")
            && lines[0].contains(&at)
            && lines[0].contains("fail their checksum"),
        "{all}"
    );
    let said = repair_until_clean(dir.path());
    assert!(said.contains("redelivered (never lost)"), "{said}");
    let mut expected = vec![110];
    expected.extend(range(250, MESSAGES));
    assert_eq!(redelivered(dir.path()), expected);
}

#[test]
fn a_torn_tail_is_a_note_and_repair_cuts_it() {
    let dir = build(100, 250);
    let path = journal(dir.path());
    let len = std::fs::metadata(&path).expect("journal").len();
    // Cut the last entry (offset 249) in the middle.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len - 5))
        .expect("truncate");
    let (code, lines, all) = verify(dir.path(), "c.fin");
    assert_eq!(code, 0, "a torn tail is what a crash leaves: {all}");
    assert!(
        all.contains("no problems found") && all.contains("1 note(s)"),
        "{all}"
    );
    assert!(
        lines.len() == 1 && lines[0].contains("torn tail of 11 byte(s)"),
        "{all}"
    );
    let said = repair_until_clean(dir.path());
    assert!(said.contains("cut to its last whole entry"), "{said}");
    assert_eq!(
        std::fs::metadata(&path).expect("journal").len(),
        len - ENTRY_LEN as u64
    );
    assert_eq!(redelivered(dir.path()), range(249, MESSAGES));
}

#[test]
fn a_stale_next_journal_is_a_note_and_repair_removes_it() {
    let dir = build(100, 250);
    // A compaction cut short before its cursor file was replaced.
    let mut stale = fin_journal::encode_header(0x1234_5678_0000_0040).to_vec();
    fin_journal::encode_entries(&[JournalEntry::Finished(260)], &mut stale);
    let next = channels(dir.path()).join("c.fin.next");
    std::fs::write(&next, &stale).expect("write");
    let (code, lines, all) = verify(dir.path(), "c.fin.next");
    assert_eq!(code, 0, "{all}");
    assert!(
        lines.len() == 1 && lines[0].contains("compaction interrupted before the cursor"),
        "{all}"
    );
    repair_until_clean(dir.path());
    assert!(!next.exists());
    assert_eq!(redelivered(dir.path()), range(250, MESSAGES));
}

#[test]
fn a_journal_without_its_channel_is_a_note_and_repair_removes_it() {
    let dir = build(100, 250);
    let orphan = channels(dir.path()).join("gone.fin");
    std::fs::copy(journal(dir.path()), &orphan).expect("copy");
    let (code, lines, all) = verify(dir.path(), "gone.fin");
    assert_eq!(code, 0, "{all}");
    assert!(
        lines.len() == 1 && lines[0].contains("channel gone, which has no cursor file"),
        "{all}"
    );
    let said = repair_until_clean(dir.path());
    assert!(
        said.contains("gone.fin") && said.contains("removed"),
        "{said}"
    );
    assert!(!orphan.exists());
    let engine = Engine::open(dir.path(), options()).expect("open");
    assert!(engine.channel("t", "gone").is_none());
    drop(engine);
    assert_eq!(redelivered(dir.path()), range(250, MESSAGES));
}

#[test]
fn fins_past_the_log_end_are_a_problem_and_repair_drops_them() {
    let dir = build(100, 250);
    rewrite(&journal(dir.path()), |b| {
        fin_journal::encode_entries(&[JournalEntry::Finished(MESSAGES + 3)], b)
    });
    let (code, lines, all) = verify(dir.path(), "c.fin");
    assert_eq!(code, 1, "{all}");
    assert!(
        lines.len() == 1
            && lines[0].contains(&(MESSAGES + 3).to_string())
            && lines[0].contains(&format!("past the log's end ({MESSAGES})")),
        "{all}"
    );
    repair_until_clean(dir.path());
    let parsed = fin_journal::parse(&std::fs::read(journal(dir.path())).expect("read"))
        .expect("journal header");
    assert_eq!(parsed.entries.len(), 150);
    assert_eq!(redelivered(dir.path()), range(250, MESSAGES));
}

/// A cursor repair must rewrite: the journal it had then extends nothing, so repair applies it
/// to the rewritten cursor first (else 50..120 would all come back).
#[test]
fn a_clamped_cursor_keeps_the_fins_of_its_journal() {
    let dir = build(50, 120);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path().join("topics/t"))
        .expect("topic")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let last = segments.last().expect("segments").clone();
    let end: u64 = last
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("offset name");
    assert!(end > 120, "the last segment starts at {end}");
    std::fs::remove_file(&last).expect("remove");
    std::fs::remove_file(last.with_extension("idx")).expect("remove");
    let (code, _, all) = verify(dir.path(), "c.cursor");
    assert_eq!(code, 1, "{all}");
    let said = repair_until_clean(dir.path());
    assert!(said.contains("applied the 70 journal entr(ies)"), "{said}");
    assert_eq!(redelivered(dir.path()), range(120, end));
}
