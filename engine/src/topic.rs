//! A topic: its log and its channels.

use crate::channel::Channel;
use crate::clock::Clock;
use crate::cursor::ChannelStart;
use crate::error::{Error, Result};
use crate::log::{Appended, SyncCounts};
use crate::options::Retention;
use crate::storage::Storage;
use std::collections::BTreeMap;
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
    /// Messages a first channel would get (unread backlog while the topic has no channel).
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
    paused: AtomicBool,
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
        paused: bool,
        backlog_start: u64,
        retention: Option<Retention>,
    ) -> Self {
        Topic {
            name: name.to_string(),
            salt,
            storage,
            clock,
            dir,
            channels: RwLock::new(BTreeMap::new()),
            paused: AtomicBool::new(paused),
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

    /// Whether delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
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
        self.count_published(appended.count, bytes);
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
                    topic.count_published(appended.count, bytes);
                }
                done(result)
            }),
        );
    }

    fn count_published(&self, count: u64, bytes: usize) {
        self.message_count.fetch_add(count, Ordering::Relaxed);
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
            ChannelStart::Default if self.has_channel() => Ok(end),
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
        floors
            .min()
            .unwrap_or_else(|| self.backlog_start.load(Ordering::Acquire))
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
        let backlog = if self.has_channel() {
            0
        } else {
            end_offset.saturating_sub(self.backlog_start.load(Ordering::Acquire).max(first_offset))
        };
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
