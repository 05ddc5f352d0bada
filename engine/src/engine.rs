//! The engine: a locked data directory, its metadata, and its topics.

use crate::channel::Channel;
use crate::cursor::{ChannelStart, CursorFile, CursorState};
use crate::error::{Error, IoContext, Result};
use crate::fin_journal;
use crate::fs::FsLock;
use crate::log::{LogConfig, TopicLog};
use crate::memlog::MemLog;
use crate::meta::{ChannelMeta, Meta, TopicMeta};
use crate::name;
use crate::options::{Options, Retention};
use crate::recovery::RecoveryEvent;
use crate::storage::Storage;
use crate::topic::Topic;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// An open data directory. Dropping it without [`Engine::close`] is what a crash looks like
/// to the data directory: nothing more is persisted.
#[derive(Debug)]
pub struct Engine {
    path: PathBuf,
    options: Options,
    _lock: Box<dyn FsLock>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topology changes and metadata writes.
    admin: Mutex<()>,
    events: Vec<RecoveryEvent>,
    last_persist: AtomicI64,
    /// Bumped whenever a topic or channel is created or deleted, so watchers (nsqd's lookupd
    /// registration) notice changes without diffing on every poll.
    topology_generation: AtomicU64,
    /// Called with the new generation after each topology change (see [`Engine::on_topology_change`]).
    topology_listeners: RwLock<Vec<TopologyListener>>,
}

/// A callback told of topology changes; it runs on the changing thread, so it must be quick.
struct TopologyListener(Box<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for TopologyListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopologyListener")
    }
}

/// What one [`Engine::tick`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// In-flight messages that timed out and were requeued.
    pub timed_out: usize,
    /// Segments deleted by retention.
    pub segments_deleted: usize,
}

fn topics_dir(path: &Path) -> PathBuf {
    path.join("topics")
}

fn channels_dir(topic_dir: &Path) -> PathBuf {
    topic_dir.join("channels")
}

fn cursor_path(topic_dir: &Path, channel: &str) -> PathBuf {
    channels_dir(topic_dir).join(format!("{channel}.cursor"))
}

impl Engine {
    /// Opens (creating if needed) the data directory at `path`: takes its `LOCK`, loads the
    /// metadata and recovers every topic. What recovery did is in [`Engine::recovery_events`].
    pub fn open(path: impl Into<PathBuf>, options: Options) -> Result<Engine> {
        let path = path.into();
        let fs = options.fs.clone();
        fs.create_dir_durable(&path).at(&path)?;
        let lock = match fs.lock_exclusive(&path.join("LOCK")) {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(Error::Locked { path })
            }
            Err(e) => return Err(Error::io(path.join("LOCK"), e)),
        };
        let meta_path = path.join("meta");
        let mut meta = Meta::load(&*fs, &meta_path)?;
        let mut events = Vec::new();
        let mut meta_changed = false;

        let deleted_dir = path.join("deleted");
        if fs.exists(&deleted_dir) {
            fs.remove_dir_all(&deleted_dir).at(&deleted_dir)?;
            events.push(RecoveryEvent::RemovedLeftover { path: deleted_dir });
        }
        let topics_root = topics_dir(&path);
        fs.create_dir_durable(&topics_root).at(&topics_root)?;
        for entry in fs.read_dir(&topics_root).at(&topics_root)? {
            let Some(topic) = name::from_dir_name(&entry.name).filter(|_| entry.is_dir) else {
                continue;
            };
            if !meta.topics.iter().any(|t| t.name == topic) {
                let dir = topics_root.join(&entry.name);
                if is_unborn_topic(&*fs, &dir)? {
                    // A creation that failed or crashed before its first segment had a
                    // header: nothing was ever acknowledged into it. Removing it needs no
                    // free space, so a restart on a full disk works.
                    fs.remove_dir_all(&dir).at(&dir)?;
                    fs.sync_dir(&topics_root).at(&topics_root)?;
                    events.push(RecoveryEvent::RemovedLeftover { path: dir });
                    continue;
                }
                meta.topics.push(TopicMeta::adopted(topic.clone()));
                events.push(RecoveryEvent::AdoptedTopic { topic });
                meta_changed = true;
            }
        }

        let now = options.clock.now();
        let mut topics = BTreeMap::new();
        for topic_meta in &mut meta.topics {
            let known_channels = topic_meta.channels.len();
            let topic = open_topic(&options, &path, topic_meta, now, &mut events)?;
            meta_changed |= topic_meta.channels.len() != known_channels;
            topics.insert(topic_meta.name.clone(), Arc::new(topic));
        }
        let engine = Engine {
            path,
            options,
            _lock: lock,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            events,
            last_persist: AtomicI64::new(now),
            topology_generation: AtomicU64::new(0),
            topology_listeners: RwLock::new(Vec::new()),
        };
        if meta_changed {
            engine.store_meta()?;
        }
        Ok(engine)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options the engine was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What recovery found and fixed when the data directory was opened.
    pub fn recovery_events(&self) -> &[RecoveryEvent] {
        &self.events
    }

    /// The engine's clock reading.
    pub fn now(&self) -> i64 {
        self.options.clock.now()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// All topics, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A channel by topic and name.
    pub fn channel(&self, topic: &str, channel: &str) -> Option<Arc<Channel>> {
        self.topic(topic)?.channel(channel)
    }

    fn lock_admin(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log_config(&self) -> LogConfig {
        log_config(&self.options)
    }

    fn max_defer_ns(&self) -> i64 {
        max_defer_ns(&self.options)
    }

    /// A number that changes whenever a topic or channel is created or deleted.
    pub fn topology_generation(&self) -> u64 {
        self.topology_generation.load(Ordering::Acquire)
    }

    /// Calls `listener` with the new [`Engine::topology_generation`] after every creation or
    /// deletion of a topic or channel, once the change is visible in [`Engine::topics`]. It
    /// runs on the thread making the change (under the engine's admin lock): it should only
    /// wake someone, as nsqd's lookupd registration does, so lookupds hear of it at once.
    pub fn on_topology_change(&self, listener: impl Fn(u64) + Send + Sync + 'static) {
        self.topology_listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(TopologyListener(Box::new(listener)));
    }

    /// Call after the change is visible, so a woken watcher reads the new topology.
    fn topology_changed(&self) {
        let generation = self.topology_generation.fetch_add(1, Ordering::AcqRel) + 1;
        for listener in self
            .topology_listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            (listener.0)(generation);
        }
    }

    /// Returns the topic, creating it if it does not exist.
    pub fn create_topic(&self, topic: &str) -> Result<Arc<Topic>> {
        if let Some(t) = self.topic(topic) {
            return Ok(t);
        }
        if !name::is_valid(topic) {
            return Err(Error::InvalidName(topic.to_string()));
        }
        let _admin = self.lock_admin();
        if let Some(t) = self.topic(topic) {
            return Ok(t);
        }
        let salt: u64 = rand::random();
        let now = self.now();
        let created = if name::is_ephemeral(topic) {
            let log = MemLog::new(self.options.mem_queue_size, salt, self.options.max_msg_size);
            Topic::new(
                topic,
                salt,
                Arc::new(Storage::Memory(log)),
                self.options.clock.clone(),
                None,
                None,
                0,
                None,
            )
        } else {
            let dir = topics_dir(&self.path).join(name::dir_name(topic));
            let opened = match self.create_topic_dir(topic, &dir, salt, now) {
                Ok(opened) => opened,
                Err(e) => {
                    // A topic that could not be created (a full disk, a failing one) leaves
                    // nothing behind that the next start would have to open.
                    self.remove_failed_topic_dir(&dir);
                    return Err(e);
                }
            };
            Topic::new(
                topic,
                salt,
                Arc::new(Storage::Disk(opened)),
                self.options.clock.clone(),
                Some(dir),
                None,
                0,
                None,
            )
        };
        let created = Arc::new(created);
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_string(), created.clone());
        self.topology_changed();
        if !created.is_ephemeral() {
            if let Err(e) = self.store_meta() {
                // Not in meta means not created: undo it all (a full disk fails here too), so
                // neither this process nor the next start sees a topic the caller was refused.
                self.topics
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(topic);
                created.mark_deleted();
                self.topology_changed();
                if let Some(dir) = &created.dir {
                    self.remove_failed_topic_dir(dir);
                }
                return Err(e);
            }
        }
        Ok(created)
    }

    /// Creates a new topic's directory, first segment and `channels/`, all durable.
    fn create_topic_dir(&self, topic: &str, dir: &Path, salt: u64, now: i64) -> Result<TopicLog> {
        let opened = TopicLog::open(
            self.options.fs.clone(),
            dir.to_path_buf(),
            topic,
            self.log_config(),
            salt,
            0,
            now,
        )?;
        let fs = &self.options.fs;
        fs.create_dir_durable(&channels_dir(dir)).at(dir)?;
        fs.sync_dir(&topics_dir(&self.path)).at(&self.path)?;
        Ok(opened.log)
    }

    /// Removes what a failed topic creation left (best effort: the error that made it fail
    /// is the one reported; a leftover that stays is removed by the next open).
    fn remove_failed_topic_dir(&self, dir: &Path) {
        let fs = &self.options.fs;
        if fs.exists(dir) && fs.remove_dir_all(dir).is_ok() {
            let _ = fs.sync_dir(&topics_dir(&self.path));
        }
    }

    /// Deletes a topic, its channels and its log.
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        let _admin = self.lock_admin();
        let removed = self
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(topic);
        let Some(removed) = removed else {
            return Err(Error::TopicNotFound(topic.to_string()));
        };
        removed.mark_deleted();
        for channel in removed.channels() {
            channel.mark_deleted();
        }
        self.topology_changed();
        let Some(dir) = &removed.dir else {
            return Ok(());
        };
        // Move the directory aside first, so a crash mid-delete leaves a leftover that the
        // next open removes, never a half-deleted topic.
        let fs = &self.options.fs;
        let graveyard = self.path.join("deleted");
        fs.create_dir_durable(&graveyard).at(&graveyard)?;
        let buried = graveyard.join(format!(
            "{}.{:016x}",
            name::dir_name(topic),
            rand::random::<u64>()
        ));
        fs.rename(dir, &buried).at(dir)?;
        fs.sync_dir(&topics_dir(&self.path)).at(&self.path)?;
        self.store_meta()?;
        fs.remove_dir_all(&buried).at(&buried)
    }

    /// Returns the channel, creating it (and its topic) if needed. `start` applies only when
    /// the channel is new.
    pub fn create_channel(
        &self,
        topic: &str,
        channel: &str,
        start: ChannelStart,
    ) -> Result<Arc<Channel>> {
        let t = self.create_topic(topic)?;
        if let Some(c) = t.channel(channel) {
            return Ok(c);
        }
        if !name::is_valid(channel) {
            return Err(Error::InvalidName(channel.to_string()));
        }
        let _admin = self.lock_admin();
        if let Some(c) = t.channel(channel) {
            return Ok(c);
        }
        if t.is_deleted() {
            return Err(Error::TopicNotFound(topic.to_string()));
        }
        let ephemeral = t.is_ephemeral() || name::is_ephemeral(channel);
        let offset = t.resolve_start(start)?;
        t.index_deferred_from(offset, self.now(), self.max_defer_ns())?;
        let path = match (&t.dir, ephemeral) {
            (Some(dir), false) => Some(cursor_path(dir, channel)),
            _ => None,
        };
        let created = Arc::new(Channel::new(
            topic,
            channel,
            t.salt(),
            t.storage.clone(),
            t.feed.clone(),
            self.options.fs.clone(),
            path,
            self.options.read_ahead_bytes,
            CursorState::at(offset),
            false,
        ));
        // Cursor file first, then the metadata naming it: a crash between leaves a cursor
        // file that the next open adopts (the create was not answered yet; it takes effect).
        created.persist()?;
        t.channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.to_string(), created.clone());
        self.topology_changed();
        if !created.is_ephemeral() {
            self.store_meta()?;
        }
        Ok(created)
    }

    /// Deletes a channel. When the last channel of a topic goes (ephemeral or not), the topic
    /// starts buffering again from its current end (NSQ's behaviour for a topic with no
    /// channels: what the channels got is theirs, what comes next waits for a first channel).
    pub fn delete_channel(&self, topic: &str, channel: &str) -> Result<()> {
        let t = self
            .topic(topic)
            .ok_or_else(|| Error::TopicNotFound(topic.to_string()))?;
        let _admin = self.lock_admin();
        let removed = t
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(channel);
        let Some(removed) = removed else {
            return Err(Error::ChannelNotFound(channel.to_string()));
        };
        removed.mark_deleted();
        self.topology_changed();
        let buffering_again = !t.has_channel();
        if buffering_again {
            t.backlog_start.store(t.held_from(), Ordering::Release);
        }
        if removed.is_ephemeral() {
            return if buffering_again && !t.is_ephemeral() {
                self.store_meta()
            } else {
                Ok(())
            };
        }
        self.store_meta()?;
        removed.destroy()
    }

    /// Pauses or unpauses delivery of a topic (persisted).
    pub fn set_topic_paused(&self, topic: &str, paused: bool) -> Result<()> {
        let t = self
            .topic(topic)
            .ok_or_else(|| Error::TopicNotFound(topic.to_string()))?;
        let _admin = self.lock_admin();
        t.set_paused(paused);
        self.store_meta()
    }

    /// Pauses or unpauses delivery of a channel (persisted).
    pub fn set_channel_paused(&self, topic: &str, channel: &str, paused: bool) -> Result<()> {
        let c = self
            .channel(topic, channel)
            .ok_or_else(|| Error::ChannelNotFound(channel.to_string()))?;
        let _admin = self.lock_admin();
        c.set_paused(paused);
        self.store_meta()
    }

    /// Sets or clears a topic's retention override.
    pub fn set_topic_retention(&self, topic: &str, retention: Option<Retention>) -> Result<()> {
        let t = self
            .topic(topic)
            .ok_or_else(|| Error::TopicNotFound(topic.to_string()))?;
        if t.is_ephemeral() {
            return Err(Error::Ephemeral(topic.to_string()));
        }
        let _admin = self.lock_admin();
        t.set_retention(retention);
        self.store_meta()
    }

    /// NSQ's topic empty: drops what the topic holds, i.e. the backlog a first channel would
    /// get, and what a paused topic kept from its channels, which keep theirs (a channel more
    /// than [`crate::channel::MAX_KEPT_ON_EMPTY`] behind the pause mark gets it after all).
    pub fn empty_topic(&self, topic: &str) -> Result<()> {
        let t = self
            .topic(topic)
            .ok_or_else(|| Error::TopicNotFound(topic.to_string()))?;
        let _admin = self.lock_admin();
        let end = t.storage.end_offset();
        t.backlog_start.store(end, Ordering::Release);
        if let Some(mark) = t.pause_mark() {
            t.move_pause_mark(end);
            for channel in t.channels() {
                if channel.pass_over(mark, end, self.now()) {
                    channel.persist()?;
                }
            }
        }
        if t.is_ephemeral() {
            Ok(())
        } else {
            self.store_meta()
        }
    }

    /// NSQ's channel empty: drops everything queued, waiting or in flight; the channel goes on
    /// from the log's end. Durable before it returns (the cursor file is written), so an
    /// empty that was answered survives a crash.
    pub fn empty_channel(&self, topic: &str, channel: &str) -> Result<()> {
        let c = self
            .channel(topic, channel)
            .ok_or_else(|| Error::ChannelNotFound(channel.to_string()))?;
        c.empty();
        c.persist()
    }

    /// Moves a channel to `start` (earliest retained, an offset or a time): everything from
    /// there on is delivered again; in-flight messages are forgotten. Returns the new offset.
    pub fn rewind_channel(&self, topic: &str, channel: &str, start: ChannelStart) -> Result<u64> {
        let t = self
            .topic(topic)
            .ok_or_else(|| Error::TopicNotFound(topic.to_string()))?;
        let c = t
            .channel(channel)
            .ok_or_else(|| Error::ChannelNotFound(channel.to_string()))?;
        if c.is_ephemeral() {
            return Err(Error::Ephemeral(format!("{topic}/{channel}")));
        }
        let offset = match start {
            ChannelStart::Default => t.resolve_start(ChannelStart::Earliest)?,
            other => t.resolve_start(other)?,
        };
        t.index_deferred_from(offset, self.now(), self.max_defer_ns())?;
        c.reset(offset);
        c.persist()?;
        Ok(offset)
    }

    /// Periodic housekeeping: fsync logs whose sync timeout passed, requeue timed-out
    /// messages, persist changed cursors every `persist_interval`, and delete segments
    /// retention no longer keeps. Call it every few hundred milliseconds.
    pub fn tick(&self) -> Result<TickReport> {
        let now = self.now();
        let mut report = TickReport::default();
        let mut first_error = None;
        let persist_due = now.saturating_sub(self.last_persist.load(Ordering::Acquire))
            >= self.options.persist_interval.as_nanos() as i64;
        if persist_due {
            self.last_persist.store(now, Ordering::Release);
        }
        for topic in self.topics() {
            if let Some(log) = topic.storage.disk() {
                if let Err(e) = log.sync_if_due(now) {
                    first_error.get_or_insert(e);
                }
            }
            for channel in topic.channels() {
                report.timed_out += channel.expire(now);
                if self.options.sync.is_strict() {
                    if let Err(e) = channel.sync_finished() {
                        first_error.get_or_insert(e);
                    }
                }
                if persist_due {
                    if let Err(e) = channel.persist() {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if persist_due {
                match self.trim_topic(&topic, now) {
                    Ok(n) => report.segments_deleted += n,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    fn trim_topic(&self, topic: &Topic, now: i64) -> Result<usize> {
        let Some(log) = topic.storage.disk() else {
            return Ok(0);
        };
        let retention = topic.retention().unwrap_or(self.options.retention);
        log.trim(topic.retention_floor(), &retention, now)
    }

    /// Persists every channel cursor now.
    pub fn persist_cursors(&self) -> Result<()> {
        for topic in self.topics() {
            for channel in topic.channels() {
                channel.persist()?;
            }
        }
        Ok(())
    }

    /// Clean shutdown: fsync every log, persist every cursor and the metadata, release the lock.
    pub fn close(self) -> Result<()> {
        self.flush()
    }

    /// Everything [`Engine::close`] writes, without giving up the engine (for a server that
    /// shares it between tasks): fsync every log, persist every cursor and the metadata.
    /// A topic whose log fails (say, one refusing appends after a segment shrank) does not
    /// stop the others: everything is still written, and the first error is returned.
    pub fn flush(&self) -> Result<()> {
        let now = self.now();
        let mut first_error = None;
        for topic in self.topics() {
            if let Some(log) = topic.storage.disk() {
                if let Err(e) = log.sync_all(now) {
                    first_error.get_or_insert(e);
                }
            }
        }
        for result in [self.persist_cursors(), self.store_meta()] {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn store_meta(&self) -> Result<()> {
        let topics = self.topics();
        let meta = Meta {
            topics: topics
                .iter()
                .filter(|t| !t.is_ephemeral())
                .map(|t| TopicMeta {
                    name: t.name().to_string(),
                    salt: t.salt(),
                    paused: t.is_paused(),
                    pause_mark: t.pause_mark(),
                    backlog_start: t.backlog_start.load(Ordering::Acquire),
                    retention: t.retention(),
                    channels: t
                        .channels()
                        .iter()
                        .filter(|c| !c.is_ephemeral())
                        .map(|c| ChannelMeta {
                            name: c.name().to_string(),
                            paused: c.is_paused(),
                        })
                        .collect(),
                })
                .collect(),
        };
        meta.store(&*self.options.fs, &self.path.join("meta"))
    }
}

/// Takes every cursor file in the topic's `channels/` that the metadata does not name back in
/// as a channel (not paused). A cursor file is never deleted because the metadata does not
/// mention it: the metadata may be missing or stale, and the cursor is the channel's state.
fn adopt_cursor_files(
    fs: &dyn crate::fs::FileSystem,
    dir: &Path,
    meta: &mut TopicMeta,
    events: &mut Vec<RecoveryEvent>,
) -> Result<()> {
    let channels = channels_dir(dir);
    if !fs.exists(&channels) {
        return Ok(());
    }
    let mut found: Vec<String> = fs
        .read_dir(&channels)
        .at(&channels)?
        .into_iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| e.name.strip_suffix(".cursor").map(str::to_string))
        .filter(|c| name::is_valid(c) && !name::is_ephemeral(c))
        .filter(|c| !meta.channels.iter().any(|known| &known.name == c))
        .collect();
    found.sort();
    for channel in found {
        let path = cursor_path(dir, &channel);
        let readable = fs.read_all(&path).map_err(|e| e.to_string()).and_then(|b| {
            CursorFile::decode(&path, &b)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        if let Err(reason) = readable {
            // Kept for `nsq_log repair` (which takes it in, reset to the oldest message);
            // an unreadable file that no metadata vouches for does not stop the start.
            events.push(RecoveryEvent::IgnoredCursor { path, reason });
            continue;
        }
        events.push(RecoveryEvent::AdoptedChannel {
            topic: meta.name.clone(),
            channel: channel.clone(),
        });
        meta.channels.push(ChannelMeta {
            name: channel,
            paused: false,
        });
    }
    Ok(())
}

/// Whether a topic directory the metadata does not list holds nothing but segments without a
/// complete header (and no cursor files): what an interrupted creation leaves.
fn is_unborn_topic(fs: &dyn crate::fs::FileSystem, dir: &Path) -> Result<bool> {
    for entry in fs.read_dir(dir).at(dir)? {
        let path = dir.join(&entry.name);
        if entry.is_dir {
            let empty = entry.name == "channels" && fs.read_dir(&path).at(&path)?.is_empty();
            if !empty {
                return Ok(false);
            }
        } else if crate::segment::parse_log_file_name(&entry.name).is_some() {
            let len = fs
                .open(&path, crate::fs::OpenMode::Read)
                .and_then(|f| f.len())
                .at(&path)?;
            if len >= crate::segment::HEADER_LEN {
                return Ok(false);
            }
        } else if !entry.name.ends_with(".idx") {
            return Ok(false);
        }
    }
    Ok(true)
}

fn max_defer_ns(options: &Options) -> i64 {
    i64::try_from(options.max_defer.as_nanos()).unwrap_or(i64::MAX)
}

fn log_config(options: &Options) -> LogConfig {
    LogConfig {
        max_bytes_per_file: options.max_bytes_per_file,
        index_interval_bytes: options.index_interval_bytes.max(1),
        sync: options.sync,
        max_body: options.max_msg_size,
    }
}

/// Opens one durable topic from its metadata: its log, then its channels' cursors.
fn open_topic(
    options: &Options,
    path: &Path,
    meta: &mut TopicMeta,
    now: i64,
    events: &mut Vec<RecoveryEvent>,
) -> Result<Topic> {
    let fs = &options.fs;
    let dir = topics_dir(path).join(name::dir_name(&meta.name));
    adopt_cursor_files(&**fs, &dir, meta, events)?;
    let mut cursors: BTreeMap<String, Option<CursorFile>> = BTreeMap::new();
    for channel in &meta.channels {
        let file_path = cursor_path(&dir, &channel.name);
        let file = match fs.read_all(&file_path) {
            Ok(bytes) => Some(CursorFile::decode(&file_path, &bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&file_path, e)),
        };
        cursors.insert(channel.name.clone(), file);
    }
    // A log with no segments left starts where its channels were, so offsets are never reused.
    let start = cursors
        .values()
        .flatten()
        .map(|c| c.next)
        .max()
        .unwrap_or(0)
        .max(meta.backlog_start);
    let derive_salt = meta.salt == TopicMeta::SALT_FROM_LOG;
    let salt = if derive_salt {
        rand::random()
    } else {
        meta.salt
    };
    let opened = TopicLog::open(
        fs.clone(),
        dir.clone(),
        &meta.name,
        log_config(options),
        salt,
        start,
        now,
    )?;
    events.extend(opened.events);
    let log = opened.log;
    if derive_salt {
        meta.salt = match log.read_one(log.first_offset()) {
            Ok(Some(m)) => m.id.offset(0).map_or(salt, |v| v.wrapping_sub(m.offset)),
            _ => salt,
        };
    }
    fs.create_dir_durable(&channels_dir(&dir)).at(&dir)?;
    for entry in fs.read_dir(&channels_dir(&dir)).at(&dir)? {
        // Cursor files were all adopted above; what is left is temporary files of an
        // interrupted atomic write and other strays.
        let known = entry
            .name
            .strip_suffix(".cursor")
            .or_else(|| fin_journal::journal_owner(&entry.name))
            .is_some_and(|c| cursors.contains_key(c));
        if !known && !entry.name.ends_with(".cursor") {
            let stray = channels_dir(&dir).join(&entry.name);
            if entry.is_dir {
                fs.remove_dir_all(&stray).at(&stray)?;
            } else {
                fs.remove_file(&stray).at(&stray)?;
            }
            events.push(RecoveryEvent::RemovedLeftover { path: stray });
        }
    }
    let first = log.first_offset();
    let end = log.end_offset();
    let storage = Arc::new(Storage::Disk(log));
    let topic = Topic::new(
        &meta.name,
        meta.salt,
        storage.clone(),
        options.clock.clone(),
        Some(dir.clone()),
        // A pause recorded before pause marks existed stopped every channel where it was.
        meta.paused.then(|| meta.pause_mark.unwrap_or(end)),
        meta.backlog_start,
        meta.retention,
    );
    for channel in &meta.channels {
        let file = cursors.get(&channel.name).cloned().flatten();
        let mut cursor = match file.clone() {
            Some(file) if file.next > end => {
                events.push(RecoveryEvent::CursorClamped {
                    topic: meta.name.clone(),
                    channel: channel.name.clone(),
                    from: file.next,
                    to: end,
                });
                let mut state = CursorState::from_file(&CursorFile {
                    next: end,
                    floor: file.floor.min(end),
                    entries: file.entries,
                });
                state.skip_to(0);
                state
            }
            Some(file) => CursorState::from_file(&file),
            None => {
                events.push(RecoveryEvent::CursorMissing {
                    topic: meta.name.clone(),
                    channel: channel.name.clone(),
                });
                CursorState::at(first)
            }
        };
        let journal = fin_journal::recover(
            &**fs,
            &cursor_path(&dir, &channel.name),
            file.as_ref(),
            &mut cursor,
            end,
            events,
        );
        let c = Channel::new(
            &meta.name,
            &channel.name,
            meta.salt,
            storage.clone(),
            topic.feed.clone(),
            fs.clone(),
            Some(cursor_path(&dir, &channel.name)),
            options.read_ahead_bytes,
            cursor,
            channel.paused,
        )
        .with_journal(journal)
        .counting_from(topic.feed.read_limit(end));
        topic
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.name.clone(), Arc::new(c));
    }
    // Deferred messages not finished yet count as deferred from the start: unread ones, and
    // those a journal replay left waiting with no time (see `Channel::hold_back_deferred`).
    let unfinished_from = topic
        .channels()
        .iter()
        .map(|c| c.floor())
        .min()
        .unwrap_or(meta.backlog_start);
    topic.index_deferred_from(unfinished_from, now, max_defer_ns(options))?;
    for channel in topic.channels() {
        channel.hold_back_deferred(now);
    }
    Ok(topic)
}
