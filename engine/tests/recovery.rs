//! Recovery on open: torn tails are cut back to the last good record, damage inside sealed
//! segments is reported (typed, with file and position) and skipped by readers, and a data
//! directory has one opener.

mod common;

use common::*;
use nsq_engine::fs::{FileSystem, OpenMode, SimFs};
use nsq_engine::record::record_len;
use nsq_engine::{Engine, Error, Options, RecoveryEvent};
use std::path::{Path, PathBuf};

fn overwrite(fs: &SimFs, path: &Path, data: &[u8]) {
    let file = fs.open(path, OpenMode::CreateTruncate).expect("open");
    file.write_all_at(data, 0).expect("write");
}

#[test]
fn torn_tail_is_cut_back_to_the_last_complete_record_at_every_byte() {
    let (fs, clock) = sim();
    let body = "x".repeat(20);
    {
        let engine = open(&fs, &clock);
        let topic = engine.create_topic("t").expect("topic");
        for _ in 0..80 {
            topic.publish(&[body.as_str()], 0).expect("publish");
        }
        engine.close().expect("close");
    }
    let segments = segment_files(&fs, "t");
    assert!(segments.len() > 1, "the workload should roll segments");
    let last = segments.last().expect("a segment").clone();
    let index = last.with_extension("idx");
    let full = fs.file_data(&last).expect("segment data");
    let full_index = fs.file_data(&index).expect("index data");
    let rec = record_len(body.len());
    let records_in_last = (full.len() - 32) / rec;
    let total_before_last = 80 - records_in_last;
    for cut in (full.len() - 3 * rec)..full.len() {
        overwrite(&fs, &last, &full[..cut]);
        overwrite(&fs, &index, &full_index);
        let engine = open(&fs, &clock);
        let complete = (cut - 32) / rec;
        let messages = read_log(&engine, "t").expect("log reads cleanly");
        assert_eq!(messages.len(), total_before_last + complete, "cut at {cut}");
        assert!(messages
            .iter()
            .enumerate()
            .all(|(i, m)| m.offset == i as u64 && m.body == body.as_bytes()));
        let torn = engine
            .recovery_events()
            .iter()
            .any(|e| matches!(e, RecoveryEvent::TruncatedTail { .. }));
        // A partial record is torn, except when the bytes that made it are all zeros (the
        // top bytes of its length field): those are indistinguishable from prepared space
        // (FORMAT.md) and simply overwritten by the next append.
        let partial = &full[cut - (cut - 32) % rec..cut];
        assert_eq!(
            torn,
            partial.iter().any(|&b| b != 0),
            "cut at {cut}: {:?}",
            engine.recovery_events()
        );
        // The log continues cleanly after the cut.
        let appended = engine
            .topic("t")
            .expect("topic")
            .publish(&["next"], 0)
            .expect("publish");
        assert_eq!(appended.first_offset, messages.len() as u64);
        assert_eq!(
            read_log(&engine, "t").expect("reads").len(),
            messages.len() + 1
        );
    }
}

/// A bad record in a sealed segment (found only when read: opening does not scan sealed
/// segments) costs that record: the reader resynchronises on the next good one and logs the
/// skip; `nsq_log repair` is what removes the damage for good.
#[test]
fn flipped_byte_in_a_sealed_segment_costs_only_that_record() {
    let (fs, clock) = sim();
    let body = "y".repeat(100);
    {
        let engine = open(&fs, &clock);
        let topic = engine.create_topic("t").expect("topic");
        for _ in 0..100 {
            topic.publish(&[body.as_str()], 0).expect("publish");
        }
        engine.close().expect("close");
    }
    let segments = segment_files(&fs, "t");
    assert!(segments.len() >= 3);
    let victim = &segments[1];
    let first: u64 = victim
        .file_stem()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("segment name");
    let mut data = fs.file_data(victim).expect("data");
    let rec = record_len(body.len()) as u64;
    let damaged_record = 3u64;
    let position = 32 + damaged_record * rec;
    data[(position + 60) as usize] ^= 0x04;
    overwrite(&fs, victim, &data);
    let engine = open(&fs, &clock);
    let offsets: Vec<u64> = read_log(&engine, "t")
        .expect("reading skips the damaged record")
        .iter()
        .map(|m| m.offset)
        .collect();
    let expected: Vec<u64> = (0..100).filter(|&o| o != first + damaged_record).collect();
    assert_eq!(offsets, expected);
    // Reported through the API (typed, with file and position), once.
    let damage = engine.topic("t").expect("topic").storage().skipped_damage();
    match damage.as_slice() {
        [RecoveryEvent::SkippedDamage {
            path,
            position: at,
            reason,
            from,
            to,
        }] => {
            assert_eq!(path, victim);
            assert_eq!(*at, position);
            assert!(reason.contains("checksum"), "{reason}");
            assert_eq!(
                (*from, *to),
                (first + damaged_record, first + damaged_record + 1)
            );
        }
        other => panic!("expected one SkippedDamage event, got {other:?}"),
    }
    let message = Error::corrupt(victim, position, "checksum mismatch").to_string();
    assert!(message.contains("nsq_log repair"), "{message}");
}

#[test]
fn damaged_index_is_rebuilt_from_the_records() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        let topic = engine.create_topic("t").expect("topic");
        for i in 0..200 {
            topic
                .publish(&[format!("message {i}")], 0)
                .expect("publish");
        }
        engine.close().expect("close");
    }
    let first = segment_files(&fs, "t")[0].with_extension("idx");
    let index = fs.file_data(&first).expect("index");
    assert!(index.len() >= 64, "index has entries");
    overwrite(&fs, &first, &index[..index.len() - 5]);
    let engine = open(&fs, &clock);
    assert!(engine
        .recovery_events()
        .iter()
        .any(|e| matches!(e, RecoveryEvent::IndexRepaired { .. })));
    assert_eq!(
        fs.file_data(&first).expect("index"),
        index,
        "rebuilt index equals the original"
    );
    let topic = engine.topic("t").expect("topic");
    for offset in [0u64, 7, 99, 150, 199] {
        let m = topic
            .storage()
            .read_one(offset)
            .expect("read")
            .expect("present");
        assert_eq!(m.body, format!("message {offset}").as_bytes());
    }
}

#[test]
fn a_second_opener_of_a_data_directory_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(dir.path(), Options::default()).expect("first opener");
    match Engine::open(dir.path(), Options::default()) {
        Err(e @ Error::Locked { .. }) => {
            assert!(
                e.to_string().contains(&dir.path().display().to_string()),
                "{e}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(engine);
    Engine::open(dir.path(), Options::default()).expect("opens again once released");
}

#[test]
fn cursor_past_the_log_end_is_clamped() {
    let (fs, clock) = sim();
    let mut options = sim_options(&fs, &clock);
    options.sync = nsq_engine::SyncPolicy {
        every: 0,
        timeout: std::time::Duration::from_secs(3600),
    };
    {
        let engine = Engine::open("/data", options.clone()).expect("open");
        engine
            .create_channel("t", "c", nsq_engine::ChannelStart::Default)
            .expect("channel");
        engine
            .topic("t")
            .expect("topic")
            .publish(&["a", "b", "c"], 0)
            .expect("publish");
        let got = take_all(&engine, "t", "c");
        finish_all(&engine, "t", "c", &got);
        engine.persist_cursors().expect("persist");
        // Power is lost: the records were never fsynced, the cursor file was.
    }
    fs.power_cut();
    let engine = Engine::open("/data", options).expect("reopen");
    assert!(engine
        .recovery_events()
        .iter()
        .any(|e| matches!(e, RecoveryEvent::CursorClamped { from: 3, to: 0, .. })));
    engine
        .topic("t")
        .expect("topic")
        .publish(&["d"], 0)
        .expect("publish");
    assert_eq!(bodies(&take_all(&engine, "t", "c")), vec!["d"]);
}

#[test]
fn a_segment_at_the_last_possible_offset_does_not_overflow() {
    // Found by fuzzing the scanner: a record at offset u64::MAX made recovery count past it.
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        engine.create_topic("t").expect("topic");
        engine.close().expect("close");
    }
    for path in segment_files(&fs, "t") {
        fs.remove_file(&path).expect("remove segment");
        let _ = fs.remove_file(&path.with_extension("idx"));
    }
    let dir = PathBuf::from("/data/topics/t");
    let mut bytes = nsq_engine::segment::encode_header(u64::MAX);
    nsq_engine::record::encode(
        &mut bytes,
        u64::MAX,
        &nsq_engine::MessageId::for_offset(1, u64::MAX),
        1,
        0,
        b"last",
    );
    overwrite(&fs, &nsq_engine::segment::log_path(&dir, u64::MAX), &bytes);
    // Opening may refuse or cut the record back; it must not panic.
    if let Ok(engine) = Engine::open("/data", sim_options(&fs, &clock)) {
        let _ = read_log(&engine, "t");
    }
}

/// Builds topic `t` with channels `done` (finished the first 6 of 10 messages) and `idle`
/// (finished nothing), closed cleanly.
fn two_channels(fs: &SimFs, clock: &std::sync::Arc<nsq_engine::ManualClock>) {
    let engine = open(fs, clock);
    for channel in ["done", "idle"] {
        engine
            .create_channel("t", channel, nsq_engine::ChannelStart::Default)
            .expect("channel");
    }
    let topic = engine.topic("t").expect("topic");
    for i in 0..10 {
        topic.publish(&[format!("m{i}")], 0).expect("publish");
    }
    let c = engine.channel("t", "done").expect("channel");
    let mut got = Vec::new();
    c.take(engine.now(), 1, 60 * SEC, 6, &mut got)
        .expect("take");
    finish_all(&engine, "t", "done", &got);
    engine.close().expect("close");
}

/// A missing `meta` costs no channel: every cursor file is taken back in with its position,
/// and verify says what is wrong until repair (or the next open) writes `meta` again.
#[test]
fn a_missing_meta_keeps_every_channel_and_its_position() {
    let (fs, clock) = sim();
    two_channels(&fs, &clock);
    fs.remove_file(Path::new("/data/meta"))
        .expect("remove meta");
    let report =
        nsq_engine::check::verify(&fs, Path::new("/data"), None, &mut |_| {}).expect("verify runs");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == nsq_engine::check::FindingKind::Meta && f.detail.contains("missing")),
        "{:?}",
        report.findings
    );
    let engine = open(&fs, &clock);
    let adopted: Vec<&str> = engine
        .recovery_events()
        .iter()
        .filter_map(|e| match e {
            RecoveryEvent::AdoptedChannel { channel, .. } => Some(channel.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(adopted, vec!["done", "idle"]);
    assert_eq!(
        bodies(&take_all(&engine, "t", "done")),
        vec!["m6", "m7", "m8", "m9"]
    );
    assert_eq!(take_all(&engine, "t", "idle").len(), 10);
    engine.close().expect("close");
    let report =
        nsq_engine::check::verify(&fs, Path::new("/data"), None, &mut |_| {}).expect("verify runs");
    assert!(report.is_sound(), "{:?}", report.findings);
}

/// A cursor file `meta` does not name (stale `meta`) is reported by verify, written into
/// `meta` by repair, and taken back in by the engine; never deleted.
#[test]
fn a_cursor_file_meta_does_not_name_is_repaired_not_deleted() {
    let (fs, clock) = sim();
    two_channels(&fs, &clock);
    let meta = fs.file_data(Path::new("/data/meta")).expect("meta");
    {
        let engine = open(&fs, &clock);
        engine
            .create_channel("t", "late", nsq_engine::ChannelStart::Earliest)
            .expect("channel");
        engine.close().expect("close");
    }
    overwrite(&fs, Path::new("/data/meta"), &meta);
    let report =
        nsq_engine::check::verify(&fs, Path::new("/data"), None, &mut |_| {}).expect("verify runs");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == nsq_engine::check::FindingKind::Meta && f.detail.contains("late")),
        "{:?}",
        report.findings
    );
    let repaired = nsq_engine::check::repair(&fs, Path::new("/data"), None, false, &mut |_| {})
        .expect("repair");
    assert!(
        repaired
            .actions
            .iter()
            .any(|a| a.what.contains("channel t/late")),
        "{:?}",
        repaired.actions
    );
    let report =
        nsq_engine::check::verify(&fs, Path::new("/data"), None, &mut |_| {}).expect("verify runs");
    assert!(report.is_sound(), "{:?}", report.findings);
    let engine = open(&fs, &clock);
    assert_eq!(take_all(&engine, "t", "late").len(), 10);
}

/// A bad record in the active (newest) segment before its last index entry is not scanned on
/// open; a reader meeting it skips exactly that record, as in a sealed segment, reports it
/// once, and keeps delivering (it used to fail every read of the channel there).
#[test]
fn flipped_byte_in_the_active_segment_costs_only_that_record() {
    let (fs, clock) = sim();
    let body = "a".repeat(60);
    let mut options = sim_options(&fs, &clock);
    options.max_bytes_per_file = 1 << 20;
    {
        let engine = Engine::open("/data", options.clone()).expect("open");
        engine
            .create_channel("t", "c", nsq_engine::ChannelStart::Default)
            .expect("channel");
        let topic = engine.topic("t").expect("topic");
        for _ in 0..100 {
            topic.publish(&[body.as_str()], 0).expect("publish");
        }
        engine.close().expect("close");
    }
    let segments = segment_files(&fs, "t");
    assert_eq!(segments.len(), 1, "one active segment");
    let rec = record_len(body.len()) as u64;
    let victim = 10u64;
    let position = 32 + victim * rec;
    let mut data = fs.file_data(&segments[0]).expect("data");
    data[(position + 50) as usize] ^= 0x10;
    overwrite(&fs, &segments[0], &data);
    let engine = Engine::open("/data", options).expect("reopen");
    assert!(
        !engine
            .recovery_events()
            .iter()
            .any(|e| matches!(e, RecoveryEvent::TruncatedTail { .. })),
        "{:?}",
        engine.recovery_events()
    );
    let got = take_all(&engine, "t", "c");
    let offsets: Vec<u64> = got.iter().map(|d| d.offset).collect();
    let expected: Vec<u64> = (0..100).filter(|&o| o != victim).collect();
    assert_eq!(offsets, expected);
    let damage = engine.topic("t").expect("topic").storage().skipped_damage();
    assert!(
        matches!(
            damage.as_slice(),
            [RecoveryEvent::SkippedDamage { from: 10, to: 11, position: p, .. }] if *p == position
        ),
        "{damage:?}"
    );
    // Publishing and delivering go on.
    engine
        .topic("t")
        .expect("topic")
        .publish(&["after"], 0)
        .expect("publish");
    assert_eq!(bodies(&take_all(&engine, "t", "c")), vec!["after"]);
}

/// Damage at an offset a channel already finished costs nothing else: the requeued and
/// in-flight entries the channel's cursor holds at later offsets are all delivered again, and
/// the channel's stats count them (issue 15, item 2: they vanished and the channel looked
/// drained). Both after a clean stop (cursor file) and after a crash (cursor file plus FIN
/// journal replay).
#[test]
fn damage_at_a_finished_offset_keeps_later_cursor_entries() {
    for crash in [false, true] {
        damage_at_a_finished_offset_keeps_later_cursor_entries_after(crash);
    }
}

fn damage_at_a_finished_offset_keeps_later_cursor_entries_after(crash: bool) {
    let (fs, clock) = sim();
    let body = "q".repeat(100);
    {
        let engine = open(&fs, &clock);
        engine
            .create_channel("t", "c", nsq_engine::ChannelStart::Default)
            .expect("channel");
        let topic = engine.topic("t").expect("topic");
        for _ in 0..100 {
            topic.publish(&[body.as_str()], 0).expect("publish");
        }
        let c = engine.channel("t", "c").expect("channel");
        let got = take_all(&engine, "t", "c");
        for d in &got {
            match d.offset {
                5 | 47 => {} // stay in flight
                40..=45 => c.requeue(1, &d.id, engine.now(), 0).expect("requeue"),
                _ => c.finish(1, &d.id).expect("finish"),
            }
        }
        if crash {
            c.write_finished().expect("journal");
            drop(engine); // kill -9: the cursor file is older than the FINs
        } else {
            engine.close().expect("close");
        }
    }
    // Damage a record the channel finished, between its floor (5) and the requeued entries,
    // in the same sealed segment as those (so re-reading them passes over the damage).
    let segments = segment_files(&fs, "t");
    let rec = record_len(body.len()) as u64;
    let per_segment = (4096 - 32) / rec + 1;
    let (seg, first) = segments
        .iter()
        .map(|p| {
            let first: u64 = p
                .file_stem()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .expect("name");
            (p.clone(), first)
        })
        .rfind(|(_, first)| *first <= 30 && 47 < first + per_segment)
        .expect("segment holding 30..=47");
    assert_ne!(Some(&seg), segments.last(), "the damaged segment is sealed");
    let mut data = fs.file_data(&seg).expect("data");
    data[(32 + (30 - first) * rec + 60) as usize] ^= 0x02;
    overwrite(&fs, &seg, &data);
    let engine = open(&fs, &clock);
    let c = engine.channel("t", "c").expect("channel");
    let stats = c.stats(engine.now());
    assert_eq!(
        (stats.depth, stats.floor, stats.next),
        (8, 5, 100),
        "crash {crash}: {stats:?}"
    );
    let mut offsets: Vec<u64> = take_all(&engine, "t", "c")
        .iter()
        .map(|d| d.offset)
        .collect();
    offsets.sort_unstable();
    let mut expected = vec![5u64];
    expected.extend(40..=45);
    expected.push(47);
    assert_eq!(offsets, expected, "crash {crash}");
    assert_eq!(c.stats(engine.now()).in_flight, 8);
}

/// Damage longer than the window a reader resynchronises with (it reads a sealed segment a
/// window at a time, never the rest of the segment at once): the reader still lands on the
/// first good record after it, and skips exactly the damaged records.
#[test]
fn damage_longer_than_the_resync_window_costs_only_the_damaged_records() {
    let (fs, clock) = sim();
    let body = "w".repeat(1000);
    let mut options = sim_options(&fs, &clock);
    options.max_bytes_per_file = 4 << 20;
    options.max_msg_size = 64 * 1024;
    let rec = record_len(body.len()) as u64;
    let total = (options.max_bytes_per_file / rec + 200) as usize;
    {
        let engine = Engine::open("/data", options.clone()).expect("open");
        let topic = engine.create_topic("t").expect("topic");
        for chunk in vec![body.as_str(); total].chunks(100) {
            topic.publish(chunk, 0).expect("publish");
        }
        engine.close().expect("close");
    }
    let segments = segment_files(&fs, "t");
    assert_eq!(segments.len(), 2, "one sealed segment and the active one");
    // Zero records 100..1200: about 1.1 MiB, more than one resync window (1 MiB here).
    let (from, to) = (100u64, 1200u64);
    let mut data = fs.file_data(&segments[0]).expect("data");
    let start = (32 + from * rec) as usize;
    let end = (32 + to * rec) as usize;
    assert!(end - start > 1 << 20);
    data[start..end].fill(0);
    overwrite(&fs, &segments[0], &data);
    let engine = Engine::open("/data", options).expect("reopen");
    let offsets: Vec<u64> = read_log(&engine, "t")
        .expect("reading skips the damage")
        .iter()
        .map(|m| m.offset)
        .collect();
    let expected: Vec<u64> = (0..total as u64)
        .filter(|o| !(from..to).contains(o))
        .collect();
    assert_eq!(offsets, expected);
    let damage = engine.topic("t").expect("topic").storage().skipped_damage();
    assert!(
        matches!(
            damage.as_slice(),
            [RecoveryEvent::SkippedDamage { from: f, to: t, position: p, .. }]
                if (*f, *t, *p) == (from, to, start as u64)
        ),
        "{damage:?}"
    );
}
