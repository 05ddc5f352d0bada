//! The write side of a topic log: batched appends (one write per batch), segment rolling,
//! and group commit (concurrent appenders waiting for durability share one fsync).

use super::{Segment, TopicLog};
use crate::error::{Error, IoContext, Result};
use crate::fs::{FsFile, OpenMode};
use crate::id::MessageId;
use crate::index::IndexEntry;
use crate::record;
use crate::segment::{self, HEADER_LEN};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// State only the appender (holding the writer lock) touches.
#[derive(Debug)]
pub(super) struct Writer {
    pub active: Arc<Segment>,
    pub file: Arc<dyn FsFile>,
    pub index_file: Arc<dyn FsFile>,
    /// Length of the active segment file (end of the last complete record).
    pub pos: u64,
    pub index_pos: u64,
    pub next_offset: u64,
    pub last_timestamp: i64,
    /// Record bytes since the last index entry.
    pub since_index: u64,
    /// Messages appended since the last fsync.
    pub unsynced: u64,
    pub last_sync: i64,
    pub poisoned: Option<String>,
    pub salt: u64,
    buf: Vec<u8>,
    index_buf: Vec<u8>,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        active: Arc<Segment>,
        file: Arc<dyn FsFile>,
        index_file: Arc<dyn FsFile>,
        pos: u64,
        index_pos: u64,
        next_offset: u64,
        last_timestamp: i64,
        salt: u64,
        now: i64,
    ) -> Self {
        Writer {
            active,
            file,
            index_file,
            pos,
            index_pos,
            next_offset,
            last_timestamp,
            since_index: 0,
            unsynced: 0,
            last_sync: now,
            poisoned: None,
            salt,
            buf: Vec::new(),
            index_buf: Vec::new(),
        }
    }
}

/// Group-commit coordination: at most one fsync runs at a time; appenders that need theirs
/// wait for it, and the next leader covers everyone who arrived meanwhile.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    syncing: bool,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first message of the batch.
    pub first_offset: u64,
    /// Number of messages appended.
    pub count: u64,
    /// Publish timestamp given to the batch.
    pub timestamp: i64,
}

impl TopicLog {
    /// Appends a batch of message bodies with one write. Every body gets the same publish
    /// timestamp (`now`, kept monotonic along the log) and `deliver_at` (0 for immediate).
    /// Returns once the bytes are in the segment file; with a strict sync policy (or when this
    /// batch crosses `sync.every`) once they are fsynced too.
    pub fn append<B: AsRef<[u8]>>(
        &self,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
    ) -> Result<Appended> {
        for body in bodies {
            let size = body.as_ref().len();
            if size > self.config.max_body {
                return Err(Error::MessageTooLarge {
                    size,
                    max: self.config.max_body,
                });
            }
        }
        let (appended, end, needs_sync) = {
            let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cause) = &w.poisoned {
                return Err(Error::Poisoned {
                    topic: self.topic.clone(),
                    cause: cause.clone(),
                });
            }
            if bodies.is_empty() {
                return Ok(Appended {
                    first_offset: w.next_offset,
                    count: 0,
                    timestamp: w.last_timestamp,
                });
            }
            if w.pos >= self.config.max_bytes_per_file && w.pos > HEADER_LEN {
                self.roll(&mut w, now)?;
            }
            let appended = self.write_batch(&mut w, bodies, deliver_at, now)?;
            let end = w.next_offset;
            w.unsynced += appended.count;
            let sync = self.config.sync;
            let due_by_count = sync.every > 0 && w.unsynced >= sync.every;
            let due_by_time = now.saturating_sub(w.last_sync) >= sync.timeout.as_nanos() as i64;
            if !sync.is_strict() {
                w.active.publish(w.pos, end);
            }
            (appended, end, due_by_count || due_by_time)
        };
        if needs_sync {
            self.sync_to(end, now)?;
        }
        Ok(appended)
    }

    fn write_batch<B: AsRef<[u8]>>(
        &self,
        w: &mut Writer,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
    ) -> Result<Appended> {
        let timestamp = now.max(w.last_timestamp);
        let first_offset = w.next_offset;
        let mut buf = std::mem::take(&mut w.buf);
        let mut index_buf = std::mem::take(&mut w.index_buf);
        buf.clear();
        index_buf.clear();
        let mut since_index = w.since_index;
        for (i, body) in bodies.iter().enumerate() {
            let offset = first_offset + i as u64;
            let position = w.pos + buf.len() as u64;
            if since_index >= self.config.index_interval_bytes {
                IndexEntry {
                    offset,
                    position,
                    timestamp,
                }
                .encode(&mut index_buf);
                since_index = 0;
            }
            let before = buf.len();
            record::encode(
                &mut buf,
                offset,
                &MessageId::for_offset(w.salt, offset),
                timestamp,
                deliver_at,
                body.as_ref(),
            );
            since_index += (buf.len() - before) as u64;
        }
        let result = self.write_out(w, &buf, &index_buf);
        let written = buf.len() as u64;
        w.buf = buf;
        w.index_buf = index_buf;
        result?;
        let new_entries = w.index_buf.len() / crate::index::ENTRY_LEN;
        if new_entries > 0 {
            let mut index = w.active.index.write().unwrap_or_else(|e| e.into_inner());
            for chunk in w.index_buf.chunks_exact(crate::index::ENTRY_LEN) {
                if let Some(entry) = <&[u8; crate::index::ENTRY_LEN]>::try_from(chunk)
                    .ok()
                    .and_then(IndexEntry::decode)
                {
                    index.push(entry);
                }
            }
        }
        w.pos += written;
        w.index_pos += w.index_buf.len() as u64;
        w.since_index = since_index;
        w.next_offset += bodies.len() as u64;
        w.last_timestamp = timestamp;
        self.bytes_appended.fetch_add(written, Ordering::Relaxed);
        Ok(Appended {
            first_offset,
            count: bodies.len() as u64,
            timestamp,
        })
    }

    /// Writes a batch's records, then its index entries. On failure both files are cut back
    /// to where they were, so a failed append leaves no partial record behind (a full disk
    /// clears and appends resume); if even that fails, the log is poisoned.
    fn write_out(&self, w: &mut Writer, records: &[u8], index: &[u8]) -> Result<()> {
        let path = &w.active.path;
        let result = w.file.write_all_at(records, w.pos).at(path).and_then(|()| {
            if index.is_empty() {
                Ok(())
            } else {
                w.index_file
                    .write_all_at(index, w.index_pos)
                    .at(&w.active.index_path)
            }
        });
        if let Err(err) = result {
            let undo = w
                .file
                .set_len(w.pos)
                .and_then(|()| w.index_file.set_len(w.index_pos));
            if let Err(undo_err) = undo {
                w.poisoned = Some(format!(
                    "{err}; cutting back the partial write failed too: {undo_err}"
                ));
            }
            return Err(err);
        }
        Ok(())
    }

    /// Seals the active segment (fsynced, immutable) and starts a new one.
    pub(super) fn roll(&self, w: &mut Writer, now: i64) -> Result<()> {
        let synced = w.file.sync_data().and_then(|()| w.index_file.sync_data());
        if let Err(e) = synced {
            w.poisoned = Some(format!(
                "fsync failed while sealing {}: {e}",
                w.active.path.display()
            ));
            return Err(Error::io(&w.active.path, e));
        }
        let first = w.next_offset;
        let path = segment::log_path(&self.dir, first);
        let index_path = segment::index_path(&self.dir, first);
        let file = self.fs.open(&path, OpenMode::CreateTruncate).at(&path)?;
        file.write_all_at(&segment::encode_header(first), 0)
            .at(&path)?;
        let index_file = self
            .fs
            .open(&index_path, OpenMode::CreateTruncate)
            .at(&index_path)?;
        self.fs.sync_dir(&self.dir).at(&self.dir)?;
        let next = Arc::new(Segment::new_active(
            first,
            path,
            index_path,
            file.clone(),
            HEADER_LEN,
            first,
            Vec::new(),
        ));
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(next.clone());
        let old = std::mem::replace(&mut w.active, next);
        old.seal(w.pos, first);
        self.durable_end.fetch_max(first, Ordering::AcqRel);
        w.file = file;
        w.index_file = index_file;
        w.pos = HEADER_LEN;
        w.index_pos = 0;
        w.since_index = 0;
        w.unsynced = 0;
        w.last_sync = now;
        Ok(())
    }

    /// Returns once every offset below `end` is fsynced. Concurrent callers share fsyncs: one
    /// leader syncs everything written so far while the others wait for its result.
    pub fn sync_to(&self, end: u64, now: i64) -> Result<()> {
        loop {
            if self.durable_end() >= end {
                return Ok(());
            }
            let mut state = self.sync_state.lock().unwrap_or_else(|e| e.into_inner());
            if self.durable_end() >= end {
                return Ok(());
            }
            if state.syncing {
                let _unused = self
                    .sync_done
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.syncing = true;
            drop(state);
            let result = self.sync_once(now);
            let mut state = self.sync_state.lock().unwrap_or_else(|e| e.into_inner());
            state.syncing = false;
            drop(state);
            self.sync_done.notify_all();
            result?;
        }
    }

    /// One fsync of everything written so far (the group-commit leader's work).
    fn sync_once(&self, now: i64) -> Result<()> {
        let (file, index_file, segment, pos, end) = {
            let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cause) = &w.poisoned {
                return Err(Error::Poisoned {
                    topic: self.topic.clone(),
                    cause: cause.clone(),
                });
            }
            (
                w.file.clone(),
                w.index_file.clone(),
                w.active.clone(),
                w.pos,
                w.next_offset,
            )
        };
        if let Err(e) = file.sync_data() {
            let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            w.poisoned = Some(format!("fsync of {} failed: {e}", segment.path.display()));
            return Err(Error::io(&segment.path, e));
        }
        // The index is a hint rebuilt on recovery; syncing it is best effort.
        let _ = index_file.sync_data();
        self.durable_end.fetch_max(end, Ordering::AcqRel);
        segment.publish(pos, end);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.unsynced = w.next_offset.saturating_sub(end);
        w.last_sync = now;
        Ok(())
    }

    /// Fsyncs if the sync timeout has passed with unsynced messages (called periodically).
    pub fn sync_if_due(&self, now: i64) -> Result<()> {
        let (due, end) = {
            let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let due = w.unsynced > 0
                && now.saturating_sub(w.last_sync) >= self.config.sync.timeout.as_nanos() as i64;
            (due && w.poisoned.is_none(), w.next_offset)
        };
        if due {
            self.sync_to(end, now)?;
        }
        Ok(())
    }

    /// Fsyncs everything written (on close).
    pub fn sync_all(&self, now: i64) -> Result<()> {
        let end = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_offset;
        self.sync_to(end, now)
    }
}
