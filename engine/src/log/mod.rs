//! A topic's log: an ordered list of segments, appended at the end, read by offset or time,
//! trimmed at the front by retention.

mod append;
mod group;
mod open;
mod prepare;
mod segment_handle;
mod sync_metrics;

pub use append::Appended;
pub use group::Completion;
pub use open::OpenedLog;
pub use sync_metrics::{
    HistogramSnapshot, SyncCounts, FSYNC_MESSAGES_BOUNDS, FSYNC_SECONDS_BOUNDS,
};

use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::options::{Retention, SyncPolicy};
use crate::record::{self, Message, RECORD_HEADER_LEN};
use crate::recovery::RecoveryEvent;
use crate::segment::HEADER_LEN;
use append::{SyncState, Writer};
use group::GroupWriter;
use segment_handle::Segment;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use sync_metrics::SyncMetrics;

/// Settings a log needs from the engine's options.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll segments at this size.
    pub max_bytes_per_file: u64,
    /// Bytes between index entries.
    pub index_interval_bytes: u64,
    /// Fsync policy.
    pub sync: SyncPolicy,
    /// Largest body accepted.
    pub max_body: usize,
}

/// One topic's segmented, checksummed log.
#[derive(Debug)]
pub struct TopicLog {
    /// What the append path needs, shared with the log's writer thread.
    core: Arc<LogCore>,
    /// The writer thread that group-commits strict (`sync.every == 1`) appends.
    group: GroupWriter,
    /// Damage readers skipped (see [`RecoveryEvent::SkippedDamage`]), each reported once.
    damage: Mutex<Vec<RecoveryEvent>>,
}

/// The log's state the append path (inline or on the writer thread) works on.
#[derive(Debug)]
struct LogCore {
    topic: String,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    config: LogConfig,
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<Writer>,
    sync_state: Mutex<SyncState>,
    sync_done: Condvar,
    /// Everything below this offset is fsynced.
    durable_end: AtomicU64,
    /// Bytes appended over the log's lifetime in this process (for write-amplification checks).
    bytes_appended: AtomicU64,
    /// What the log's fsyncs cost and covered since it was opened.
    sync_metrics: SyncMetrics,
}

/// Where a reader is in the log; kept by each channel so sequential reads need no lookups.
#[derive(Debug, Clone, Default)]
pub struct LogReader {
    offset: u64,
    place: Option<(Arc<Segment>, u64)>,
}

impl LogReader {
    /// A reader that will start at `offset`.
    pub fn at(offset: u64) -> Self {
        LogReader {
            offset,
            place: None,
        }
    }

    /// The next offset this reader returns.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Drop for TopicLog {
    fn drop(&mut self) {
        // Whatever is queued is still written and completed before the files close.
        self.group.stop();
    }
}

impl TopicLog {
    /// The topic this log belongs to.
    pub fn topic(&self) -> &str {
        &self.core.topic
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.core.dir
    }

    fn segments(&self) -> Vec<Arc<Segment>> {
        self.core
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn last_segment(&self) -> Option<Arc<Segment>> {
        self.core
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .cloned()
    }

    /// Oldest offset still in the log.
    pub fn first_offset(&self) -> u64 {
        let segments = self.core.segments.read().unwrap_or_else(|e| e.into_inner());
        segments.first().map_or(0, |s| s.first_offset)
    }

    /// One past the newest offset readers can see.
    pub fn end_offset(&self) -> u64 {
        self.last_segment().map_or(0, |s| s.end_offset())
    }

    /// Everything below this offset has been fsynced.
    pub fn durable_end(&self) -> u64 {
        self.core.durable_end.load(Ordering::Acquire)
    }

    /// Bytes of all segments (headers and records).
    pub fn total_bytes(&self) -> u64 {
        self.segments().iter().map(|s| s.visible_len()).sum()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.core
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Bytes written to segment files by appends since the log was opened.
    pub fn bytes_appended(&self) -> u64 {
        self.core.bytes_appended.load(Ordering::Relaxed)
    }

    /// Fsyncs that made messages durable, and how many messages they covered, since the log
    /// was opened (their ratio is the group commit's messages per fsync).
    pub fn sync_counts(&self) -> SyncCounts {
        self.core.sync_metrics.snapshot()
    }

    /// Publish time of the oldest retained message, if there is one.
    pub fn first_timestamp(&self) -> Result<Option<i64>> {
        for segment in self.segments() {
            if let Some(t) = segment.first_timestamp(&*self.core.fs)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    fn before_retention(&self) -> Error {
        Error::BeforeRetention {
            earliest_offset: self.first_offset(),
            earliest_timestamp: self.first_timestamp().ok().flatten().unwrap_or(0),
        }
    }

    /// Reads up to `max_count` messages (and about `max_bytes`) from where `reader` is,
    /// appending them to `out`. Returns how many were read (0 at the end of the log). A read
    /// below the oldest retained offset fails with [`Error::BeforeRetention`].
    pub fn read(
        &self,
        reader: &mut LogReader,
        max_bytes: usize,
        max_count: usize,
        out: &mut VecDeque<Message>,
    ) -> Result<usize> {
        let mut count = 0;
        let mut bytes = 0;
        while count < max_count && bytes < max_bytes {
            let (segment, position) = self.place(reader)?;
            if reader.offset >= segment.end_offset() {
                if !segment.is_sealed() {
                    break;
                }
                let next = self.segment_after(&segment)?;
                if next.first_offset < reader.offset {
                    return Err(Error::corrupt(
                        &next.path,
                        0,
                        format!(
                            "segment overlaps the previous one (which ends at {})",
                            reader.offset
                        ),
                    ));
                }
                if next.first_offset > reader.offset {
                    self.report_skipped(
                        &next.path,
                        0,
                        "a segment file is missing",
                        reader.offset,
                        next.first_offset,
                    );
                    reader.offset = next.first_offset;
                }
                reader.place = Some((next, HEADER_LEN));
                continue;
            }
            let want = (max_bytes - bytes).max(RECORD_HEADER_LEN);
            let mut chunk = segment.read_bytes(&*self.core.fs, position, want)?;
            let mut at = 0usize;
            let mut pos = position;
            while count < max_count && reader.offset < segment.end_offset() {
                match record::decode(&chunk.slice(at..), self.core.config.max_body) {
                    Ok((m, len)) => {
                        if m.offset != reader.offset {
                            let reason =
                                format!("expected offset {}, found {}", reader.offset, m.offset);
                            pos = self.skip_damage(&segment, pos, reader, &reason)?;
                            break;
                        }
                        at += len;
                        pos += len as u64;
                        bytes += len;
                        count += 1;
                        reader.offset += 1;
                        out.push_back(m);
                    }
                    Err(record::DecodeError::Truncated { needed, .. })
                        if at == 0 && chunk.len() < needed =>
                    {
                        // One record larger than the read-ahead: read exactly that record.
                        let bigger = segment.read_bytes(&*self.core.fs, position, needed)?;
                        if bigger.len() < needed {
                            let reason = "record extends past the end of the segment";
                            pos = self.skip_damage(&segment, pos, reader, reason)?;
                            break;
                        }
                        chunk = bigger;
                    }
                    Err(record::DecodeError::Truncated { .. }) if at > 0 => break,
                    Err(e) => {
                        pos = self.skip_damage(&segment, pos, reader, &e.to_string())?;
                        break;
                    }
                }
                if bytes >= max_bytes {
                    break;
                }
            }
            reader.place = Some((segment, pos));
        }
        Ok(count)
    }

    /// Reads the single message at `offset` (for redelivering a requeued message); `None`
    /// when it is not there (past the end, or unreadable and skipped).
    pub fn read_one(&self, offset: u64) -> Result<Option<Message>> {
        let mut reader = LogReader::at(offset);
        let mut out = VecDeque::with_capacity(1);
        self.read(&mut reader, RECORD_HEADER_LEN, 1, &mut out)?;
        Ok(out.pop_front().filter(|m| m.offset == offset))
    }

    /// Damage readers have skipped so far (each place once, whichever channel met it first).
    pub fn skipped_damage(&self) -> Vec<RecoveryEvent> {
        self.damage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records (and logs, once per place) data a reader had to skip.
    fn report_skipped(
        &self,
        path: &std::path::Path,
        position: u64,
        reason: &str,
        from: u64,
        to: u64,
    ) {
        let event = RecoveryEvent::SkippedDamage {
            path: path.to_path_buf(),
            position,
            reason: reason.to_string(),
            from,
            to,
        };
        let mut damage = self.damage.lock().unwrap_or_else(|e| e.into_inner());
        if !damage.contains(&event) {
            tracing::error!("{event}");
            damage.push(event);
        }
    }

    /// A segment has an unreadable record at `pos` (readers see only complete records, so in
    /// the active segment too this is damage, not a write in progress): move `reader` to the
    /// next record that checks out (or the end of a sealed segment), log what is skipped, and
    /// return the new position. Serving what is sound beats refusing the whole channel;
    /// `nsq_log repair` quarantines the damage for good.
    fn skip_damage(
        &self,
        segment: &Arc<Segment>,
        pos: u64,
        reader: &mut LogReader,
        reason: &str,
    ) -> Result<u64> {
        // Whether the segment was sealed before its bytes were read: only then are its
        // visible length and end offset final, and consistent with what was read.
        let sealed = segment.is_sealed();
        let rest = segment.read_bytes(&*self.core.fs, pos, usize::MAX)?;
        let (new_pos, new_offset) = match crate::check::scan::resync(&rest, 0, reader.offset) {
            Some((q, offset)) => (pos + q as u64, offset),
            None if sealed => (segment.visible_len(), segment.end_offset()),
            // Damage with no good record after it yet, in the segment being appended: nothing
            // tells which offset the bytes after it will hold, so this read fails (no record
            // is passed over unreported). A record that checks out after it, or the roll
            // sealing the segment, lets the next read skip exactly the damaged span.
            None => return Err(Error::corrupt(&segment.path, pos, reason)),
        };
        self.report_skipped(&segment.path, pos, reason, reader.offset, new_offset);
        reader.offset = new_offset;
        Ok(new_pos)
    }

    /// The segment and byte position of `reader.offset`, looked up through the index when the
    /// reader has no position yet.
    fn place(&self, reader: &mut LogReader) -> Result<(Arc<Segment>, u64)> {
        if let Some((segment, pos)) = &reader.place {
            return Ok((segment.clone(), *pos));
        }
        let target = reader.offset;
        let segment = {
            let segments = self.core.segments.read().unwrap_or_else(|e| e.into_inner());
            let Some(first) = segments.first() else {
                return Err(Error::corrupt(
                    &self.core.dir,
                    0,
                    "topic log has no segments",
                ));
            };
            if target < first.first_offset {
                drop(segments);
                return Err(self.before_retention());
            }
            let i = segments.partition_point(|s| s.first_offset <= target) - 1;
            segments[i].clone()
        };
        let (start_offset, start_pos) = match segment.index_snapshot_floor_by_offset(target) {
            Some(e) => (e.offset, e.position),
            None => (segment.first_offset, HEADER_LEN),
        };
        // Walk forward from the index entry to the target, checking every record on the way.
        let mut walker = LogReader {
            offset: start_offset,
            place: Some((segment.clone(), start_pos)),
        };
        let mut skipped = VecDeque::new();
        while walker.offset < target {
            skipped.clear();
            let remaining = (target - walker.offset) as usize;
            let n = self.read(&mut walker, 64 * 1024, remaining, &mut skipped)?;
            if n == 0 {
                break;
            }
        }
        reader.offset = walker.offset;
        reader.place = walker.place.clone();
        match walker.place {
            Some(place) => Ok(place),
            None => Err(Error::corrupt(
                &segment.path,
                start_pos,
                "could not position reader",
            )),
        }
    }

    fn segment_after(&self, segment: &Segment) -> Result<Arc<Segment>> {
        let segments = self.core.segments.read().unwrap_or_else(|e| e.into_inner());
        let i = segments.partition_point(|s| s.first_offset <= segment.first_offset);
        segments.get(i).cloned().ok_or_else(|| {
            Error::corrupt(
                &segment.path,
                segment.visible_len(),
                "sealed segment has no successor",
            )
        })
    }

    /// The first offset whose publish time is at or after `timestamp` (the end of the log if
    /// none is), found through the sparse indexes.
    pub fn offset_at_time(&self, timestamp: i64) -> Result<u64> {
        let segments = self.segments();
        // The last segment whose first record is older than `timestamp` holds the answer's
        // predecessor; timestamps never decrease along the log.
        let mut start = None;
        for segment in &segments {
            match segment.first_timestamp(&*self.core.fs)? {
                Some(t) if t < timestamp => start = Some(segment.clone()),
                _ => break,
            }
        }
        let Some(segment) = start else {
            return Ok(segments.first().map_or(0, |s| s.first_offset));
        };
        let (offset, pos) = match segment.index_snapshot_floor_by_time(timestamp) {
            Some(e) => (e.offset, e.position),
            None => (segment.first_offset, HEADER_LEN),
        };
        let mut reader = LogReader {
            offset,
            place: Some((segment, pos)),
        };
        let mut batch = VecDeque::new();
        loop {
            batch.clear();
            if self.read(&mut reader, 64 * 1024, 4096, &mut batch)? == 0 {
                return Ok(reader.offset);
            }
            if let Some(m) = batch.iter().find(|m| m.timestamp >= timestamp) {
                return Ok(m.offset);
            }
        }
    }

    /// Deletes whole segments below `floor` (every offset in them finished by every durable
    /// channel) that `retention` does not keep. Never deletes the active segment. Returns the
    /// number of segments deleted.
    pub fn trim(&self, floor: u64, retention: &Retention, now: i64) -> Result<usize> {
        let segments = self.segments();
        // Consumed segments: sealed, and every offset in them below the floor.
        let consumed: Vec<usize> = (0..segments.len().saturating_sub(1))
            .filter(|&i| segments[i + 1].first_offset <= floor)
            .collect();
        let mut keep_from = consumed.len();
        let mut kept_bytes = 0u64;
        for &i in consumed.iter().rev() {
            let newest = segments[i + 1]
                .first_timestamp(&*self.core.fs)?
                .unwrap_or(now);
            let age_ok = retention
                .time_ns
                .is_some_and(|t| now.saturating_sub(newest) <= t);
            kept_bytes += segments[i].visible_len();
            let bytes_ok = retention.bytes.is_some_and(|b| kept_bytes <= b);
            let keep = match (retention.time_ns, retention.bytes) {
                (None, None) => false,
                (Some(_), None) => age_ok,
                (None, Some(_)) => bytes_ok,
                (Some(_), Some(_)) => age_ok && bytes_ok,
            };
            if !keep {
                break;
            }
            keep_from = i;
        }
        let doomed: Vec<Arc<Segment>> = consumed
            .iter()
            .filter(|&&i| i < keep_from)
            .map(|&i| segments[i].clone())
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        {
            let mut list = self
                .core
                .segments
                .write()
                .unwrap_or_else(|e| e.into_inner());
            list.retain(|s| !doomed.iter().any(|d| Arc::ptr_eq(d, s)));
        }
        for segment in &doomed {
            for path in [&segment.path, &segment.index_path] {
                match self.core.fs.remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(path, e)),
                }
            }
        }
        Ok(doomed.len())
    }
}
