//! Opening a topic log: load segment headers and indexes, and recover the tail of the last
//! segment. Only the tail after the last trustworthy index entry is scanned, so opening a
//! large log costs about the same as opening a small one.

use super::append::{SyncState, Writer};
use super::group::GroupWriter;
use super::prepare::is_zero_tail;
use super::{LogConfig, LogCore, Segment, TopicLog};
use crate::error::{Error, IoContext, Result};
use crate::fs::{FileSystem, FsFile, OpenMode};
use crate::index::{self, IndexEntry};
use crate::record::{self, DecodeError};
use crate::recovery::RecoveryEvent;
use crate::segment::{self, HEADER_LEN};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// A freshly opened log and what recovery did to it.
#[derive(Debug)]
pub struct OpenedLog {
    /// The log.
    pub log: TopicLog,
    /// What recovery found and fixed.
    pub events: Vec<RecoveryEvent>,
}

/// Chunk size for scanning records during recovery.
const SCAN_CHUNK: usize = 1 << 20;

/// The result of scanning records from a position.
struct Scan {
    /// End of the last good record.
    end: u64,
    /// Offset after the last good record.
    next_offset: u64,
    /// Timestamp of the last good record.
    last_timestamp: Option<i64>,
    /// Index entries for the scanned range.
    entries: Vec<IndexEntry>,
    /// Bytes since the last index entry at `end`.
    since_index: u64,
    /// Why scanning stopped before the end of the file, if it did.
    stopped: Option<String>,
}

/// Scans records of `file` from `pos` (holding `offset`) to the end, checking length, checksum
/// and offset sequence, and making an index entry every `interval` bytes.
fn scan(
    file: &dyn FsFile,
    path: &Path,
    len: u64,
    mut pos: u64,
    mut offset: u64,
    since_index: u64,
    config: &LogConfig,
) -> Result<Scan> {
    let mut scan = Scan {
        end: pos,
        next_offset: offset,
        last_timestamp: None,
        entries: Vec::new(),
        since_index,
        stopped: None,
    };
    while pos < len {
        let want =
            (len - pos).min(SCAN_CHUNK.max(record::record_len(config.max_body)) as u64) as usize;
        let mut buf = vec![0u8; want];
        file.read_exact_at(&mut buf, pos).at(path)?;
        let chunk = Bytes::from(buf);
        let mut at = 0usize;
        while at < chunk.len() {
            match record::decode(&chunk.slice(at..), config.max_body) {
                // No offset can follow it, so no real log holds it (and counting on would overflow).
                Ok((m, _)) if m.offset == u64::MAX => {
                    scan.stopped = Some("offset u64::MAX leaves no next offset".to_string());
                    return Ok(scan);
                }
                Ok((m, size)) if m.offset == offset => {
                    if scan.since_index >= config.index_interval_bytes {
                        scan.entries.push(IndexEntry {
                            offset,
                            position: pos,
                            timestamp: m.timestamp,
                        });
                        scan.since_index = 0;
                    }
                    scan.since_index += size as u64;
                    scan.last_timestamp = Some(m.timestamp);
                    at += size;
                    pos += size as u64;
                    offset += 1;
                    scan.end = pos;
                    scan.next_offset = offset;
                }
                Ok((m, _)) => {
                    scan.stopped = Some(format!("expected offset {offset}, found {}", m.offset));
                    return Ok(scan);
                }
                Err(DecodeError::Truncated { .. }) if pos + ((chunk.len() - at) as u64) < len => {
                    break
                }
                Err(e) => {
                    scan.stopped = Some(e.to_string());
                    return Ok(scan);
                }
            }
        }
    }
    Ok(scan)
}

fn read_header(fs: &dyn FileSystem, path: &Path) -> Result<(Arc<dyn FsFile>, u64, Vec<u8>)> {
    let file = fs.open(path, OpenMode::ReadWrite).at(path)?;
    let len = file.len().at(path)?;
    let mut header = vec![0u8; (len.min(HEADER_LEN)) as usize];
    file.read_exact_at(&mut header, 0).at(path)?;
    Ok((file, len, header))
}

fn load_index(fs: &dyn FileSystem, path: &Path) -> Result<(Vec<IndexEntry>, bool)> {
    match fs.read_all(path) {
        Ok(bytes) => Ok(index::decode_all(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Vec::new(), true)),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * index::ENTRY_LEN);
    for e in entries {
        e.encode(&mut out);
    }
    out
}

/// Whether every entry lies inside `[first, end_offset)` and before byte `len`.
fn entries_fit(entries: &[IndexEntry], first: u64, end_offset: Option<u64>, len: u64) -> bool {
    entries.iter().all(|e| {
        e.offset >= first
            && end_offset.is_none_or(|end| e.offset < end)
            && e.position >= HEADER_LEN
            && e.position < len
    })
}

impl TopicLog {
    /// Opens (creating if needed) the log of `topic` in `dir`. `start_offset` is where a log
    /// with no segments begins (so offsets are never reused after everything was trimmed).
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        topic: &str,
        config: LogConfig,
        salt: u64,
        start_offset: u64,
        now: i64,
    ) -> Result<OpenedLog> {
        fs.create_dir_durable(&dir).at(&dir)?;
        let mut firsts: Vec<u64> = fs
            .read_dir(&dir)
            .at(&dir)?
            .iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| segment::parse_log_file_name(&e.name))
            .collect();
        firsts.sort_unstable();
        let mut events = Vec::new();
        if firsts.is_empty() {
            let path = segment::log_path(&dir, start_offset);
            let file = fs.open(&path, OpenMode::CreateTruncate).at(&path)?;
            file.write_all_at(&segment::encode_header(start_offset), 0)
                .at(&path)?;
            file.sync_data().at(&path)?;
            let index_path = segment::index_path(&dir, start_offset);
            fs.open(&index_path, OpenMode::CreateTruncate)
                .at(&index_path)?;
            fs.sync_dir(&dir).at(&dir)?;
            firsts.push(start_offset);
        }
        // A roll that failed (or crashed) before the new segment's header was written leaves a
        // file shorter than a header: drop it, so the previous segment becomes the active one
        // again. Re-initialising it instead would need free space, which a full disk lacks.
        while firsts.len() > 1 {
            let last = firsts[firsts.len() - 1];
            let path = segment::log_path(&dir, last);
            let len = fs
                .open(&path, OpenMode::Read)
                .and_then(|f| f.len())
                .at(&path)?;
            if len >= HEADER_LEN {
                break;
            }
            fs.remove_file(&path).at(&path)?;
            let index_path = segment::index_path(&dir, last);
            if fs.exists(&index_path) {
                fs.remove_file(&index_path).at(&index_path)?;
            }
            events.push(RecoveryEvent::EmptySegmentRemoved { path });
            firsts.pop();
        }
        let mut segments = Vec::with_capacity(firsts.len());
        for (i, &first) in firsts[..firsts.len() - 1].iter().enumerate() {
            let next_first = firsts[i + 1];
            segments.push(Arc::new(open_sealed(
                &*fs,
                &dir,
                first,
                next_first,
                &config,
                &mut events,
            )?));
        }
        let last_first = firsts[firsts.len() - 1];
        let (active, writer) =
            open_active(&*fs, &dir, last_first, &config, salt, now, &mut events)?;
        segments.push(active);
        let durable_end = writer.next_offset;
        Ok(OpenedLog {
            log: TopicLog {
                core: Arc::new(LogCore {
                    topic: topic.to_string(),
                    dir,
                    fs,
                    config,
                    segments: RwLock::new(segments),
                    writer: Mutex::new(writer),
                    sync_state: Mutex::new(SyncState::default()),
                    sync_done: Condvar::new(),
                    durable_end: AtomicU64::new(durable_end),
                    bytes_appended: AtomicU64::new(0),
                    sync_metrics: Default::default(),
                }),
                group: GroupWriter::default(),
                damage: Mutex::new(Vec::new()),
            },
            events,
        })
    }
}

fn open_sealed(
    fs: &dyn FileSystem,
    dir: &Path,
    first: u64,
    next_first: u64,
    config: &LogConfig,
    events: &mut Vec<RecoveryEvent>,
) -> Result<Segment> {
    let path = segment::log_path(dir, first);
    let index_path = segment::index_path(dir, first);
    let (file, len, header) = read_header(fs, &path)?;
    let named = segment::decode_header(&path, &header)?;
    if named != first {
        return Err(Error::corrupt(
            &path,
            16,
            format!("header names first offset {named}, file name says {first}"),
        ));
    }
    let (mut entries, damaged) = load_index(fs, &index_path)?;
    if damaged || !entries_fit(&entries, first, Some(next_first), len) {
        // Rebuild the index from the records; a bad record in a sealed segment is an error.
        let scanned = scan(&*file, &path, len, HEADER_LEN, first, 0, config)?;
        if let Some(reason) = scanned.stopped {
            return Err(Error::corrupt(&path, scanned.end, reason));
        }
        if scanned.next_offset != next_first {
            return Err(Error::corrupt(
                &path,
                scanned.end,
                format!(
                    "segment ends at offset {}, the next segment starts at {next_first}",
                    scanned.next_offset
                ),
            ));
        }
        entries = scanned.entries;
        fs.write_atomic(&index_path, &encode_index(&entries))
            .at(&index_path)?;
        events.push(RecoveryEvent::IndexRepaired {
            path: index_path.clone(),
        });
    }
    Ok(Segment::new_sealed(
        first, path, index_path, len, next_first, entries,
    ))
}

fn open_active(
    fs: &dyn FileSystem,
    dir: &Path,
    first: u64,
    config: &LogConfig,
    salt: u64,
    now: i64,
    events: &mut Vec<RecoveryEvent>,
) -> Result<(Arc<Segment>, Writer)> {
    let path = segment::log_path(dir, first);
    let index_path = segment::index_path(dir, first);
    let (file, mut len, header) = read_header(fs, &path)?;
    if len < HEADER_LEN {
        // Created just before a crash: no record can be in it.
        file.set_len(0).at(&path)?;
        file.write_all_at(&segment::encode_header(first), 0)
            .at(&path)?;
        file.sync_data().at(&path)?;
        len = HEADER_LEN;
        events.push(RecoveryEvent::HeaderRewritten { path: path.clone() });
    } else {
        let named = segment::decode_header(&path, &header)?;
        if named != first {
            return Err(Error::corrupt(
                &path,
                16,
                format!("header names first offset {named}, file name says {first}"),
            ));
        }
    }
    let (mut entries, mut damaged) = load_index(fs, &index_path)?;
    let loaded = entries.len();
    if !entries_fit(&entries, first, None, len) {
        entries.retain(|e| e.position >= HEADER_LEN && e.position < len && e.offset >= first);
        damaged = true;
    }
    // Start at the last index entry whose record checks out (entries may point at bytes a
    // power cut never wrote).
    let mut start = (HEADER_LEN, first, 0u64);
    while let Some(e) = entries.last().copied() {
        if record_checks_out(&*file, &path, len, e.position, e.offset, config)? {
            start = (e.position, e.offset, 0);
            break;
        }
        entries.pop();
        damaged = true;
    }
    let (start_pos, start_offset, since) = start;
    let since = if start_pos == HEADER_LEN { since } else { 0 };
    let scanned = scan(&*file, &path, len, start_pos, start_offset, since, config)?;
    // The entry we started from is already in `entries`; the scan re-creates entries only
    // after it (its since_index starts at 0 there, so the first record is not re-indexed).
    let mut rebuilt: Vec<IndexEntry> = scanned
        .entries
        .into_iter()
        .filter(|e| e.position > start_pos)
        .collect();
    let added = !rebuilt.is_empty();
    entries.append(&mut rebuilt);
    // Zeros from the last record to the end of the file are space the writer prepared
    // (see `prepare.rs`): the log ends at the last record, and the writer reuses the space.
    let file_len = len;
    let prepared = scanned.end < len && is_zero_tail(&*file, scanned.end, len).at(&path)?;
    if prepared {
        len = scanned.end;
    } else if scanned.end < len {
        file.set_len(scanned.end).at(&path)?;
        events.push(RecoveryEvent::TruncatedTail {
            path: path.clone(),
            position: scanned.end,
            dropped_bytes: len - scanned.end,
            reason: scanned
                .stopped
                .unwrap_or_else(|| "incomplete record".to_string()),
        });
        len = scanned.end;
    }
    file.sync_data().at(&path)?;
    let index_bytes = encode_index(&entries);
    if damaged || added || entries.len() != loaded {
        fs.write_atomic(&index_path, &index_bytes).at(&index_path)?;
        if damaged && loaded > 0 {
            events.push(RecoveryEvent::IndexRepaired {
                path: index_path.clone(),
            });
        }
    }
    let index_file = fs.open(&index_path, OpenMode::ReadWrite).at(&index_path)?;
    let last_timestamp = scanned
        .last_timestamp
        .or(entries.last().map(|e| e.timestamp))
        .unwrap_or(0);
    let segment = Arc::new(Segment::new_active(
        first,
        path,
        index_path,
        file.clone(),
        len,
        scanned.next_offset,
        entries,
    ));
    let mut writer = Writer::new(
        segment.clone(),
        file,
        index_file,
        len,
        index_bytes.len() as u64,
        scanned.next_offset,
        last_timestamp,
        salt,
        now,
    );
    writer.since_index = scanned.since_index;
    if prepared {
        writer.prepared_end = file_len;
    }
    Ok((segment, writer))
}

/// Whether the single record at `pos` is intact and holds `offset`.
fn record_checks_out(
    file: &dyn FsFile,
    path: &Path,
    len: u64,
    pos: u64,
    offset: u64,
    config: &LogConfig,
) -> Result<bool> {
    if pos >= len {
        return Ok(false);
    }
    let want = (len - pos).min(record::record_len(config.max_body) as u64) as usize;
    let mut head = vec![0u8; want.min(record::RECORD_HEADER_LEN)];
    file.read_exact_at(&mut head, pos).at(path)?;
    if head.len() < 4 {
        return Ok(false);
    }
    let need = (u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize + 8).min(want);
    let mut buf = vec![0u8; need];
    file.read_exact_at(&mut buf, pos).at(path)?;
    Ok(
        matches!(record::decode(&Bytes::from(buf), config.max_body), Ok((m, _)) if m.offset == offset),
    )
}
