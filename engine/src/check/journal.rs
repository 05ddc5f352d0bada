//! The finished-offsets journals beside cursor files (`<channel>.fin`, `<channel>.fin.next`),
//! as `verify` reports them and `repair` fixes them: by the rules nsqd's open follows
//! ([`fin_journal::recover`]), so a repaired directory opens with the cursor state nsqd would
//! have reached itself. Losing an entry only ever costs a redelivery: a FIN that no longer
//! counts makes its message come back, never disappear.

use super::layout::TopicFiles;
use super::verify::VerifyReport;
use super::{Finding, FindingKind};
use crate::cursor::CursorFile;
use crate::fin_journal::{self, JournalEntry, ParsedJournal, ENTRY_LEN, HEADER_LEN};
use crate::fs::FileSystem;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// How much a journal finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Severity {
    /// A state any crash can leave, which nsqd's open resolves without redelivering more
    /// than the entry torn away (torn tail, interrupted compaction, leftover of a delete).
    Note,
    /// Damage: nsqd works around it, but FINs are lost to it (their messages are redelivered).
    Problem,
}

/// One thing found in a journal.
#[derive(Debug, Clone)]
pub(super) struct Issue {
    pub severity: Severity,
    pub path: PathBuf,
    pub position: Option<u64>,
    pub offset: Option<u64>,
    pub detail: String,
}

/// One change that makes the journals what nsqd's open would leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fix {
    /// Remove the file.
    Remove(PathBuf),
    /// Cut the file to this length.
    Truncate(PathBuf, u64),
    /// Replace the file atomically with these bytes.
    Rewrite(PathBuf, Vec<u8>),
    /// Rename the first over the second (a compaction's last step).
    RenameOver(PathBuf, PathBuf),
}

impl Fix {
    /// Carries the fix out.
    pub fn apply(&self, fs: &dyn FileSystem) -> io::Result<()> {
        match self {
            Fix::Remove(path) => fs.remove_file(path),
            Fix::Truncate(path, len) => {
                let file = fs.open(path, crate::fs::OpenMode::ReadWrite)?;
                file.set_len(*len)?;
                file.sync_data()
            }
            Fix::Rewrite(path, bytes) => fs.write_atomic(path, bytes),
            Fix::RenameOver(from, to) => {
                fs.rename(from, to)?;
                match to.parent() {
                    Some(dir) => fs.sync_dir(dir),
                    None => Ok(()),
                }
            }
        }
    }

    /// The file the fix changes.
    pub fn path(&self) -> &Path {
        match self {
            Fix::Remove(p) | Fix::Truncate(p, _) | Fix::Rewrite(p, _) | Fix::RenameOver(p, _) => p,
        }
    }
}

/// A channel's journals read against its cursor file and the log's end.
#[derive(Debug, Default)]
pub(super) struct Examined {
    /// What is wrong or worth saying, in file order.
    pub issues: Vec<Issue>,
    /// What repair does about it, in order.
    pub fixes: Vec<Fix>,
    /// The entries nsqd would apply (those of the journal extending the cursor file, within
    /// the log), for folding into a cursor file that repair rewrites.
    pub entries: Vec<JournalEntry>,
}

impl Examined {
    fn note(&mut self, path: &Path, detail: String) {
        self.push(Severity::Note, path, None, None, detail);
    }

    fn problem(&mut self, path: &Path, position: Option<u64>, offset: Option<u64>, detail: String) {
        self.push(Severity::Problem, path, position, offset, detail);
    }

    fn push(
        &mut self,
        severity: Severity,
        path: &Path,
        position: Option<u64>,
        offset: Option<u64>,
        detail: String,
    ) {
        self.issues.push(Issue {
            severity,
            path: path.to_path_buf(),
            position,
            offset,
            detail,
        });
    }
}

/// A journal file on disk: its length and, when its header checks out, what it holds.
struct JournalFile {
    path: PathBuf,
    bytes: Vec<u8>,
    parsed: Option<ParsedJournal>,
}

fn read_journal(fs: &dyn FileSystem, path: &Path) -> io::Result<Option<JournalFile>> {
    if !fs.exists(path) {
        return Ok(None);
    }
    let bytes = fs.read_all(path)?;
    let parsed = fin_journal::parse(&bytes);
    Ok(Some(JournalFile {
        path: path.to_path_buf(),
        bytes,
        parsed,
    }))
}

/// Examines the journals of the cursor file at `cursor_path`, whose content is `cursor` (it
/// exists and reads; see [`orphans`] for journals without one), for a log ending at `end`.
pub(super) fn examine(
    fs: &dyn FileSystem,
    cursor_path: &Path,
    cursor: &CursorFile,
    end: u64,
) -> io::Result<Examined> {
    let current_path = fin_journal::journal_path(cursor_path);
    let next_path = fin_journal::next_journal_path(cursor_path);
    let mut out = Examined::default();
    let base = fin_journal::fingerprint(cursor);
    let mut readable = Vec::new();
    for file in [
        read_journal(fs, &current_path)?,
        read_journal(fs, &next_path)?,
    ]
    .into_iter()
    .flatten()
    {
        if file.parsed.is_none() {
            out.problem(
                &file.path,
                Some(0),
                None,
                "journal header damaged: nsqd cannot tell which cursor it extends and removes it; \
                 the FINs it recorded are lost, so those messages are redelivered (never lost)"
                    .into(),
            );
            out.fixes.push(Fix::Remove(file.path.clone()));
        } else {
            readable.push(file);
        }
    }
    let extends = |f: &JournalFile| f.parsed.as_ref().is_some_and(|p| p.base == base);
    // `.fin.next` first: it extends the newest cursor when the cursor's rename happened.
    let chosen = readable
        .iter()
        .position(|f| f.path == next_path && extends(f))
        .or_else(|| {
            readable
                .iter()
                .position(|f| f.path == current_path && extends(f))
        });
    for (i, file) in readable.iter().enumerate() {
        if Some(i) == chosen {
            continue;
        }
        if chosen.is_some() {
            let detail = if file.path == next_path {
                "left by a compaction interrupted before the cursor file was replaced; nsqd \
                 removes it (nothing is lost: the journal of the cursor in place is complete)"
            } else {
                "superseded: a compaction was interrupted after the cursor file was replaced; \
                 nsqd removes it and carries on with the .fin.next journal"
            };
            out.note(&file.path, detail.into());
        } else {
            out.problem(
                &file.path,
                Some(16),
                None,
                "extends no cursor file here (the cursor was replaced by other means); nsqd \
                 removes it: the FINs it holds are lost, so those messages are redelivered"
                    .into(),
            );
        }
        out.fixes.push(Fix::Remove(file.path.clone()));
    }
    let Some(file) = chosen.map(|i| &readable[i]) else {
        return Ok(out);
    };
    let Some(parsed) = &file.parsed else {
        return Ok(out);
    };
    let damaged: Vec<u64> = (HEADER_LEN as u64..parsed.valid_len)
        .step_by(ENTRY_LEN)
        .filter(|&at| {
            let at = at as usize;
            fin_journal::decode_entry(&file.bytes[at..at + ENTRY_LEN]).is_none()
        })
        .collect();
    if let Some(&first) = damaged.first() {
        out.problem(
            &file.path,
            Some(first),
            None,
            format!(
                "{} entr(ies) fail their checksum (first at byte {first}); nsqd skips them and \
                 repair drops them: each was a FIN, whose message is then redelivered (never \
                 lost), or a rewind/empty, which is then undone",
                damaged.len()
            ),
        );
    }
    let (kept, past_end) = fin_journal::within_log(&parsed.entries, end);
    if past_end > 0 {
        let first = parsed.entries.iter().find_map(|e| match *e {
            JournalEntry::Finished(o) if o >= end => Some(o),
            JournalEntry::Reset(o) if o > end => Some(o),
            _ => None,
        });
        out.problem(
            &file.path,
            None,
            first,
            format!(
                "{past_end} entr(ies) name offsets at or past the log's end ({end}): records \
                 lost with unsynced writes; nsqd drops them (they must not finish the new \
                 messages that will take those offsets)"
            ),
        );
    }
    let torn = file.bytes.len() as u64 - parsed.valid_len;
    if torn > 0 {
        let what = if torn < ENTRY_LEN as u64 {
            "a partial last entry"
        } else {
            "bad entries with no good one after them"
        };
        out.issues.push(Issue {
            severity: Severity::Note,
            path: file.path.clone(),
            position: Some(parsed.valid_len),
            offset: None,
            detail: format!(
                "torn tail of {torn} byte(s), {what} (a crash in mid-write); nsqd cuts it: \
                 at most the FINs in it are redelivered"
            ),
        });
    }
    if !damaged.is_empty() || past_end > 0 {
        out.fixes.push(Fix::Rewrite(
            file.path.clone(),
            fin_journal::encode_journal(parsed.base, &kept),
        ));
    } else if torn > 0 {
        out.fixes
            .push(Fix::Truncate(file.path.clone(), parsed.valid_len));
    }
    if file.path == next_path {
        out.note(
            &file.path,
            "a compaction was interrupted after the cursor file was replaced: this journal \
             extends it; nsqd renames it over .fin"
                .into(),
        );
        out.fixes
            .push(Fix::RenameOver(next_path.clone(), current_path.clone()));
    }
    out.entries = kept;
    Ok(out)
}

/// The journal files in `channels_dir` of channels not in `readable` (those whose cursor file
/// exists and reads): nsqd removes them on open (leftovers of an interrupted channel delete,
/// or of a lost cursor file; without the cursor they extend they cannot be applied).
pub(super) fn orphans(
    fs: &dyn FileSystem,
    channels_dir: &Path,
    readable: &BTreeSet<String>,
) -> io::Result<Examined> {
    let mut out = Examined::default();
    if !fs.exists(channels_dir) {
        return Ok(out);
    }
    let names: BTreeSet<String> = fs
        .read_dir(channels_dir)?
        .into_iter()
        .filter(|e| !e.is_dir)
        .map(|e| e.name)
        .collect();
    for name in &names {
        let Some(channel) = fin_journal::journal_owner(name) else {
            continue;
        };
        if readable.contains(channel) {
            continue;
        }
        let path = channels_dir.join(name);
        let why = if names.contains(&format!("{channel}.cursor")) {
            "whose cursor file is unreadable"
        } else {
            "which has no cursor file (an interrupted channel delete, or a lost cursor)"
        };
        out.note(
            &path,
            format!(
                "journal of channel {channel}, {why}; it cannot be applied, and nsqd removes it"
            ),
        );
        out.fixes.push(Fix::Remove(path));
    }
    Ok(out)
}

/// Every cursor file in `channels_dir` that reads, by channel name.
pub(super) fn readable_cursors(
    fs: &dyn FileSystem,
    channels_dir: &Path,
) -> io::Result<Vec<(String, PathBuf, CursorFile)>> {
    let mut out = Vec::new();
    if !fs.exists(channels_dir) {
        return Ok(out);
    }
    for entry in fs.read_dir(channels_dir)? {
        let Some(channel) = entry.name.strip_suffix(".cursor").filter(|_| !entry.is_dir) else {
            continue;
        };
        let path = channels_dir.join(&entry.name);
        let Ok(bytes) = fs.read_all(&path) else {
            continue;
        };
        if let Ok(cursor) = CursorFile::decode(&path, &bytes) {
            out.push((channel.to_string(), path, cursor));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Reports the finished-offsets journals: damage as findings, crash leftovers as notes.
pub(super) fn verify_journals(
    fs: &dyn FileSystem,
    topic: &TopicFiles,
    end: Option<u64>,
    report: &mut VerifyReport,
) -> crate::error::Result<()> {
    let dir = topic.dir.join("channels");
    let cursors = readable_cursors(fs, &dir).map_err(|e| crate::error::Error::io(&dir, e))?;
    let readable = cursors.iter().map(|c| c.0.clone()).collect();
    let mut examined =
        vec![orphans(fs, &dir, &readable).map_err(|e| crate::error::Error::io(&dir, e))?];
    for (_, path, cursor) in &cursors {
        // Without segments there is no end to be past.
        let end = end.unwrap_or(u64::MAX);
        examined
            .push(examine(fs, path, cursor, end).map_err(|e| crate::error::Error::io(path, e))?);
    }
    for issue in examined.into_iter().flat_map(|e| e.issues) {
        let f = Finding {
            kind: FindingKind::Journal,
            path: issue.path,
            position: issue.position,
            offset: issue.offset,
            detail: issue.detail,
        };
        match issue.severity {
            Severity::Note => report.notes.push(f),
            Severity::Problem => report.findings.push(f),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
