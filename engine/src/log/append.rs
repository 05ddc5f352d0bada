//! The write side of a topic log: batched appends (one write per batch), segment rolling,
//! and group commit (concurrent appenders waiting for durability share one fsync).
//!
//! Records are first *staged* (encoded into the writer's buffer with their offsets, ids and
//! timestamps) and then written with one positional write; only a successful write moves the
//! writer's position. Inline appends stage one batch; the writer thread ([`super::group`])
//! stages everything that queued up and writes it at once.

use super::group::Completion;
use super::{LogCore, Segment, TopicLog};
use crate::error::{Error, IoContext, Result};
use crate::fs::{FsFile, OpenMode};
use crate::id::MessageId;
use crate::index::IndexEntry;
use crate::record;
use crate::segment::{self, HEADER_LEN};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// State only the appender (holding the writer lock) touches.
#[derive(Debug)]
pub(super) struct Writer {
    pub active: Arc<Segment>,
    pub file: Arc<dyn FsFile>,
    pub index_file: Arc<dyn FsFile>,
    /// End of the last complete record in the active segment (the file may be longer: see
    /// `prepared_end`).
    pub pos: u64,
    /// End of the zeros already written and fsynced past `pos` (`pos` when none; see
    /// [`super::prepare`]).
    pub prepared_end: u64,
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
    /// Staged records, written at `pos` by the next [`LogCore::write_staged`].
    buf: Vec<u8>,
    /// Index entries of the staged records, written at `index_pos`.
    index_buf: Vec<u8>,
    /// Where the log will be once the staged records are written.
    staged: Staged,
}

/// The writer's position as it will be after the staged records are written.
#[derive(Debug, Clone, Copy, Default)]
struct Staged {
    next_offset: u64,
    last_timestamp: i64,
    since_index: u64,
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
            prepared_end: pos,
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
            staged: Staged::default(),
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
    /// batch crosses `sync.every`) once they are fsynced too. Under a strict policy the batch
    /// goes through the log's writer thread and shares its write and fsync with whatever
    /// other appenders queued meanwhile (see [`TopicLog::submit`]).
    pub fn append<B: AsRef<[u8]>>(
        &self,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
    ) -> Result<Appended> {
        if !self.core.config.sync.is_strict() || bodies.is_empty() {
            return self.core.append_inline(bodies, deliver_at, now);
        }
        let (done, result) = std::sync::mpsc::sync_channel(1);
        self.submit(
            bodies,
            deliver_at,
            now,
            Box::new(move |r| {
                let _ = done.send(r);
            }),
        );
        result
            .recv()
            .unwrap_or_else(|_| Err(Error::WriterStopped(self.core.topic.clone())))
    }

    /// Appends a batch like [`TopicLog::append`], but reports the result to `done` instead of
    /// returning it, so the caller need not block: under a strict sync policy the batch is
    /// queued for the log's writer thread, which writes everything queued with one write and
    /// one fsync and then calls every covered appender's `done` (after the fsync; a failed
    /// write or fsync fails exactly the appenders it covered). Otherwise `done` is called
    /// before this returns. `done` is called exactly once.
    pub fn submit<B: AsRef<[u8]>>(
        &self,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
        done: Completion,
    ) {
        if let Err(e) = self.core.check_sizes(bodies) {
            return done(Err(e));
        }
        if !self.core.config.sync.is_strict() || bodies.is_empty() {
            return done(self.core.append_inline(bodies, deliver_at, now));
        }
        self.group.send(&self.core, bodies, deliver_at, now, done);
    }

    /// Returns once every offset below `end` is fsynced. Concurrent callers share fsyncs: one
    /// leader syncs everything written so far while the others wait for its result.
    pub fn sync_to(&self, end: u64, now: i64) -> Result<()> {
        self.core.sync_to(end, now)
    }

    /// Fsyncs if the sync timeout has passed with unsynced messages (called periodically).
    pub fn sync_if_due(&self, now: i64) -> Result<()> {
        self.core.sync_if_due(now)
    }

    /// Fsyncs everything written (on close).
    pub fn sync_all(&self, now: i64) -> Result<()> {
        self.core.sync_all(now)
    }
}

impl LogCore {
    fn check_sizes<B: AsRef<[u8]>>(&self, bodies: &[B]) -> Result<()> {
        for body in bodies {
            let size = body.as_ref().len();
            if size > self.config.max_body {
                return Err(Error::MessageTooLarge {
                    size,
                    max: self.config.max_body,
                });
            }
        }
        Ok(())
    }

    fn poisoned(&self, w: &Writer) -> Option<Error> {
        w.poisoned.as_ref().map(|cause| Error::Poisoned {
            topic: self.topic.clone(),
            cause: cause.clone(),
        })
    }

    /// [`TopicLog::append`] on the caller's thread: stage, write, and fsync when due.
    fn append_inline<B: AsRef<[u8]>>(
        &self,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
    ) -> Result<Appended> {
        self.check_sizes(bodies)?;
        let (appended, end, needs_sync) = {
            let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = self.poisoned(&w) {
                return Err(e);
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
            let appended = self.stage(&mut w, bodies.iter().map(|b| b.as_ref()), deliver_at, now);
            self.write_staged(&mut w)?;
            let end = w.next_offset;
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

    /// Group commit (the writer thread's work): stages every queued batch, writes them with
    /// one write (one per segment, should the group cross a roll), fsyncs once, makes the
    /// records visible, then completes every batch. A failure fails exactly the batches the
    /// failed write or fsync covered. `group` is empty afterwards.
    pub(super) fn commit_group(&self, group: &mut Vec<super::group::Request>) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut covered: Vec<(Completion, Appended)> = Vec::with_capacity(group.len());
        let mut now = i64::MIN;
        for mut request in group.drain(..) {
            let Some(done) = request.take_done() else {
                continue;
            };
            if let Some(e) = self.poisoned(&w) {
                done(Err(e));
                continue;
            }
            now = now.max(request.now);
            let at = w.pos + w.buf.len() as u64;
            if at >= self.config.max_bytes_per_file && at > HEADER_LEN {
                // Rolling fsyncs the old segment: what is staged is durable once it succeeds.
                let rolled = self
                    .write_staged(&mut w)
                    .and_then(|()| self.roll(&mut w, now));
                let failed = rolled.as_ref().err().map(Error::duplicate);
                finish(&mut covered, rolled);
                if let Some(e) = failed {
                    done(Err(e));
                    continue;
                }
            }
            let appended = self.stage(&mut w, request.bodies(), request.deliver_at, request.now);
            covered.push((done, appended));
        }
        if !covered.is_empty() {
            let result = self
                .write_staged(&mut w)
                .and_then(|()| self.sync_locked(&mut w, now));
            finish(&mut covered, result);
        }
    }

    /// Fsyncs the active segment while holding the writer (the writer thread, which is the
    /// only appender under a strict policy), then makes everything written visible. The index
    /// is not synced here: it is a hint that recovery checks and rebuilds.
    fn sync_locked(&self, w: &mut Writer, now: i64) -> Result<()> {
        let started = Instant::now();
        if let Err(e) = w.file.sync_data() {
            w.poisoned = Some(format!("fsync of {} failed: {e}", w.active.path.display()));
            return Err(Error::io(&w.active.path, e));
        }
        self.mark_durable(w.next_offset, started.elapsed());
        w.active.publish(w.pos, w.next_offset);
        w.unsynced = 0;
        w.last_sync = now;
        Ok(())
    }

    /// Records that everything below `end` is fsynced by an fsync that took `took`, counting
    /// it and the messages it newly covered.
    fn mark_durable(&self, end: u64, took: Duration) {
        let before = self.durable_end.fetch_max(end, Ordering::AcqRel);
        if end > before {
            self.sync_metrics.record(took, end - before);
        }
    }

    /// Encodes a batch after whatever is staged already. Nothing is written yet.
    fn stage<'a>(
        &self,
        w: &mut Writer,
        bodies: impl ExactSizeIterator<Item = &'a [u8]>,
        deliver_at: i64,
        now: i64,
    ) -> Appended {
        if w.buf.is_empty() {
            w.index_buf.clear();
            w.staged = Staged {
                next_offset: w.next_offset,
                last_timestamp: w.last_timestamp,
                since_index: w.since_index,
            };
        }
        let timestamp = now.max(w.staged.last_timestamp);
        let first_offset = w.staged.next_offset;
        let count = bodies.len() as u64;
        let mut since_index = w.staged.since_index;
        for (i, body) in bodies.enumerate() {
            let offset = first_offset + i as u64;
            let position = w.pos + w.buf.len() as u64;
            if since_index >= self.config.index_interval_bytes {
                IndexEntry {
                    offset,
                    position,
                    timestamp,
                }
                .encode(&mut w.index_buf);
                since_index = 0;
            }
            let before = w.buf.len();
            record::encode(
                &mut w.buf,
                offset,
                &MessageId::for_offset(w.salt, offset),
                timestamp,
                deliver_at,
                body,
            );
            since_index += (w.buf.len() - before) as u64;
        }
        w.staged = Staged {
            next_offset: first_offset + count,
            last_timestamp: timestamp,
            since_index,
        };
        Appended {
            first_offset,
            count,
            timestamp,
        }
    }

    /// Writes the staged records (and their index entries) with one write each and moves the
    /// writer past them. On failure nothing moves and the staged records are dropped.
    fn write_staged(&self, w: &mut Writer) -> Result<()> {
        if w.buf.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut w.buf);
        let mut index_buf = std::mem::take(&mut w.index_buf);
        let result = self.write_out(w, &buf, &index_buf);
        if result.is_ok() {
            let new_entries = index_buf.len() / crate::index::ENTRY_LEN;
            if new_entries > 0 {
                let mut index = w.active.index.write().unwrap_or_else(|e| e.into_inner());
                for chunk in index_buf.chunks_exact(crate::index::ENTRY_LEN) {
                    if let Some(entry) = <&[u8; crate::index::ENTRY_LEN]>::try_from(chunk)
                        .ok()
                        .and_then(IndexEntry::decode)
                    {
                        index.push(entry);
                    }
                }
            }
            let written = buf.len() as u64;
            w.pos += written;
            w.index_pos += index_buf.len() as u64;
            w.since_index = w.staged.since_index;
            w.unsynced += w.staged.next_offset - w.next_offset;
            w.next_offset = w.staged.next_offset;
            w.last_timestamp = w.staged.last_timestamp;
            self.bytes_appended.fetch_add(written, Ordering::Relaxed);
        }
        buf.clear();
        index_buf.clear();
        w.buf = buf;
        w.index_buf = index_buf;
        result
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
            // Cutting back also dropped any prepared space past `pos`.
            w.prepared_end = w.pos;
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
        // A sealed segment ends at its last record: prepared space is cut off first.
        if let Err(e) = self.cut_prepared(w) {
            w.poisoned = Some(format!("cutting prepared space off a segment failed: {e}"));
            return Err(e);
        }
        let started = Instant::now();
        let synced = w.file.sync_data().and_then(|()| w.index_file.sync_data());
        let sync_took = started.elapsed();
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
        self.mark_durable(first, sync_took);
        w.file = file;
        w.index_file = index_file;
        w.pos = HEADER_LEN;
        w.prepared_end = HEADER_LEN;
        w.index_pos = 0;
        w.since_index = 0;
        w.unsynced = 0;
        w.last_sync = now;
        Ok(())
    }

    /// Returns once every offset below `end` is fsynced. Concurrent callers share fsyncs: one
    /// leader syncs everything written so far while the others wait for its result.
    fn sync_to(&self, end: u64, now: i64) -> Result<()> {
        loop {
            if self.durable_end.load(Ordering::Acquire) >= end {
                return Ok(());
            }
            let mut state = self.sync_state.lock().unwrap_or_else(|e| e.into_inner());
            if self.durable_end.load(Ordering::Acquire) >= end {
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
        let started = Instant::now();
        if let Err(e) = file.sync_data() {
            let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            w.poisoned = Some(format!("fsync of {} failed: {e}", segment.path.display()));
            return Err(Error::io(&segment.path, e));
        }
        // The index is a hint rebuilt on recovery; syncing it is best effort.
        let _ = index_file.sync_data();
        self.mark_durable(end, started.elapsed());
        segment.publish(pos, end);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.unsynced = w.next_offset.saturating_sub(end);
        w.last_sync = now;
        Ok(())
    }

    /// Fsyncs if the sync timeout has passed with unsynced messages (called periodically).
    fn sync_if_due(&self, now: i64) -> Result<()> {
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

    /// Fsyncs everything written and cuts prepared space off the active segment (on close),
    /// so a cleanly closed log's files end at their last record.
    fn sync_all(&self, now: i64) -> Result<()> {
        let end = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_offset;
        self.sync_to(end, now)?;
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.cut_prepared(&mut w)
    }
}

/// Completes every covered batch with `result` (each failure gets its own copy of the error).
fn finish(covered: &mut Vec<(Completion, Appended)>, result: Result<()>) {
    for (done, appended) in covered.drain(..) {
        match &result {
            Ok(()) => done(Ok(appended)),
            Err(e) => done(Err(e.duplicate())),
        }
    }
}
