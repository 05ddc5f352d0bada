//! The finished-offsets journal beside each durable cursor file (`<channel>.fin`).
//!
//! The cursor file is rewritten atomically about once a second; without more, a process
//! crash redelivers everything finished since that write. So every batch of FINs is also
//! appended here (one `write`, page cache, no fsync): a process crash then redelivers only
//! messages whose FIN had not reached nsqd. Each journal names the cursor file it extends
//! (by a fingerprint of its content), so recovery applies it only on top of that cursor; each
//! persist starts a new journal for the new cursor (compaction). Entries are checksummed one
//! by one: a damaged entry costs that entry, a torn tail is cut. Layout: `FORMAT.md`.

use crate::cursor::{CursorFile, CursorState};
use crate::fs::{FileSystem, FsFile, OpenMode};
use crate::recovery::RecoveryEvent;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Magic bytes of a journal.
pub const JOURNAL_MAGIC: &[u8; 8] = b"NSQRFIN\0";
/// Journal format version.
pub const JOURNAL_VERSION: u32 = 1;
/// Length of the journal header.
pub const HEADER_LEN: usize = 32;
/// Length of one entry.
pub const ENTRY_LEN: usize = 16;

const KIND_FINISHED: u8 = 1;
const KIND_RESET: u8 = 2;

/// One journaled change of a channel's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalEntry {
    /// The message at this offset was finished.
    Finished(u64),
    /// The channel was moved to this offset (rewind, empty): earlier entries no longer count.
    Reset(u64),
}

/// The journal path for a cursor file: `<channel>.fin` beside `<channel>.cursor`.
pub fn journal_path(cursor_path: &Path) -> PathBuf {
    cursor_path.with_extension("fin")
}

/// Where the journal of a cursor being written goes until that cursor is in place.
pub fn next_journal_path(cursor_path: &Path) -> PathBuf {
    cursor_path.with_extension("fin.next")
}

/// The channel a journal file of a `channels/` directory belongs to, if the name is one.
pub fn journal_owner(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".fin")
        .or_else(|| file_name.strip_suffix(".fin.next"))
}

/// What identifies a cursor file's content: CRC-32 of its payload and the payload's length.
/// Two cursor files with the same fingerprint hold (barring a CRC collision) the same state.
pub fn fingerprint(file: &CursorFile) -> u64 {
    // Serializing plain integers and vectors into memory cannot fail.
    let payload = bincode::serialize(file).unwrap_or_default();
    (u64::from(crc32fast::hash(&payload)) << 32) | (payload.len() as u64 & 0xffff_ffff)
}

/// The header of a journal extending the cursor file with fingerprint `base`.
pub fn encode_header(base: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(JOURNAL_MAGIC);
    header[8..12].copy_from_slice(&JOURNAL_VERSION.to_be_bytes());
    header[12..16].copy_from_slice(&(ENTRY_LEN as u32).to_be_bytes());
    header[16..24].copy_from_slice(&base.to_be_bytes());
    let crc = crc32fast::hash(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_be_bytes());
    header
}

/// Appends the encoded `entries` to `out`.
pub fn encode_entries(entries: &[JournalEntry], out: &mut Vec<u8>) {
    out.reserve(entries.len() * ENTRY_LEN);
    for entry in entries {
        let (offset, kind) = match *entry {
            JournalEntry::Finished(o) => (o, KIND_FINISHED),
            JournalEntry::Reset(o) => (o, KIND_RESET),
        };
        let mut bytes = [0u8; ENTRY_LEN];
        bytes[..8].copy_from_slice(&offset.to_be_bytes());
        bytes[8] = kind;
        let crc = crc32fast::hash(&bytes[..12]);
        bytes[12..16].copy_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&bytes);
    }
}

/// Decodes one entry (`ENTRY_LEN` bytes); `None` when it fails its checksum or is malformed.
pub fn decode_entry(bytes: &[u8]) -> Option<JournalEntry> {
    if bytes.len() < ENTRY_LEN {
        return None;
    }
    let crc = u32::from_be_bytes(bytes[12..16].try_into().ok()?);
    if crc != crc32fast::hash(&bytes[..12]) || bytes[9..12] != [0, 0, 0] {
        return None;
    }
    let offset = u64::from_be_bytes(bytes[..8].try_into().ok()?);
    match bytes[8] {
        KIND_FINISHED => Some(JournalEntry::Finished(offset)),
        KIND_RESET => Some(JournalEntry::Reset(offset)),
        _ => None,
    }
}

/// A journal read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedJournal {
    /// Fingerprint of the cursor file this journal extends.
    pub base: u64,
    /// The entries that check out, in order.
    pub entries: Vec<JournalEntry>,
    /// Entries that failed their checksum and were followed by good ones (skipped).
    pub damaged: usize,
    /// Where the last good entry ends: bytes from here on are a torn tail.
    pub valid_len: u64,
}

/// Reads a journal's bytes; `None` when the header does not check out (the journal is then
/// worth nothing: without its base it cannot be applied safely).
pub fn parse(bytes: &[u8]) -> Option<ParsedJournal> {
    let header = bytes.get(..HEADER_LEN)?;
    if &header[..8] != JOURNAL_MAGIC
        || header[8..12] != JOURNAL_VERSION.to_be_bytes()
        || header[12..16] != (ENTRY_LEN as u32).to_be_bytes()
        || header[28..32] != crc32fast::hash(&header[..28]).to_be_bytes()
    {
        return None;
    }
    let base = u64::from_be_bytes(header[16..24].try_into().ok()?);
    let mut entries = Vec::new();
    let mut damaged_run = 0;
    let mut damaged = 0;
    let mut valid_len = HEADER_LEN as u64;
    for (i, chunk) in bytes[HEADER_LEN..].chunks_exact(ENTRY_LEN).enumerate() {
        match decode_entry(chunk) {
            Some(entry) => {
                entries.push(entry);
                damaged += damaged_run;
                damaged_run = 0;
                valid_len = (HEADER_LEN + (i + 1) * ENTRY_LEN) as u64;
            }
            None => damaged_run += 1,
        }
    }
    Some(ParsedJournal {
        base,
        entries,
        damaged,
        valid_len,
    })
}

/// The entries that still mean something for a log ending at `end`: a FIN at or past the end
/// names a record the log lost (unsynced writes) and is dropped, a reset past it is moved to
/// it. Returns them and how many were dropped or moved. Kept in the journal, a dropped FIN
/// would finish the new message that takes its offset at the next replay.
pub fn within_log(entries: &[JournalEntry], end: u64) -> (Vec<JournalEntry>, usize) {
    let mut past_end = 0;
    let kept = entries
        .iter()
        .filter_map(|e| match *e {
            JournalEntry::Finished(o) if o >= end => {
                past_end += 1;
                None
            }
            JournalEntry::Reset(o) if o > end => {
                past_end += 1;
                Some(JournalEntry::Reset(end))
            }
            other => Some(other),
        })
        .collect();
    (kept, past_end)
}

/// A whole journal file: header and `entries`.
pub fn encode_journal(base: u64, entries: &[JournalEntry]) -> Vec<u8> {
    let mut bytes = encode_header(base).to_vec();
    encode_entries(entries, &mut bytes);
    bytes
}

/// Applies journal entries to a cursor restored from the file they extend. Offsets at or past
/// `end` (records the log lost with unsynced writes) are ignored.
pub fn apply(state: &mut CursorState, entries: &[JournalEntry], end: u64) {
    let last_reset = entries
        .iter()
        .rposition(|e| matches!(e, JournalEntry::Reset(_)));
    let after = match last_reset {
        Some(at) => {
            if let JournalEntry::Reset(offset) = entries[at] {
                state.reset(offset.min(end));
            }
            &entries[at + 1..]
        }
        None => entries,
    };
    let mut finished: Vec<u64> = after
        .iter()
        .filter_map(|e| match *e {
            JournalEntry::Finished(o) if o < end => Some(o),
            _ => None,
        })
        .collect();
    finished.sort_unstable();
    finished.dedup();
    state.replay_finished(&finished);
}

/// An open journal being appended to.
#[derive(Debug)]
pub struct FinJournal {
    file: Arc<dyn FsFile>,
    len: u64,
    synced_len: u64,
}

impl FinJournal {
    /// Creates (or truncates) the journal at `path` for the cursor file with fingerprint `base`.
    pub fn create(fs: &dyn FileSystem, path: &Path, base: u64) -> io::Result<FinJournal> {
        let file = fs.open(path, OpenMode::CreateTruncate)?;
        file.write_all_at(&encode_header(base), 0)?;
        Ok(FinJournal {
            file,
            len: HEADER_LEN as u64,
            synced_len: 0,
        })
    }

    /// Opens an existing journal to append after its first `valid_len` bytes (cutting a torn
    /// tail beyond them).
    pub fn reopen(fs: &dyn FileSystem, path: &Path, valid_len: u64) -> io::Result<FinJournal> {
        let file = fs.open(path, OpenMode::ReadWrite)?;
        if file.len()? != valid_len {
            file.set_len(valid_len)?;
        }
        Ok(FinJournal {
            file,
            len: valid_len,
            synced_len: 0,
        })
    }

    /// Appends encoded entries with one write (page cache; no fsync).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.len)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Fsyncs what was appended since the last sync, if anything.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.synced_len == self.len {
            return Ok(());
        }
        let len = self.len;
        self.file.sync_data()?;
        self.synced_len = len;
        Ok(())
    }
}

/// Reads the journals beside `cursor_path`, applies the one that extends `cursor` (the file
/// just loaded, `None` if missing) to `state`, removes the others, and returns the journal to
/// keep appending to. Never fails: a journal that cannot be read or written is dropped, which
/// costs redelivery of what it recorded (never loss).
pub fn recover(
    fs: &dyn FileSystem,
    cursor_path: &Path,
    cursor: Option<&CursorFile>,
    state: &mut CursorState,
    end: u64,
    events: &mut Vec<RecoveryEvent>,
) -> Option<FinJournal> {
    let current_path = journal_path(cursor_path);
    let next_path = next_journal_path(cursor_path);
    // A readable journal: its length on disk and what it holds.
    let read = |path: &Path| {
        let bytes = fs.read_all(path).ok()?;
        Some((bytes.len() as u64, parse(&bytes)?))
    };
    let base = cursor.map(fingerprint);
    let extends_cursor = |j: &Option<(u64, ParsedJournal)>| matches!((j, base), (Some((_, p)), Some(b)) if p.base == b);
    let current = read(&current_path);
    let next = read(&next_path);
    // `.fin.next` extends the newest cursor when its rename happened; prefer it.
    let (chosen, chosen_path, other_path) = if extends_cursor(&next) {
        (next, &next_path, &current_path)
    } else if extends_cursor(&current) {
        (current, &current_path, &next_path)
    } else {
        for path in [&current_path, &next_path] {
            if fs.exists(path) {
                let _ = fs.remove_file(path);
            }
        }
        let cursor = cursor?;
        return FinJournal::create(fs, &current_path, fingerprint(cursor)).ok();
    };
    let (full_len, mut parsed) = chosen?;
    apply(state, &parsed.entries, end);
    let (kept, past_end) = within_log(&parsed.entries, end);
    let torn_bytes = full_len.saturating_sub(parsed.valid_len);
    if parsed.damaged > 0 || past_end > 0 || torn_bytes > 0 {
        events.push(RecoveryEvent::JournalDamaged {
            path: chosen_path.clone(),
            damaged_entries: parsed.damaged,
            torn_bytes,
            past_end,
        });
    }
    if fs.exists(other_path) {
        let _ = fs.remove_file(other_path);
    }
    if past_end > 0 || parsed.damaged > 0 {
        // Rewritten without what must not count again (see `within_log`) or cannot be read.
        let bytes = encode_journal(parsed.base, &kept);
        if fs.write_atomic(chosen_path, &bytes).is_err() {
            let _ = fs.remove_file(chosen_path);
            return None;
        }
        parsed.valid_len = bytes.len() as u64;
    }
    if chosen_path == &next_path && fs.rename(&next_path, &current_path).is_err() {
        let _ = fs.remove_file(&next_path);
        return None;
    }
    FinJournal::reopen(fs, &current_path, parsed.valid_len).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_costs_one_entry() {
        let mut bytes = encode_header(42).to_vec();
        let entries: Vec<JournalEntry> = (0..10).map(JournalEntry::Finished).collect();
        encode_entries(&entries, &mut bytes);
        let parsed = parse(&bytes).expect("header");
        assert_eq!(parsed.base, 42);
        assert_eq!(parsed.entries, entries);
        for at in HEADER_LEN..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let parsed = parse(&bad).expect("header intact");
            assert_eq!(parsed.entries.len(), 9, "flip at {at}");
        }
        for at in 0..HEADER_LEN {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(parse(&bad).is_none(), "header flip at {at} undetected");
        }
    }

    #[test]
    fn a_torn_or_zeroed_tail_is_cut() {
        let mut bytes = encode_header(1).to_vec();
        encode_entries(&[JournalEntry::Finished(5)], &mut bytes);
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 40]);
        let parsed = parse(&bytes).expect("header");
        assert_eq!(parsed.entries, vec![JournalEntry::Finished(5)]);
        assert_eq!(parsed.valid_len, good);
        assert_eq!(parsed.damaged, 0);
    }

    #[test]
    fn replay_marks_finished_and_redelivers_the_rest() {
        let file = CursorFile {
            floor: 10,
            next: 14,
            entries: vec![(11, 1, 0), (12, 1, 0)],
        };
        let mut state = CursorState::from_file(&file);
        let entries = [
            JournalEntry::Finished(11),
            JournalEntry::Finished(15),
            JournalEntry::Finished(14),
            JournalEntry::Finished(18),
            JournalEntry::Finished(99),
        ];
        apply(&mut state, &entries, 50);
        // 12 was unfinished before; 16 and 17 were taken but not finished; 99 is past the log.
        assert_eq!(state.next(), 19);
        assert_eq!(state.floor(), 12);
        let mut ready = Vec::new();
        while let Some((o, _)) = state.pop_ready(0) {
            ready.push(o);
        }
        assert_eq!(ready, vec![12, 16, 17]);
    }

    #[test]
    fn a_reset_voids_what_came_before() {
        let mut state = CursorState::at(0);
        let entries = [
            JournalEntry::Finished(3),
            JournalEntry::Reset(20),
            JournalEntry::Finished(21),
        ];
        apply(&mut state, &entries, 100);
        assert_eq!(state.floor(), 20);
        assert_eq!(state.next(), 22);
        assert_eq!(state.pop_ready(0), Some((20, 0)));
    }
}
