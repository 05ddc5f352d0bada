//! A channel: a cursor over its topic's log that hands messages to clients, tracks them in
//! flight, and persists what is finished.

use crate::cursor::{CursorFile, CursorState, FlightError};
use crate::error::{Error, IoContext, Result};
use crate::feed::Feed;
use crate::fin_journal::{self, FinJournal, JournalEntry};
use crate::fs::FileSystem;
use crate::id::MessageId;
use crate::log::LogReader;
use crate::record::Message;
use crate::storage::Storage;
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The most unread messages a channel behind a paused topic's mark keeps when the topic is
/// emptied (each becomes a cursor entry); one further behind gets what the topic held too.
pub const MAX_KEPT_ON_EMPTY: u64 = 10_000;

/// A message handed to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// NSQ message id (what the client sends back in FIN/REQ/TOUCH).
    pub id: MessageId,
    /// Log offset.
    pub offset: u64,
    /// Publish time, Unix ns.
    pub timestamp: i64,
    /// Deliveries so far, this one included.
    pub attempts: u16,
    /// The payload.
    pub body: Bytes,
}

/// A channel's numbers, for `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelStats {
    /// Messages ready to deliver: unread ones plus requeued ones that are ready.
    pub depth: u64,
    /// Messages in flight.
    pub in_flight: u64,
    /// Messages held back: requeued with a delay, or DPUB not yet due (counted from the
    /// moment they are published, whether the channel has read them or not).
    pub deferred: u64,
    /// Deliveries since the process started.
    pub message_count: u64,
    /// REQs since the process started.
    pub requeue_count: u64,
    /// Timeouts since the process started.
    pub timeout_count: u64,
    /// Messages skipped because the log no longer held them (ephemeral channels behind).
    pub skipped: u64,
    /// Every offset below this is finished.
    pub floor: u64,
    /// Next offset to read from the log.
    pub next: u64,
    /// How far the channel may read: the log's end, or a paused topic's pause mark.
    pub readable_end: u64,
    /// Where the channel started reading when it was created or loaded in this process
    /// (NSQ's channel `message_count` counts what the topic received from there on).
    pub start_offset: u64,
}

#[derive(Debug)]
struct Inner {
    cursor: CursorState,
    reader: LogReader,
    buffer: VecDeque<Message>,
    dirty: bool,
    /// FINs and resets not yet written to the journal (durable channels only).
    unjournaled: Vec<JournalEntry>,
    stats: ChannelStats,
}

/// The channel's finished-offsets journals: the one extending the cursor file on disk, and
/// while a persist writes a new cursor file, the one extending that (both get every entry,
/// so whichever cursor a crash leaves in place has a complete journal).
#[derive(Debug, Default)]
struct Journals {
    current: Option<FinJournal>,
    next: Option<FinJournal>,
}

impl Journals {
    /// Appends to both; a journal that fails to write is dropped (its FINs are then durable
    /// only with the next cursor file) and the first error is returned.
    fn append(&mut self, bytes: &[u8], path: &std::path::Path) -> Result<()> {
        let mut result = Ok(());
        for slot in [&mut self.current, &mut self.next] {
            if let Some(journal) = slot {
                if let Err(e) = journal.append(bytes) {
                    *slot = None;
                    if result.is_ok() {
                        result = Err(Error::io(path, e));
                    }
                }
            }
        }
        result
    }
}

/// One channel of a topic.
#[derive(Debug)]
pub struct Channel {
    topic: String,
    name: String,
    salt: u64,
    storage: Arc<Storage>,
    feed: Arc<Feed>,
    fs: Arc<dyn FileSystem>,
    /// `None` for ephemeral channels, which never touch disk.
    cursor_path: Option<PathBuf>,
    read_ahead_bytes: usize,
    inner: Mutex<Inner>,
    /// Lock order: `persist_lock`, then `journals`, then `inner`.
    journals: Mutex<Journals>,
    persist_lock: Mutex<()>,
    paused: AtomicBool,
    deleted: AtomicBool,
    /// Bumped by every empty or rewind (see [`Channel::reset_count`]).
    resets: AtomicU64,
}

fn flight_error(e: FlightError, id: &MessageId) -> Error {
    match e {
        FlightError::NotInFlight => Error::NotInFlight(id.to_string()),
        FlightError::NotOwner => Error::NotOwner(id.to_string()),
    }
}

impl Channel {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        topic: &str,
        name: &str,
        salt: u64,
        storage: Arc<Storage>,
        feed: Arc<Feed>,
        fs: Arc<dyn FileSystem>,
        cursor_path: Option<PathBuf>,
        read_ahead_bytes: usize,
        cursor: CursorState,
        paused: bool,
    ) -> Self {
        Channel {
            topic: topic.to_string(),
            name: name.to_string(),
            salt,
            storage,
            feed,
            fs,
            cursor_path,
            read_ahead_bytes: read_ahead_bytes.max(1),
            inner: Mutex::new(Inner {
                reader: LogReader::at(cursor.next()),
                stats: ChannelStats {
                    start_offset: cursor.next(),
                    ..ChannelStats::default()
                },
                cursor,
                buffer: VecDeque::new(),
                dirty: true,
                unjournaled: Vec::new(),
            }),
            journals: Mutex::new(Journals::default()),
            persist_lock: Mutex::new(()),
            paused: AtomicBool::new(paused),
            deleted: AtomicBool::new(false),
            resets: AtomicU64::new(0),
        }
    }

    /// Counts messages handed to the channel from `offset` on (a channel loaded on open: NSQ's
    /// `message_count` starts at 0 with the process, whatever the channel has yet to read).
    pub(crate) fn counting_from(self, offset: u64) -> Self {
        self.lock().stats.start_offset = offset;
        self
    }

    /// Continues appending FINs to `journal` (the one recovery applied on top of the cursor).
    pub(crate) fn with_journal(self, journal: Option<FinJournal>) -> Self {
        self.lock_journals().current = journal;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_journals(&self) -> MutexGuard<'_, Journals> {
        self.journals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether the channel lives in memory only.
    pub fn is_ephemeral(&self) -> bool {
        self.cursor_path.is_none()
    }

    /// Whether delivery is paused (persisted by [`crate::Engine::set_channel_paused`]).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
    }

    /// Whether the channel was deleted (handles held elsewhere go stale).
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    /// Takes up to `max` deliverable messages for `client`, in flight until `now + timeout_ns`.
    /// Ready requeued messages go first, then new ones from the log; DPUB messages not yet due
    /// are set aside. Returns how many were added to `out`; a read failing after some were
    /// taken returns those, and the next take meets the failure.
    pub fn take(
        &self,
        now: i64,
        client: u64,
        timeout_ns: i64,
        max: usize,
        out: &mut Vec<Delivery>,
    ) -> Result<usize> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut taken = 0;
        while taken < max {
            if let Some((offset, attempts)) = inner.cursor.pop_ready(now) {
                match self.storage.read_one(offset) {
                    Ok(Some(m)) if m.body.is_empty() => inner.stats.skipped += 1,
                    Ok(Some(m)) if m.deliver_at > now => {
                        // Replayed from the journal as unfinished before its DPUB time.
                        inner.cursor.wait(offset, m.deliver_at, attempts);
                    }
                    Ok(Some(m)) => {
                        self.deliver(
                            inner,
                            m,
                            attempts.saturating_add(1),
                            client,
                            now,
                            timeout_ns,
                            out,
                        );
                        taken += 1;
                    }
                    Ok(None) | Err(Error::BeforeRetention { .. }) => inner.stats.skipped += 1,
                    Err(e) => {
                        inner.cursor.wait(offset, now, attempts);
                        // What was taken is in flight already: hand it out, fail the next take.
                        return if taken > 0 { Ok(taken) } else { Err(e) };
                    }
                }
                continue;
            }
            if inner.buffer.is_empty() {
                match self.refill(inner) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(_) if taken > 0 => break,
                    Err(e) => return Err(e),
                }
            }
            let Some(m) = inner.buffer.pop_front() else {
                break;
            };
            inner.cursor.advance_next(m.offset);
            inner.dirty = true;
            if m.body.is_empty() {
                // A hole left by `nsq_log repair` where a record was unreadable: never delivered
                // (NSQ refuses empty messages, so no real message is empty).
                inner.stats.skipped += 1;
                continue;
            }
            if m.deliver_at > now {
                inner.cursor.wait(m.offset, m.deliver_at, 0);
                continue;
            }
            self.deliver(inner, m, 1, client, now, timeout_ns, out);
            taken += 1;
        }
        Ok(taken)
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        inner: &mut Inner,
        m: Message,
        attempts: u16,
        client: u64,
        now: i64,
        timeout_ns: i64,
        out: &mut Vec<Delivery>,
    ) {
        inner
            .cursor
            .start_flight(m.offset, attempts, client, now.saturating_add(timeout_ns));
        inner.stats.message_count += 1;
        out.push(Delivery {
            id: m.id,
            offset: m.offset,
            timestamp: m.timestamp,
            attempts,
            body: m.body,
        });
    }

    /// Reads ahead from the log; false at the end (or a paused topic's mark). A reader that
    /// fell below the log's front (only ephemeral channels can) skips to it.
    fn refill(&self, inner: &mut Inner) -> Result<bool> {
        for _ in 0..2 {
            let limit = self.readable_end();
            let Some(room) = limit.checked_sub(inner.reader.offset()).filter(|&n| n > 0) else {
                return Ok(false);
            };
            match self.storage.read(
                &mut inner.reader,
                self.read_ahead_bytes,
                usize::try_from(room).unwrap_or(usize::MAX),
                &mut inner.buffer,
            ) {
                Ok(n) => return Ok(n > 0),
                Err(Error::BeforeRetention {
                    earliest_offset, ..
                }) => {
                    inner.stats.skipped += earliest_offset.saturating_sub(inner.reader.offset());
                    inner.reader = LogReader::at(earliest_offset);
                    inner.cursor.skip_to(earliest_offset);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    fn offset_of(&self, id: &MessageId) -> Result<u64> {
        id.offset(self.salt)
            .ok_or_else(|| Error::NotInFlight(id.to_string()))
    }

    /// `FIN`: `client` is done with the message.
    pub fn finish(&self, client: u64, id: &MessageId) -> Result<()> {
        let offset = self.offset_of(id)?;
        let mut inner = self.lock();
        inner
            .cursor
            .finish(offset, client)
            .map_err(|e| flight_error(e, id))?;
        inner.dirty = true;
        if self.cursor_path.is_some() {
            inner.unjournaled.push(JournalEntry::Finished(offset));
        }
        Ok(())
    }

    /// Writes the FINs since the last call to the channel's journal with one write (page
    /// cache, no fsync), so that a process crash does not deliver them again. Call it after
    /// each batch of [`Channel::finish`] calls (nsqd: after each read from a connection); until
    /// then a FIN is durable only with the next cursor persist.
    pub fn write_finished(&self) -> Result<()> {
        let Some(path) = &self.cursor_path else {
            return Ok(());
        };
        let mut journals = self.lock_journals();
        let entries = std::mem::take(&mut self.lock().unjournaled);
        if entries.is_empty() || (journals.current.is_none() && journals.next.is_none()) {
            return Ok(());
        }
        let mut bytes = Vec::new();
        fin_journal::encode_entries(&entries, &mut bytes);
        journals.append(&bytes, &fin_journal::journal_path(path))
    }

    /// Fsyncs the journal if it grew since its last fsync (the journal's own sync hook, for
    /// `--sync-every=1`: FINs then survive a power cut within one housekeeping tick).
    pub fn sync_finished(&self) -> Result<()> {
        let Some(path) = &self.cursor_path else {
            return Ok(());
        };
        let mut journals = self.lock_journals();
        match journals.current.as_mut().map(FinJournal::sync) {
            Some(Err(e)) => {
                journals.current = None;
                Err(Error::io(fin_journal::journal_path(path), e))
            }
            _ => Ok(()),
        }
    }

    /// `REQ`: deliver the message again after `delay_ns` (0: before any new message).
    pub fn requeue(&self, client: u64, id: &MessageId, now: i64, delay_ns: i64) -> Result<()> {
        let offset = self.offset_of(id)?;
        let mut inner = self.lock();
        inner
            .cursor
            .requeue(offset, client, now.saturating_add(delay_ns.max(0)))
            .map_err(|e| flight_error(e, id))?;
        inner.stats.requeue_count += 1;
        inner.dirty = true;
        Ok(())
    }

    /// `TOUCH`: the message stays in flight until `now + timeout_ns`.
    pub fn touch(&self, client: u64, id: &MessageId, now: i64, timeout_ns: i64) -> Result<()> {
        let offset = self.offset_of(id)?;
        let mut inner = self.lock();
        inner
            .cursor
            .touch(offset, client, now.saturating_add(timeout_ns))
            .map_err(|e| flight_error(e, id))
    }

    /// Requeues every in-flight message past its deadline; returns how many.
    pub fn expire(&self, now: i64) -> usize {
        let mut inner = self.lock();
        let n = inner.cursor.expire(now);
        if n > 0 {
            inner.stats.timeout_count += n as u64;
            inner.dirty = true;
        }
        n
    }

    /// Drops everything queued, waiting or in flight: the channel continues from the log's end.
    pub fn empty(&self) {
        let end = self.storage.end_offset();
        self.reset(end);
    }

    /// Moves the channel to `offset`: its floor and read position move there, everything in
    /// flight or waiting is forgotten (late FINs fail), attempts start again.
    pub(crate) fn reset(&self, offset: u64) {
        self.resets.fetch_add(1, Ordering::AcqRel);
        let mut inner = self.lock();
        inner.cursor.reset(offset);
        inner.reader = LogReader::at(offset);
        inner.buffer.clear();
        inner.dirty = true;
        if self.cursor_path.is_some() {
            // Earlier entries no longer count; the journal says so in order.
            inner.unjournaled.clear();
            inner.unjournaled.push(JournalEntry::Reset(offset));
        }
    }

    /// How far the channel may read now: the log's end, or its topic's pause mark.
    fn readable_end(&self) -> u64 {
        self.feed.read_limit(self.storage.end_offset())
    }

    /// Gives waiting messages with no time that are deferred past `now` their time back
    /// (a journal replay leaves what was taken but not finished waiting with none), so they
    /// count as deferred, not depth. Delivery checks the time anyway.
    pub(crate) fn hold_back_deferred(&self, now: i64) {
        let mut inner = self.lock();
        for (offset, attempts, ready_at) in inner.cursor.to_file().entries {
            if ready_at <= now {
                if let Some(at) = self.feed.deferred_until(offset, now) {
                    inner.cursor.wait(offset, at, attempts);
                }
            }
        }
    }

    /// How many times the channel was emptied or rewound. A subscriber that sees it change
    /// forgets what it had in flight, as the channel did (NSQ's empty zeroes its clients'
    /// in-flight counts, so their RDY room is theirs again).
    pub fn reset_count(&self) -> u64 {
        self.resets.load(Ordering::Acquire)
    }

    /// Whether a take at `now` could find something: unread log, or a ready requeue. Cheap
    /// (no counting), for subscribers deciding whether to sleep.
    pub fn has_deliverable(&self, now: i64) -> bool {
        let end = self.readable_end();
        let inner = self.lock();
        inner.cursor.next() < end || !inner.buffer.is_empty() || inner.cursor.has_ready(now)
    }

    /// The channel's numbers at `now`. A deferred message counts as deferred whether the
    /// channel has read it yet or not (the topic indexes them as they are published), and as
    /// depth once its time has come, until delivered.
    pub fn stats(&self, now: i64) -> ChannelStats {
        let end = self.readable_end();
        let inner = self.lock();
        let next = inner.cursor.next();
        let unread = end.saturating_sub(next);
        let unread_deferred = self.feed.deferred_between(next, end, now).min(unread);
        let deferred = inner.cursor.deferred_count(now) as u64;
        let waiting = inner.cursor.waiting_count() as u64;
        ChannelStats {
            depth: unread - unread_deferred + (waiting - deferred),
            in_flight: inner.cursor.in_flight_count() as u64,
            deferred: deferred + unread_deferred,
            floor: inner.cursor.floor(),
            next,
            readable_end: end,
            ..inner.stats
        }
    }

    /// Moves a channel on from a paused topic's mark `from` to `to` without delivering what
    /// lies between (the topic emptied: what it held goes, what the channel has stays). A
    /// channel still behind the mark keeps its unread messages as waiting entries, one each,
    /// if there are at most [`MAX_KEPT_ON_EMPTY`]; past that, or if the channel is past the
    /// mark (rewound there), it is left alone. Returns whether it moved.
    pub(crate) fn pass_over(&self, from: u64, to: u64, now: i64) -> bool {
        let mut inner = self.lock();
        let next = inner.cursor.next();
        if to <= from || next > from || from - next > MAX_KEPT_ON_EMPTY {
            return false;
        }
        for offset in next..from {
            let ready_at = self.feed.deferred_until(offset, now).unwrap_or(0);
            inner.cursor.wait(offset, ready_at, 0);
        }
        inner.buffer.clear();
        inner.cursor.pass_over(to);
        inner.reader = LogReader::at(to);
        inner.stats.start_offset = inner.stats.start_offset.saturating_add(to - from);
        inner.dirty = true;
        true
    }

    /// Every offset below this is finished (in memory).
    pub fn floor(&self) -> u64 {
        self.lock().cursor.floor()
    }

    /// Writes the cursor file if anything changed since the last write (durable channels only).
    pub fn persist(&self) -> Result<()> {
        let Some(path) = &self.cursor_path else {
            return Ok(());
        };
        let _one_writer = self.persist_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_deleted() {
            return Ok(());
        }
        let journal_path = fin_journal::journal_path(path);
        let next_path = fin_journal::next_journal_path(path);
        let mut journals = self.lock_journals();
        let (snapshot, unjournaled) = {
            let mut inner = self.lock();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            (
                inner.cursor.to_file(),
                std::mem::take(&mut inner.unjournaled),
            )
        };
        // Until the new cursor file is in place, the old one and its journal must still
        // cover everything up to this snapshot; from here on both journals get every entry.
        if !unjournaled.is_empty() {
            let mut bytes = Vec::new();
            fin_journal::encode_entries(&unjournaled, &mut bytes);
            let _ = journals.append(&bytes, &journal_path);
        }
        let base = fin_journal::fingerprint(&snapshot);
        journals.next = FinJournal::create(&*self.fs, &next_path, base).ok();
        drop(journals);
        let result = self.fs.write_atomic(path, &snapshot.encode()).at(path);
        let mut journals = self.lock_journals();
        match &result {
            Ok(()) => {
                // The new cursor is in place: its journal takes over under the usual name.
                journals.current = journals.next.take();
                if journals.current.is_some() && self.fs.rename(&next_path, &journal_path).is_err()
                {
                    // Left under the next persist's name it would be truncated; drop it.
                    journals.current = None;
                    let _ = self.fs.remove_file(&next_path);
                }
            }
            Err(_) => {
                // Not written: try again at the next persist.
                if journals.next.take().is_some() {
                    let _ = self.fs.remove_file(&next_path);
                }
                self.lock().dirty = true;
            }
        }
        result
    }

    /// The persisted form of the cursor now (for tools and tests).
    pub fn cursor_file(&self) -> CursorFile {
        self.lock().cursor.to_file()
    }
}

impl Channel {
    /// Marks the channel deleted and removes its cursor file; waits for a persist in progress
    /// so it cannot write the file back.
    pub(crate) fn destroy(&self) -> Result<()> {
        self.mark_deleted();
        let _one_writer = self.persist_lock.lock().unwrap_or_else(|e| e.into_inner());
        *self.lock_journals() = Journals::default();
        if let Some(path) = &self.cursor_path {
            for file in [
                path.clone(),
                fin_journal::journal_path(path),
                fin_journal::next_journal_path(path),
            ] {
                match self.fs.remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&file, e)),
                }
            }
            // Durable before the delete is answered: a cursor file that came back after a
            // power cut would bring the channel back (open adopts cursor files).
            if let Some(dir) = path.parent() {
                self.fs.sync_dir(dir).at(dir)?;
            }
        }
        Ok(())
    }
}
