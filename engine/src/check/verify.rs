//! `verify`: read everything, change nothing, report every problem with file, byte position
//! and offset.

use super::journal;
use super::layout::{list_topics, lock, TopicFiles};
use super::scan::{scan_segment, SegmentScan};
use super::{Finding, FindingKind};
use crate::cursor::CursorFile;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::index;
use crate::segment;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// What `verify` read and found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Topics checked.
    pub topics: usize,
    /// Segment files read.
    pub segments: usize,
    /// Records that check out.
    pub records: u64,
    /// Segment bytes read.
    pub bytes: u64,
    /// Every problem found; empty means the directory is sound.
    pub findings: Vec<Finding>,
    /// States a crash leaves that nsqd resolves on start without losing anything (a torn
    /// journal tail, an interrupted compaction, a deleted channel's journal); not problems.
    pub notes: Vec<Finding>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_sound(&self) -> bool {
        self.findings.is_empty()
    }
}

fn finding(
    kind: FindingKind,
    path: &Path,
    position: Option<u64>,
    offset: Option<u64>,
    detail: String,
) -> Finding {
    Finding {
        kind,
        path: path.to_path_buf(),
        position,
        offset,
        detail,
    }
}

/// The segment bytes `verify` will read (for a progress bar).
pub fn total_bytes(fs: &dyn FileSystem, data: &Path, only: Option<&str>) -> Result<u64> {
    let mut total = 0;
    for topic in list_topics(fs, data, only)? {
        for (_, path) in &topic.segments {
            total += fs
                .open(path, crate::fs::OpenMode::Read)
                .and_then(|f| f.len())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// Checks the data directory at `data` (every topic, or just `only`). `progress` is called
/// with the bytes of each segment as it is done. Fails only when the directory cannot be read
/// at all (locked, I/O errors, unknown topic); damage is reported in the report.
pub fn verify(
    fs: &dyn FileSystem,
    data: &Path,
    only: Option<&str>,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport> {
    let _lock = lock(fs, data)?;
    let mut report = VerifyReport::default();
    let topics = match list_topics(fs, data, only) {
        Ok(t) => t,
        Err(Error::Corrupt {
            path,
            position,
            reason,
        }) => {
            report.findings.push(finding(
                FindingKind::Meta,
                &path,
                Some(position),
                None,
                reason,
            ));
            return Ok(report);
        }
        Err(e @ Error::UnsupportedVersion { .. }) => {
            report.findings.push(finding(
                FindingKind::Meta,
                &data.join("meta"),
                Some(8),
                None,
                e.to_string(),
            ));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    if only.is_none() {
        verify_meta_names_everything(fs, data, &mut report)?;
    }
    for topic in &topics {
        report.topics += 1;
        let end = verify_topic(fs, topic, &mut report, progress)?;
        verify_cursors(fs, topic, end, &mut report)?;
        journal::verify_journals(fs, topic, end, &mut report)?;
    }
    Ok(report)
}

/// Reports a missing `meta`, and topic directories or cursor files it does not name (nsqd
/// adopts them on start; `nsq_log repair` writes them into `meta`).
fn verify_meta_names_everything(
    fs: &dyn FileSystem,
    data: &Path,
    report: &mut VerifyReport,
) -> Result<()> {
    let meta = data.join("meta");
    let on_disk = super::layout::catalogue(fs, data)?;
    if !fs.exists(&meta) {
        if !on_disk.is_empty() {
            let detail = format!(
                "meta is missing but {} topic director(ies) exist; `nsq_log repair` rebuilds it from the directory",
                on_disk.len()
            );
            report
                .findings
                .push(finding(FindingKind::Meta, &meta, None, None, detail));
        }
        return Ok(());
    }
    let named = crate::meta::Meta::load(fs, &meta)?;
    for (topic, dir, channels) in on_disk {
        let Some(known) = named.topics.iter().find(|t| t.name == topic) else {
            let detail = format!("topic directory {topic} is not in meta");
            report
                .findings
                .push(finding(FindingKind::Meta, &dir, None, None, detail));
            continue;
        };
        for channel in channels
            .iter()
            .filter(|c| !known.channels.iter().any(|k| &&k.name == c))
        {
            let path = dir.join("channels").join(format!("{channel}.cursor"));
            let detail = format!("channel {topic}/{channel} has a cursor file but is not in meta");
            report
                .findings
                .push(finding(FindingKind::Meta, &path, None, None, detail));
        }
    }
    Ok(())
}

/// Checks one topic's segments and indexes; returns the offset after its last good record.
fn verify_topic(
    fs: &dyn FileSystem,
    topic: &TopicFiles,
    report: &mut VerifyReport,
    progress: &mut dyn FnMut(u64),
) -> Result<Option<u64>> {
    let mut previous_end: Option<u64> = None;
    let count = topic.segments.len();
    for (i, (first, path)) in topic.segments.iter().enumerate() {
        let bytes = fs.read_all(path).map_err(|e| Error::io(path, e))?;
        report.segments += 1;
        report.bytes += bytes.len() as u64;
        if let Err(Error::Corrupt {
            position, reason, ..
        }) = segment::decode_header(path, &bytes)
        {
            report.findings.push(finding(
                FindingKind::SegmentHeader,
                path,
                Some(position),
                Some(*first),
                reason,
            ));
        } else if let Ok(named) = segment::decode_header(path, &bytes) {
            if named != *first {
                let detail = format!("header names first offset {named}, the file name {first}");
                report.findings.push(finding(
                    FindingKind::SegmentHeader,
                    path,
                    Some(16),
                    Some(*first),
                    detail,
                ));
            }
        }
        if let Some(prev) = previous_end {
            if prev != *first {
                let detail = if prev < *first {
                    format!(
                        "offsets {prev}..{} are in no segment (a segment file is missing)",
                        first - 1
                    )
                } else {
                    format!(
                        "segment starts at {first} but the previous one ends at {prev} (overlap)"
                    )
                };
                report.findings.push(finding(
                    FindingKind::MissingOffsets,
                    path,
                    None,
                    Some(prev),
                    detail,
                ));
            }
        }
        let scan = scan_segment(&bytes, *first);
        let last = i + 1 == count;
        for d in &scan.damage {
            let (kind, detail) = match (d.resumed_at, last) {
                (None, true) => (
                    FindingKind::TornTail,
                    format!("{} (torn tail of {} bytes; nsqd truncates it on start)", d.reason, d.end - d.start),
                ),
                (None, false) => (
                    FindingKind::BadRecord,
                    format!("{}; the rest of the sealed segment ({} bytes) is unreadable", d.reason, d.end - d.start),
                ),
                (Some(resumed), _) => (
                    FindingKind::BadRecord,
                    format!(
                        "{}; {} bytes unreadable, {} record(s) lost, good records resume at offset {resumed}",
                        d.reason,
                        d.end - d.start,
                        resumed - d.expected_offset
                    ),
                ),
            };
            report.findings.push(finding(
                kind,
                path,
                Some(d.start),
                Some(d.expected_offset),
                detail,
            ));
        }
        if scan.prepared_tail > 0 && !last {
            report.findings.push(finding(
                FindingKind::BadRecord,
                path,
                Some(bytes.len() as u64 - scan.prepared_tail),
                Some(scan.end_offset),
                format!(
                    "sealed segment ends in {} zero bytes (space prepared ahead of writes that sealing should have cut off; repair cuts it)",
                    scan.prepared_tail
                ),
            ));
        }
        report.records += scan.records.len() as u64;
        verify_index(fs, &topic.dir, *first, &scan, report);
        previous_end = Some(scan.end_offset);
        progress(bytes.len() as u64);
    }
    Ok(previous_end)
}

fn verify_index(
    fs: &dyn FileSystem,
    dir: &Path,
    first: u64,
    scan: &SegmentScan,
    report: &mut VerifyReport,
) {
    let path = segment::index_path(dir, first);
    let bytes = match fs.read_all(&path) {
        Ok(b) => b,
        Err(e) => {
            let detail = format!("index unreadable ({e}); nsqd or `nsq_log repair` rebuilds it");
            report
                .findings
                .push(finding(FindingKind::Index, &path, None, None, detail));
            return;
        }
    };
    let (entries, damaged) = index::decode_all(&bytes);
    if damaged {
        let position = (entries.len() * index::ENTRY_LEN) as u64;
        let detail = format!("damaged or torn entry after {} good ones", entries.len());
        report.findings.push(finding(
            FindingKind::Index,
            &path,
            Some(position),
            None,
            detail,
        ));
    }
    let by_position: HashMap<u64, (u64, i64)> = scan
        .records
        .iter()
        .map(|r| (r.position, (r.offset, r.timestamp)))
        .collect();
    for (i, e) in entries.iter().enumerate() {
        if by_position.get(&e.position) != Some(&(e.offset, e.timestamp)) {
            let detail = format!(
                "entry {i} names offset {} at byte {} of the segment, where no such record is",
                e.offset, e.position
            );
            report.findings.push(finding(
                FindingKind::Index,
                &path,
                Some((i * index::ENTRY_LEN) as u64),
                Some(e.offset),
                detail,
            ));
        }
    }
}

fn verify_cursors(
    fs: &dyn FileSystem,
    topic: &TopicFiles,
    end: Option<u64>,
    report: &mut VerifyReport,
) -> Result<()> {
    for channel in &topic.channels {
        let path = topic.dir.join("channels").join(format!("{channel}.cursor"));
        let bytes = match fs.read_all(&path) {
            Ok(b) => b,
            Err(e) => {
                let detail = format!(
                    "cursor unreadable ({e}); nsqd restarts the channel at the oldest message"
                );
                report
                    .findings
                    .push(finding(FindingKind::Cursor, &path, None, None, detail));
                continue;
            }
        };
        let cursor = match CursorFile::decode(&path, &bytes) {
            Ok(c) => c,
            Err(e) => {
                report.findings.push(finding(
                    FindingKind::Cursor,
                    &path,
                    None,
                    None,
                    e.to_string(),
                ));
                continue;
            }
        };
        if let Some(end) = end {
            if cursor.next > end {
                let detail = format!(
                    "read position {} is past the end of the log ({end})",
                    cursor.next
                );
                report.findings.push(finding(
                    FindingKind::Cursor,
                    &path,
                    None,
                    Some(cursor.next),
                    detail,
                ));
            }
        }
        if cursor.floor > cursor.next {
            let detail = format!(
                "floor {} is above the read position {}",
                cursor.floor, cursor.next
            );
            report.findings.push(finding(
                FindingKind::Cursor,
                &path,
                None,
                Some(cursor.floor),
                detail,
            ));
        }
    }
    Ok(())
}
