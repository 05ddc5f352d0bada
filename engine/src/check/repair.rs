//! `repair`: make a damaged data directory sound again, losing only what is unreadable.
//!
//! Per segment: unreadable spans go to `<segment>.quarantine`, lost records become holes
//! (their offsets with empty bodies), a torn tail of the last segment is cut, and the segment
//! is rewritten atomically; a missing segment becomes a segment of holes; indexes are rebuilt
//! from the records; cursors pointing past the log are clamped, unreadable ones reset to the
//! oldest message (redelivery, never loss).

use super::layout::{list_topics, lock, TopicFiles};
use super::scan::{scan_segment, SegmentScan};
use crate::cursor::CursorFile;
use crate::error::{Error, IoContext, Result};
use crate::fs::{FileSystem, OpenMode};
use crate::id::MessageId;
use crate::index::{self, IndexEntry};
use crate::meta::{ChannelMeta, Meta, TopicMeta};
use crate::record;
use crate::segment::{self, HEADER_LEN};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One thing repair did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RepairAction {
    /// The file changed.
    pub path: PathBuf,
    /// What was done, in words.
    pub what: String,
}

/// What `repair` did.
#[derive(Debug, Default, Serialize)]
pub struct RepairReport {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Every change, in order.
    pub actions: Vec<RepairAction>,
    /// Records that could not be read and became holes.
    pub records_lost: u64,
    /// Bytes moved to quarantine files.
    pub bytes_quarantined: u64,
}

pub(super) struct Repairer<'a> {
    pub(super) fs: &'a dyn FileSystem,
    pub(super) dry_run: bool,
    index_interval: u64,
    report: RepairReport,
}

/// Repairs the data directory at `data` (every topic, or just `only`). `progress` is called
/// with the bytes of each segment as it is done.
pub fn repair(
    fs: &dyn FileSystem,
    data: &Path,
    only: Option<&str>,
    dry_run: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<RepairReport> {
    let _lock = lock(fs, data)?;
    let mut r = Repairer {
        fs,
        dry_run,
        index_interval: crate::Options::default().index_interval_bytes,
        report: RepairReport {
            dry_run,
            ..RepairReport::default()
        },
    };
    if r.meta(data)? && dry_run {
        // The topics cannot be listed from a meta file that was not rewritten.
        return Ok(r.report);
    }
    let topics = list_topics(fs, data, only)?;
    for topic in &topics {
        let (first, end) = r.topic(topic, progress)?;
        r.cursors(topic, first, end)?;
        r.orphan_journals(topic)?;
    }
    Ok(r.report)
}

/// An index for `records`, placed as the engine places entries while appending.
fn build_index(records: &[(u64, u64, u64, i64)], interval: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut since = 0u64;
    for &(offset, position, len, timestamp) in records {
        if since >= interval {
            IndexEntry {
                offset,
                position,
                timestamp,
            }
            .encode(&mut out);
            since = 0;
        }
        since += len;
    }
    out
}

fn push_holes(
    out: &mut Vec<u8>,
    records: &mut Vec<(u64, u64, u64, i64)>,
    salt: u64,
    from: u64,
    to: u64,
    timestamp: i64,
) {
    for offset in from..to {
        let position = out.len() as u64;
        record::encode(
            out,
            offset,
            &MessageId::for_offset(salt, offset),
            timestamp,
            0,
            &[],
        );
        records.push((offset, position, out.len() as u64 - position, timestamp));
    }
}

impl Repairer<'_> {
    /// Whether an action already changed the file at `path`.
    pub(super) fn acted_on(&self, path: &Path) -> bool {
        self.report.actions.iter().any(|a| a.path == path)
    }

    pub(super) fn act(&mut self, path: &Path, what: String) {
        self.report.actions.push(RepairAction {
            path: path.to_path_buf(),
            what,
        });
    }

    /// Makes `meta` match the directory. An unreadable one is rebuilt from the directory
    /// (every topic directory, salt derived from its records on open; every channel with a
    /// cursor file; nothing paused) and the old file kept as `meta.quarantine`. A missing one
    /// is rebuilt the same way; a readable one gains the topic directories and cursor files it
    /// does not name. Returns whether an unreadable file was replaced.
    fn meta(&mut self, data: &Path) -> Result<bool> {
        let path = data.join("meta");
        let (mut meta, unreadable) = if !self.fs.exists(&path) {
            (Meta::default(), None)
        } else {
            match Meta::load(self.fs, &path) {
                Ok(meta) => (meta, None),
                Err(Error::Corrupt { reason, .. }) => (Meta::default(), Some(reason)),
                Err(e @ Error::UnsupportedVersion { .. }) => (Meta::default(), Some(e.to_string())),
                Err(e) => return Err(e),
            }
        };
        let missing = !self.fs.exists(&path);
        let mut added = Vec::new();
        for (topic, _, channels) in super::layout::catalogue(self.fs, data)? {
            let i = match meta.topics.iter().position(|t| t.name == topic) {
                Some(i) => i,
                None => {
                    meta.topics.push(TopicMeta::adopted(topic.clone()));
                    added.push(format!("topic {topic}"));
                    meta.topics.len() - 1
                }
            };
            let known = &mut meta.topics[i].channels;
            for channel in channels {
                if !known.iter().any(|c| c.name == channel) {
                    added.push(format!("channel {topic}/{channel}"));
                    known.push(ChannelMeta {
                        name: channel,
                        paused: false,
                    });
                }
            }
        }
        let what = match (&unreadable, missing) {
            (Some(reason), _) => format!(
                "meta unreadable ({reason}): rebuilt from the directory ({} topic(s)); pauses and retention overrides are reset",
                meta.topics.len()
            ),
            (None, true) if meta.topics.is_empty() => return Ok(false),
            (None, true) => format!(
                "meta missing: rebuilt from the directory ({} topic(s)); pauses and retention overrides are reset",
                meta.topics.len()
            ),
            (None, false) if added.is_empty() => return Ok(false),
            (None, false) => format!("meta did not name {}: added", added.join(", ")),
        };
        self.act(&path, what);
        if !self.dry_run {
            if unreadable.is_some() {
                let old = self.fs.read_all(&path).at(&path)?;
                let kept = data.join("meta.quarantine");
                self.fs.write_atomic(&kept, &old).at(&kept)?;
            }
            meta.store(self.fs, &path)?;
        }
        Ok(unreadable.is_some())
    }

    /// Repairs one topic's segments and indexes; returns its first and end offsets.
    fn topic(&mut self, topic: &TopicFiles, progress: &mut dyn FnMut(u64)) -> Result<(u64, u64)> {
        let mut salt = topic.salt;
        let mut previous_end: Option<u64> = None;
        let mut log_first = topic.segments.first().map_or(0, |s| s.0);
        for (i, (first, path)) in topic.segments.iter().enumerate() {
            let bytes = self.fs.read_all(path).at(path)?;
            let scan = scan_segment(&bytes, *first);
            if salt.is_none() {
                salt = scan.records.first().and_then(|r| {
                    let at = (r.position + 16) as usize;
                    MessageId::from_slice(&bytes[at..at + 16])?
                        .offset(0)
                        .map(|v| v.wrapping_sub(r.offset))
                });
            }
            let salt = salt.unwrap_or(0);
            if let Some(prev) = previous_end {
                if prev < *first {
                    self.hole_segment(&topic.dir, salt, prev, *first)?;
                } else if prev > *first {
                    return Err(Error::corrupt(
                        path,
                        0,
                        format!("segment overlaps the previous one (starts at {first}, previous ends at {prev}); move one aside by hand"),
                    ));
                }
            } else {
                log_first = *first;
            }
            let next_first = topic.segments.get(i + 1).map(|s| s.0);
            previous_end =
                Some(self.segment(&topic.dir, path, *first, next_first, salt, &bytes, &scan)?);
            progress(bytes.len() as u64);
        }
        Ok((log_first, previous_end.unwrap_or(log_first)))
    }

    /// A new segment holding only holes for `[from, to)`, where a segment file went missing.
    fn hole_segment(&mut self, dir: &Path, salt: u64, from: u64, to: u64) -> Result<()> {
        let path = segment::log_path(dir, from);
        let mut out = segment::encode_header(from);
        let mut records = Vec::new();
        push_holes(&mut out, &mut records, salt, from, to, 0);
        self.report.records_lost += to - from;
        self.act(
            &path,
            format!(
                "offsets {from}..{} were in no segment: wrote a segment of {} hole(s)",
                to - 1,
                to - from
            ),
        );
        if !self.dry_run {
            self.fs.write_atomic(&path, &out).at(&path)?;
            let index_path = segment::index_path(dir, from);
            self.fs
                .write_atomic(&index_path, &build_index(&records, self.index_interval))
                .at(&index_path)?;
        }
        Ok(())
    }

    /// Repairs one segment; returns the offset after its last record.
    #[allow(clippy::too_many_arguments)]
    fn segment(
        &mut self,
        dir: &Path,
        path: &Path,
        first: u64,
        next_first: Option<u64>,
        salt: u64,
        bytes: &[u8],
        scan: &SegmentScan,
    ) -> Result<u64> {
        let header_ok = matches!(segment::decode_header(path, bytes), Ok(named) if named == first);
        let short_of_next = next_first.is_some_and(|n| scan.end_offset < n);
        let index_path = segment::index_path(dir, first);
        if header_ok && scan.damage.is_empty() && !short_of_next {
            let records: Vec<_> = scan
                .records
                .iter()
                .map(|r| (r.offset, r.position, r.len, r.timestamp))
                .collect();
            if scan.prepared_tail > 0 && next_first.is_some() {
                let end = bytes.len() as u64 - scan.prepared_tail;
                self.act(
                    path,
                    format!(
                        "cut {} zero bytes of prepared space off the sealed segment",
                        scan.prepared_tail
                    ),
                );
                if !self.dry_run {
                    let file = self.fs.open(path, OpenMode::ReadWrite).at(path)?;
                    file.set_len(end).at(path)?;
                    file.sync_data().at(path)?;
                }
            }
            if !self.index_sound(&index_path, scan) {
                self.act(&index_path, "rebuilt the index from the records".into());
                if !self.dry_run {
                    let index = build_index(&records, self.index_interval);
                    self.fs.write_atomic(&index_path, &index).at(&index_path)?;
                }
            }
            return Ok(scan.end_offset);
        }
        // Rebuild the segment: good records as they are, damage quarantined, holes for lost offsets.
        let mut out = segment::encode_header(first);
        let mut records = Vec::new();
        let mut quarantine = Vec::new();
        let mut timestamp = scan.records.first().map_or(0, |r| r.timestamp);
        let mut damage = scan.damage.iter().peekable();
        let mut good = scan.records.iter().peekable();
        loop {
            let take_damage = match (good.peek(), damage.peek()) {
                (Some(g), Some(d)) => d.start < g.position,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if take_damage {
                let Some(d) = damage.next() else { break };
                let span = &bytes[d.start as usize..d.end as usize];
                quarantine.extend_from_slice(&d.start.to_be_bytes());
                quarantine.extend_from_slice(&(span.len() as u64).to_be_bytes());
                quarantine.extend_from_slice(span);
                self.report.bytes_quarantined += span.len() as u64;
                let lost_to = d.resumed_at.unwrap_or(d.expected_offset);
                if lost_to > d.expected_offset {
                    push_holes(
                        &mut out,
                        &mut records,
                        salt,
                        d.expected_offset,
                        lost_to,
                        timestamp,
                    );
                    self.report.records_lost += lost_to - d.expected_offset;
                }
                let outcome = if lost_to > d.expected_offset {
                    format!(
                        "offsets {}..{} became holes",
                        d.expected_offset,
                        lost_to - 1
                    )
                } else {
                    format!("the segment now ends before offset {}", d.expected_offset)
                };
                self.act(
                    path,
                    format!(
                        "bytes {}..{} unreadable ({}): quarantined; {outcome}",
                        d.start, d.end, d.reason
                    ),
                );
                continue;
            }
            let Some(g) = good.next() else { break };
            let position = out.len() as u64;
            out.extend_from_slice(&bytes[g.position as usize..(g.position + g.len) as usize]);
            records.push((g.offset, position, g.len, g.timestamp));
            timestamp = g.timestamp;
        }
        let mut end = scan.end_offset;
        if let Some(next) = next_first.filter(|&n| n > end) {
            push_holes(&mut out, &mut records, salt, end, next, timestamp);
            self.report.records_lost += next - end;
            self.act(
                path,
                format!(
                    "offsets {end}..{} missing at the end of a sealed segment: holes",
                    next - 1
                ),
            );
            end = next;
        }
        if !header_ok {
            self.act(
                path,
                format!("rewrote the damaged segment header (first offset {first})"),
            );
        }
        if bytes.len() < HEADER_LEN as usize && scan.records.is_empty() {
            self.act(
                path,
                "re-initialised a segment shorter than its header".into(),
            );
        }
        if !self.dry_run {
            if !quarantine.is_empty() {
                self.append_quarantine(path, &quarantine)?;
            }
            self.fs.write_atomic(path, &out).at(path)?;
            let index = build_index(&records, self.index_interval);
            self.fs.write_atomic(&index_path, &index).at(&index_path)?;
        }
        self.act(
            &index_path,
            "rebuilt the index from the repaired segment".into(),
        );
        Ok(end)
    }

    fn index_sound(&self, path: &Path, scan: &SegmentScan) -> bool {
        let Ok(bytes) = self.fs.read_all(path) else {
            return false;
        };
        let (entries, damaged) = index::decode_all(&bytes);
        let by_position: HashMap<u64, (u64, i64)> = scan
            .records
            .iter()
            .map(|r| (r.position, (r.offset, r.timestamp)))
            .collect();
        !damaged
            && entries
                .iter()
                .all(|e| by_position.get(&e.position) == Some(&(e.offset, e.timestamp)))
    }

    /// Appends to `<segment>.quarantine` and fsyncs it, before the segment is rewritten.
    fn append_quarantine(&mut self, segment_path: &Path, entries: &[u8]) -> Result<()> {
        let mut name = segment_path.as_os_str().to_owned();
        name.push(".quarantine");
        let path = PathBuf::from(name);
        let mode = if self.fs.exists(&path) {
            OpenMode::ReadWrite
        } else {
            OpenMode::CreateNew
        };
        let file = self.fs.open(&path, mode).at(&path)?;
        let len = file.len().at(&path)?;
        file.write_all_at(entries, len).at(&path)?;
        file.sync_data().at(&path)?;
        if let Some(dir) = path.parent() {
            self.fs.sync_dir(dir).at(dir)?;
        }
        self.act(
            &path,
            format!(
                "kept {} unreadable byte(s) here (with their positions)",
                entries.len()
            ),
        );
        Ok(())
    }

    /// Clamps cursors to `[first, end]` (folding in their journals) and resets unreadable
    /// ones to `first`; fixes the journals of the others.
    fn cursors(&mut self, topic: &TopicFiles, first: u64, end: u64) -> Result<()> {
        for channel in &topic.channels {
            let path = topic.dir.join("channels").join(format!("{channel}.cursor"));
            let fixed = match self
                .fs
                .read_all(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| CursorFile::decode(&path, &b).map_err(|e| e.to_string()))
            {
                Ok(original) => {
                    if original.next <= end && original.floor <= original.next {
                        self.journals(&path, &original, end)?;
                        continue;
                    }
                    let mut c = original.clone();
                    let before = (c.floor, c.next);
                    c.next = c.next.min(end);
                    c.floor = c.floor.min(c.next);
                    let next = c.next;
                    c.entries.retain(|e| e.0 < next);
                    self.act(
                        &path,
                        format!(
                            "clamped floor/read position {before:?} to ({}, {})",
                            c.floor, c.next
                        ),
                    );
                    let folded = self.fold_journal(&path, &original, c, end)?;
                    (folded, "folded into the rewritten cursor file")
                }
                Err(reason) => {
                    self.act(&path, format!("cursor unreadable ({reason}): reset to the oldest message {first} (redelivers)"));
                    let reset = CursorFile {
                        floor: first,
                        next: first,
                        entries: Vec::new(),
                    };
                    (
                        reset,
                        "its cursor was reset, so the FINs it recorded no longer apply",
                    )
                }
            };
            let (fixed, why) = fixed;
            if !self.dry_run {
                self.fs.write_atomic(&path, &fixed.encode()).at(&path)?;
            }
            // Only now: had repair stopped before the cursor write, the old cursor and its
            // journals would still be there, whole.
            self.drop_journals(&path, why)?;
        }
        Ok(())
    }
}
