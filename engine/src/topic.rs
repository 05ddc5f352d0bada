//! A topic: its log and its channels.

use crate::channel::Channel;
use crate::clock::Clock;
use crate::cursor::ChannelStart;
use crate::error::{Error, Result};
use crate::feed::Feed;
use crate::log::{Appended, LogReader, SyncCounts};
use crate::options::Retention;
use crate::storage::Storage;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A topic's numbers, for `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicStats {
    /// Messages published since the process started.
    pub message_count: u64,
    /// Body bytes published since the process started.
    pub message_bytes: u64,
    /// Oldest retained offset.
    pub first_offset: u64,
    /// One past the newest offset.
    pub end_offset: u64,
    /// Publish time of the oldest retained message (0 if none).
    pub first_timestamp: i64,
    /// Bytes held by the log.
    pub bytes: u64,
    /// NSQ's topic depth: what a first channel would get while the topic has none, and while
    /// it is paused, what was published since (held back from its channels until unpaused).
    pub backlog: u64,
    /// Fsyncs of the log that made messages durable since the process started (0 in memory).
    pub fsyncs: u64,
    /// Messages those fsyncs made durable (`fsynced_messages / fsyncs`: messages per fsync).
    pub fsynced_messages: u64,
}

/// What a disk-backed topic's log did since the process started (for `/metrics`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogMetrics {
    /// Bytes written to segment files by appends.
    pub bytes_appended: u64,
    /// Segment files the log holds now.
    pub segments: usize,
    /// Its fsyncs: counts, latency and messages per fsync.
    pub syncs: SyncCounts,
}

/// A topic.
#[derive(Debug)]
pub struct Topic {
    name: String,
    salt: u64,
    pub(crate) storage: Arc<Storage>,
    clock: Arc<dyn Clock>,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) channels: RwLock<BTreeMap<String, Arc<Channel>>>,
    /// The pause mark and the deferred records, shared with the channels.
    pub(crate) feed: Arc<Feed>,
    deleted: AtomicBool,
    pub(crate) backlog_start: AtomicU64,
    retention: Mutex<Option<Retention>>,
    message_count: AtomicU64,
    message_bytes: AtomicU64,
}

impl Topic {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: &str,
        salt: u64,
        storage: Arc<Storage>,
        clock: Arc<dyn Clock>,
        dir: Option<PathBuf>,
        pause_mark: Option<u64>,
        backlog_start: u64,
        retention: Option<Retention>,
    ) -> Self {
        // Whatever is in the log already is indexed by `index_deferred_from` (open does it).
        let feed = Arc::new(Feed::new(pause_mark, storage.end_offset()));
        Topic {
            name: name.to_string(),
            salt,
            storage,
            clock,
            dir,
            channels: RwLock::new(BTreeMap::new()),
            feed,
            deleted: AtomicBool::new(false),
            backlog_start: AtomicU64::new(backlog_start),
            retention: Mutex::new(retention),
            message_count: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
        }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The salt of this topic's message ids.
    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// Whether the topic lives in memory only.
    pub fn is_ephemeral(&self) -> bool {
        self.dir.is_none()
    }

    /// Whether the topic is paused: its channels get nothing published since the pause (they
    /// go on delivering what they had), as in NSQ.
    pub fn is_paused(&self) -> bool {
        self.feed.pause_mark().is_some()
    }

    /// While paused: the offset channels do not read past (the log's end when the topic was
    /// paused, or its backlog start if it had no channel then).
    pub fn pause_mark(&self) -> Option<u64> {
        self.feed.pause_mark()
    }

    /// Pauses (keeping the mark of an earlier pause) or unpauses.
    pub(crate) fn set_paused(&self, paused: bool) {
        if !paused {
            self.feed.set_pause_mark(None);
        } else if self.feed.pause_mark().is_none() {
            let mark = if self.has_channel() {
                self.storage.end_offset()
            } else {
                // With no channel, the topic holds its whole backlog itself.
                self.backlog_start.load(Ordering::Acquire)
            };
            self.feed.set_pause_mark(Some(mark));
        }
    }

    /// Moves a paused topic's mark (an empty drops what it held).
    pub(crate) fn move_pause_mark(&self, mark: u64) {
        if self.is_paused() {
            self.feed.set_pause_mark(Some(mark));
        }
    }

    /// Where a channel starts when the topic loses its last one, or is emptied: what was
    /// published and not yet handed to channels stays the topic's.
    pub(crate) fn held_from(&self) -> u64 {
        self.feed
            .pause_mark()
            .unwrap_or_else(|| self.storage.end_offset())
    }

    /// Whether the topic was deleted (handles held elsewhere go stale).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    /// The retention override, if any.
    pub fn retention(&self) -> Option<Retention> {
        *self.retention.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_retention(&self, retention: Option<Retention>) {
        *self.retention.lock().unwrap_or_else(|e| e.into_inner()) = retention;
    }

    /// The log (on disk or in memory).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Publishes a batch of bodies with one write: the messages are in the log (and, with a
    /// strict sync policy, fsynced) when this returns. `deliver_at` is 0 or the Unix-ns time
    /// before which no channel delivers them (DPUB).
    pub fn publish<B: AsRef<[u8]>>(&self, bodies: &[B], deliver_at: i64) -> Result<Appended> {
        if self.is_deleted() {
            return Err(Error::TopicNotFound(self.name.clone()));
        }
        let appended = self.storage.append(bodies, deliver_at, self.clock.now())?;
        let bytes: usize = bodies.iter().map(|b| b.as_ref().len()).sum();
        self.count_published(&appended, deliver_at, bytes);
        Ok(appended)
    }

    /// Publishes like [`Topic::publish`] without blocking the caller: `done` gets the result,
    /// after the group's fsync under a strict sync policy (the log's writer thread calls it),
    /// else before this returns. `done` is called exactly once.
    pub fn publish_then<B: AsRef<[u8]>>(
        self: &Arc<Self>,
        bodies: &[B],
        deliver_at: i64,
        done: impl FnOnce(Result<Appended>) + Send + 'static,
    ) {
        if self.is_deleted() {
            return done(Err(Error::TopicNotFound(self.name.clone())));
        }
        let bytes: usize = bodies.iter().map(|b| b.as_ref().len()).sum();
        let topic = self.clone();
        self.storage.submit(
            bodies,
            deliver_at,
            self.clock.now(),
            Box::new(move |result| {
                if let Ok(appended) = &result {
                    topic.count_published(appended, deliver_at, bytes);
                }
                done(result)
            }),
        );
    }

    /// Counts a publish, and indexes it if deferred, before the publisher hears of it: from
    /// the moment it is acknowledged every channel counts it as deferred.
    fn count_published(&self, appended: &Appended, deliver_at: i64, bytes: usize) {
        if deliver_at != 0 {
            self.feed.note_deferred(
                appended.first_offset,
                appended.count,
                deliver_at,
                self.clock.now(),
            );
        }
        self.message_count
            .fetch_add(appended.count, Ordering::Relaxed);
        self.message_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A channel by name.
    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// All channels, by name.
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Whether the topic has a channel, ephemeral or not. NSQ's topic holds its messages
    /// while it has none, and its first channel, of either kind, gets them.
    pub(crate) fn has_channel(&self) -> bool {
        !self
            .channels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Resolves where a channel starting at `start` begins.
    pub(crate) fn resolve_start(&self, start: ChannelStart) -> Result<u64> {
        let first = self.storage.first_offset();
        let end = self.storage.end_offset();
        let before_retention = || -> Result<Error> {
            Ok(Error::BeforeRetention {
                earliest_offset: first,
                earliest_timestamp: self.storage.first_timestamp()?.unwrap_or(0),
            })
        };
        match start {
            // NSQ: a new channel gets what the topic sends from now on, which while paused
            // includes what the topic holds.
            ChannelStart::Default if self.has_channel() => Ok(self.held_from().clamp(first, end)),
            ChannelStart::Default => {
                Ok(self.backlog_start.load(Ordering::Acquire).clamp(first, end))
            }
            ChannelStart::Tail => Ok(end),
            ChannelStart::Earliest => Ok(first),
            ChannelStart::Offset(o) if o < first => Err(before_retention()?),
            ChannelStart::Offset(o) if o > end => Err(Error::PastEnd { requested: o, end }),
            ChannelStart::Offset(o) => Ok(o),
            ChannelStart::Timestamp(t) => {
                if let Some(oldest) = self.storage.first_timestamp()? {
                    // Before the oldest retained message, and older messages were trimmed.
                    if t < oldest && first > 0 {
                        return Err(before_retention()?);
                    }
                }
                self.storage.offset_at_time(t)
            }
        }
    }

    /// The lowest offset anything durable still needs: the smallest floor of the durable
    /// channels (in memory: everything below it is finished, so deleting it loses nothing even
    /// if a crash reverts the cursor file; what the file still lists there is then skipped
    /// instead of redelivered), or the backlog start when there are none. Not waiting for a
    /// cursor persist matters on a full disk, where the persist itself needs the space.
    pub(crate) fn retention_floor(&self) -> u64 {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let floors = channels
            .values()
            .filter(|c| !c.is_ephemeral())
            .map(|c| c.floor());
        let floor = floors
            .min()
            .unwrap_or_else(|| self.backlog_start.load(Ordering::Acquire));
        // What a paused topic holds is nobody's yet, so nothing has finished it.
        floor.min(self.feed.pause_mark().unwrap_or(u64::MAX))
    }

    /// Indexes the deferred records from `from` up to where the index starts, looking only at
    /// those published within `max_defer_ns` of `now` (an older one's deferral, at most that
    /// long, has run out). Called on open for what channels have yet to read, and when a
    /// channel is moved back (created at or rewound to an older offset).
    pub(crate) fn index_deferred_from(&self, from: u64, now: i64, max_defer_ns: i64) -> Result<()> {
        let to = self.feed.indexed_from();
        if from >= to {
            return Ok(());
        }
        let running = self
            .storage
            .offset_at_time(now.saturating_sub(max_defer_ns))?;
        let mut reader = LogReader::at(from.max(running).max(self.storage.first_offset()));
        let mut found = Vec::new();
        let mut batch = VecDeque::new();
        while reader.offset() < to {
            let want = (to - reader.offset()).min(4096) as usize;
            if self.storage.read(&mut reader, 1 << 20, want, &mut batch)? == 0 {
                break;
            }
            found.extend(
                batch
                    .drain(..)
                    .filter(|m| m.offset < to && m.deliver_at > now)
                    .map(|m| (m.offset, m.deliver_at)),
            );
        }
        self.feed.extend_back(from, found);
        Ok(())
    }

    /// What the topic's log did since the process started; `None` for an in-memory topic.
    pub fn log_metrics(&self) -> Option<LogMetrics> {
        self.storage.disk().map(|log| LogMetrics {
            bytes_appended: log.bytes_appended(),
            segments: log.segment_count(),
            syncs: log.sync_counts(),
        })
    }

    /// The topic's numbers.
    pub fn stats(&self) -> Result<TopicStats> {
        let first_offset = self.storage.first_offset();
        let end_offset = self.storage.end_offset();
        let held_from = if !self.has_channel() {
            self.backlog_start.load(Ordering::Acquire)
        } else {
            self.held_from()
        };
        let backlog = end_offset.saturating_sub(held_from.max(first_offset));
        let syncs = self
            .storage
            .disk()
            .map(|log| log.sync_counts())
            .unwrap_or_default();
        Ok(TopicStats {
            message_count: self.message_count.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
            first_offset,
            end_offset,
            first_timestamp: self.storage.first_timestamp()?.unwrap_or(0),
            bytes: self.storage.total_bytes(),
            backlog,
            fsyncs: syncs.fsyncs,
            fsynced_messages: syncs.messages,
        })
    }
}
