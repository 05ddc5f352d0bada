use super::*;
use crate::fin_journal::{encode_journal, fingerprint};
use crate::fs::{OpenMode, SimFs};

const CURSOR: &str = "/d/channels/c.cursor";
const FIN: &str = "/d/channels/c.fin";
const NEXT: &str = "/d/channels/c.fin.next";

fn cursor() -> CursorFile {
    CursorFile {
        floor: 10,
        next: 20,
        entries: vec![(12, 1, 0), (15, 1, 0)],
    }
}

fn write(fs: &SimFs, path: &str, bytes: &[u8]) {
    let file = fs
        .open(Path::new(path), OpenMode::CreateTruncate)
        .expect("open");
    file.write_all_at(bytes, 0).expect("write");
}

fn setup(journal: &[u8]) -> SimFs {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/d/channels")).expect("dir");
    write(&fs, CURSOR, &cursor().encode());
    write(&fs, FIN, journal);
    fs
}

fn finished(offsets: &[u64]) -> Vec<JournalEntry> {
    offsets.iter().map(|&o| JournalEntry::Finished(o)).collect()
}

fn examine_at(fs: &SimFs, end: u64) -> Examined {
    examine(fs, Path::new(CURSOR), &cursor(), end).expect("examine")
}

fn severities(e: &Examined) -> Vec<(Severity, String)> {
    e.issues
        .iter()
        .map(|i| (i.severity, i.path.display().to_string()))
        .collect()
}

#[test]
fn a_sound_journal_has_nothing_to_say() {
    let fs = setup(&encode_journal(
        fingerprint(&cursor()),
        &finished(&[12, 20, 21]),
    ));
    let e = examine_at(&fs, 100);
    assert!(e.issues.is_empty(), "{:?}", e.issues);
    assert!(e.fixes.is_empty());
    assert_eq!(e.entries, finished(&[12, 20, 21]));
}

#[test]
fn a_torn_tail_is_a_note_and_is_cut() {
    let mut bytes = encode_journal(fingerprint(&cursor()), &finished(&[12, 20]));
    let whole = bytes.len() as u64;
    bytes.extend_from_slice(&[0x5a; 7]);
    let fs = setup(&bytes);
    let e = examine_at(&fs, 100);
    assert_eq!(severities(&e), vec![(Severity::Note, FIN.to_string())]);
    assert_eq!(e.issues[0].position, Some(whole));
    assert!(
        e.issues[0].detail.contains("torn tail of 7"),
        "{:?}",
        e.issues
    );
    assert_eq!(e.fixes, vec![Fix::Truncate(FIN.into(), whole)]);
    for fix in &e.fixes {
        fix.apply(&fs).expect("fix");
    }
    assert!(examine_at(&fs, 100).issues.is_empty());
}

#[test]
fn a_flipped_bit_is_a_problem_and_costs_that_entry_only() {
    let mut bytes = encode_journal(fingerprint(&cursor()), &finished(&[12, 20, 21, 22]));
    let at = HEADER_LEN + ENTRY_LEN + 5;
    bytes[at] ^= 0x08;
    let fs = setup(&bytes);
    let e = examine_at(&fs, 100);
    assert_eq!(severities(&e), vec![(Severity::Problem, FIN.to_string())]);
    assert_eq!(e.issues[0].position, Some((HEADER_LEN + ENTRY_LEN) as u64));
    assert!(
        e.issues[0].detail.contains("redelivered"),
        "{}",
        e.issues[0].detail
    );
    assert_eq!(e.entries, finished(&[12, 21, 22]));
    for fix in &e.fixes {
        fix.apply(&fs).expect("fix");
    }
    let after = examine_at(&fs, 100);
    assert!(after.issues.is_empty(), "{:?}", after.issues);
    assert_eq!(after.entries, finished(&[12, 21, 22]));
}

#[test]
fn entries_past_the_log_end_are_a_problem_and_dropped() {
    let entries = [
        JournalEntry::Finished(12),
        JournalEntry::Finished(25),
        JournalEntry::Finished(30),
    ];
    let fs = setup(&encode_journal(fingerprint(&cursor()), &entries));
    let e = examine_at(&fs, 26);
    assert_eq!(severities(&e), vec![(Severity::Problem, FIN.to_string())]);
    assert_eq!(e.issues[0].offset, Some(30));
    assert!(e.issues[0].detail.contains("log's end (26)"));
    assert_eq!(e.entries, finished(&[12, 25]));
    for fix in &e.fixes {
        fix.apply(&fs).expect("fix");
    }
    assert!(examine_at(&fs, 26).issues.is_empty());
}

#[test]
fn a_damaged_header_makes_the_journal_worthless() {
    let mut bytes = encode_journal(fingerprint(&cursor()), &finished(&[12]));
    bytes[9] ^= 0x20; // the version field
    let fs = setup(&bytes);
    let e = examine_at(&fs, 100);
    assert_eq!(severities(&e), vec![(Severity::Problem, FIN.to_string())]);
    assert_eq!(e.fixes, vec![Fix::Remove(FIN.into())]);
    assert!(e.entries.is_empty());
}

#[test]
fn a_stale_next_journal_is_a_note_and_removed() {
    // Compaction interrupted before the cursor was replaced: `.fin.next` names a newer cursor.
    let fs = setup(&encode_journal(fingerprint(&cursor()), &finished(&[12])));
    write(&fs, NEXT, &encode_journal(0xdead_beef, &finished(&[15])));
    let e = examine_at(&fs, 100);
    assert_eq!(severities(&e), vec![(Severity::Note, NEXT.to_string())]);
    assert_eq!(e.fixes, vec![Fix::Remove(NEXT.into())]);
    assert_eq!(e.entries, finished(&[12]));
}

#[test]
fn a_next_journal_for_the_cursor_in_place_takes_over() {
    // Compaction interrupted after the cursor was replaced: `.fin.next` extends it.
    let fs = setup(&encode_journal(0xdead_beef, &finished(&[1])));
    write(
        &fs,
        NEXT,
        &encode_journal(fingerprint(&cursor()), &finished(&[15])),
    );
    let e = examine_at(&fs, 100);
    assert_eq!(
        severities(&e),
        vec![
            (Severity::Note, FIN.to_string()),
            (Severity::Note, NEXT.to_string())
        ]
    );
    assert_eq!(
        e.fixes,
        vec![
            Fix::Remove(FIN.into()),
            Fix::RenameOver(NEXT.into(), FIN.into())
        ]
    );
    assert_eq!(e.entries, finished(&[15]));
    for fix in &e.fixes {
        fix.apply(&fs).expect("fix");
    }
    let after = examine_at(&fs, 100);
    assert!(after.issues.is_empty(), "{:?}", after.issues);
    assert_eq!(after.entries, finished(&[15]));
    assert!(!fs.exists(Path::new(NEXT)));
}

#[test]
fn a_journal_extending_no_cursor_is_a_problem() {
    let fs = setup(&encode_journal(0xdead_beef, &finished(&[12])));
    let e = examine_at(&fs, 100);
    assert_eq!(severities(&e), vec![(Severity::Problem, FIN.to_string())]);
    assert_eq!(e.fixes, vec![Fix::Remove(FIN.into())]);
    assert!(e.entries.is_empty());
}

#[test]
fn journals_without_a_readable_cursor_are_orphans() {
    let fs = setup(&encode_journal(fingerprint(&cursor()), &[]));
    write(&fs, "/d/channels/gone.fin", &encode_journal(1, &[]));
    write(&fs, "/d/channels/gone.fin.next", &encode_journal(2, &[]));
    write(&fs, "/d/channels/bad.cursor", b"garbage");
    write(&fs, "/d/channels/bad.fin", &encode_journal(3, &[]));
    let dir = Path::new("/d/channels");
    let cursors = readable_cursors(&fs, dir).expect("cursors");
    assert_eq!(cursors.len(), 1);
    let readable = cursors.into_iter().map(|c| c.0).collect();
    let e = orphans(&fs, dir, &readable).expect("orphans");
    let paths: Vec<&Path> = e.fixes.iter().map(Fix::path).collect();
    assert_eq!(
        paths,
        vec![
            Path::new("/d/channels/bad.fin"),
            Path::new("/d/channels/gone.fin"),
            Path::new("/d/channels/gone.fin.next")
        ]
    );
    assert!(e.issues.iter().all(|i| i.severity == Severity::Note));
    assert!(e.issues[0].detail.contains("unreadable"));
    assert!(e.issues[1].detail.contains("no cursor file"));
}
