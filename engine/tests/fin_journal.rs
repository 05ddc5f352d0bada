//! The finished-offsets journal: a process crash (the engine dropped without closing)
//! redelivers only what was not finished, whatever the cursor file's age; damage in the
//! journal costs the damaged entries; a power cut never turns the journal into loss.

mod common;

use common::*;
use nsq_engine::fin_journal::{ENTRY_LEN, HEADER_LEN};
use nsq_engine::fs::{FileSystem, OpenMode};
use nsq_engine::{ChannelStart, Delivery, Engine, RecoveryEvent};
use std::collections::BTreeSet;
use std::path::Path;

const JOURNAL: &str = "/data/topics/t/channels/c.fin";

fn publish(engine: &Engine, n: usize) {
    let topic = engine.create_topic("t").expect("topic");
    for i in 0..n {
        topic.publish(&[format!("m{i}")], 0).expect("publish");
    }
}

/// Takes `n` messages as client 1.
fn take(engine: &Engine, n: usize) -> Vec<Delivery> {
    let c = engine.channel("t", "c").expect("channel");
    let mut out = Vec::new();
    c.take(engine.now(), 1, 60 * SEC, n, &mut out)
        .expect("take");
    out
}

fn finish(engine: &Engine, deliveries: &[Delivery]) {
    let c = engine.channel("t", "c").expect("channel");
    for d in deliveries {
        c.finish(1, &d.id).expect("finish");
    }
    c.write_finished().expect("journal write");
}

/// Publishes `n` messages, creates channel `c` from the earliest, and finishes (and journals)
/// all of them.
fn finish_all(engine: &Engine, n: usize) {
    publish(engine, n);
    engine
        .create_channel("t", "c", ChannelStart::Earliest)
        .expect("channel");
    let all = take(engine, n);
    finish(engine, &all);
}

#[test]
fn a_crash_redelivers_only_unfinished_messages() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        publish(&engine, 100);
        engine
            .create_channel("t", "c", ChannelStart::Earliest)
            .expect("channel");
        // The cursor file on disk says nothing was read; everything below comes from the journal.
        let first = take(&engine, 60);
        let (done, held): (Vec<_>, Vec<_>) = first.into_iter().partition(|d| d.offset % 3 != 0);
        finish(&engine, &done);
        // A persist in the middle (compaction), then more FINs into the new journal.
        engine.persist_cursors().expect("persist");
        let more = take(&engine, 20);
        finish(&engine, &more[..10]);
        assert!(held.iter().all(|d| d.offset < 60));
        drop(engine); // kill -9
    }
    let engine = open(&fs, &clock);
    let again: Vec<u64> = take_all(&engine, "t", "c")
        .iter()
        .map(|d| d.offset)
        .collect();
    let mut expected: Vec<u64> = (0..60).filter(|o| o % 3 == 0).collect();
    expected.extend(70..100);
    let mut got = again.clone();
    got.sort_unstable();
    assert_eq!(got, expected);
    // Unfinished messages taken before the crash come back before new ones.
    assert!(again[..20].iter().all(|&o| o < 80), "{again:?}");
}

#[test]
fn a_rewind_in_the_journal_voids_earlier_fins() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        finish_all(&engine, 30);
        engine.persist_cursors().expect("persist");
        let c = engine.channel("t", "c").expect("channel");
        // An empty (not persisted) then FINs after it: the journal replays both in order.
        c.empty();
        engine
            .create_topic("t")
            .expect("t")
            .publish(&["late"], 0)
            .expect("publish");
        let late = take(&engine, 1);
        assert_eq!(late.len(), 1);
        finish(&engine, &late);
        drop(engine);
    }
    let engine = open(&fs, &clock);
    assert!(take_all(&engine, "t", "c").is_empty());
    let stats = engine.channel("t", "c").expect("c").stats(engine.now());
    assert_eq!((stats.floor, stats.next), (31, 31));
}

#[test]
fn damaged_journal_entries_cost_only_those_fins_and_a_torn_tail_is_cut() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        finish_all(&engine, 20);
        drop(engine);
    }
    let mut bytes = fs.file_data(Path::new(JOURNAL)).expect("journal");
    assert_eq!(bytes.len(), HEADER_LEN + 20 * ENTRY_LEN);
    // Flip a bit in the 6th entry (offset 5), and leave half an entry at the end.
    bytes[HEADER_LEN + 5 * ENTRY_LEN + 3] ^= 0x04;
    bytes.extend_from_slice(&[0xab; ENTRY_LEN / 2]);
    let file = fs
        .open(Path::new(JOURNAL), OpenMode::CreateTruncate)
        .expect("open");
    file.write_all_at(&bytes, 0).expect("write");
    let engine = open(&fs, &clock);
    assert!(engine.recovery_events().iter().any(|e| matches!(
        e,
        RecoveryEvent::JournalDamaged {
            damaged_entries: 1,
            torn_bytes: 8,
            ..
        }
    )));
    let again: Vec<u64> = take_all(&engine, "t", "c")
        .iter()
        .map(|d| d.offset)
        .collect();
    assert_eq!(again, vec![5]);
    assert_eq!(
        fs.file_data(Path::new(JOURNAL)).map(|b| b.len()),
        Some(HEADER_LEN + 19 * ENTRY_LEN),
        "the torn tail is cut and the damaged entry dropped"
    );
}

/// A FIN journaled for a record the log then lost (a power cut keeps the journal's page but
/// not the segment's) must not finish the new message that takes that offset after restart.
#[test]
fn fins_past_the_log_end_never_finish_the_messages_that_take_their_offsets() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        finish_all(&engine, 10);
        drop(engine);
    }
    let mut bytes = fs.file_data(Path::new(JOURNAL)).expect("journal");
    nsq_engine::fin_journal::encode_entries(
        &[
            nsq_engine::fin_journal::JournalEntry::Finished(10),
            nsq_engine::fin_journal::JournalEntry::Finished(11),
        ],
        &mut bytes,
    );
    let file = fs
        .open(Path::new(JOURNAL), OpenMode::CreateTruncate)
        .expect("open");
    file.write_all_at(&bytes, 0).expect("write");
    {
        let engine = open(&fs, &clock);
        assert!(engine
            .recovery_events()
            .iter()
            .any(|e| matches!(e, RecoveryEvent::JournalDamaged { past_end: 2, .. })));
        let topic = engine.topic("t").expect("t");
        topic.publish(&["new-10", "new-11"], 0).expect("publish");
        drop(engine); // kill -9 before any persist
    }
    let engine = open(&fs, &clock);
    assert_eq!(
        bodies(&take_all(&engine, "t", "c")),
        vec!["new-10", "new-11"]
    );
}

#[test]
fn a_journal_for_another_cursor_is_never_applied() {
    let (fs, clock) = sim();
    {
        let engine = open(&fs, &clock);
        finish_all(&engine, 10);
        drop(engine);
    }
    // The journal of the first cursor file, holding ten FINs.
    let stale = fs.file_data(Path::new(JOURNAL)).expect("journal");
    assert_eq!(stale.len(), HEADER_LEN + 10 * ENTRY_LEN);
    {
        let engine = open(&fs, &clock);
        assert!(take_all(&engine, "t", "c").is_empty());
        engine
            .rewind_channel("t", "c", ChannelStart::Offset(5))
            .expect("rewind");
        drop(engine);
    }
    // Put back beside the rewound cursor, it must not mark anything finished.
    let file = fs
        .open(Path::new(JOURNAL), OpenMode::CreateTruncate)
        .expect("open");
    file.write_all_at(&stale, 0).expect("write");
    let engine = open(&fs, &clock);
    assert_eq!(take_all(&engine, "t", "c").len(), 5);
}

#[test]
fn power_cuts_redeliver_but_never_lose() {
    let (fs, clock) = sim();
    let mut finished = BTreeSet::new();
    for round in 0..20u64 {
        let engine = open(&fs, &clock);
        if round == 0 {
            publish(&engine, 200);
            engine
                .create_channel("t", "c", ChannelStart::Earliest)
                .expect("channel");
        }
        let got = take(&engine, 15);
        let (done, _) = got.split_at(got.len().min(10));
        finish(&engine, done);
        finished.extend(done.iter().map(|d| d.offset));
        if round % 3 == 0 {
            engine.persist_cursors().expect("persist");
        }
        if round % 2 == 0 {
            engine
                .tick()
                .expect("tick (fsyncs the journal under sync every 1)");
        }
        drop(engine);
        fs.power_cut();
        clock.advance(SEC);
    }
    let engine = open(&fs, &clock);
    let left: BTreeSet<u64> = take_all(&engine, "t", "c")
        .iter()
        .map(|d| d.offset)
        .collect();
    // Nothing unfinished is lost; power cuts only cost duplicates.
    let lost: Vec<u64> = (0..200)
        .filter(|o| !left.contains(o) && !finished.contains(o))
        .collect();
    assert!(lost.is_empty(), "lost {lost:?}");
}
