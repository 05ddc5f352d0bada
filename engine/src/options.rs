//! Engine configuration.

use crate::clock::{Clock, SystemClock};
use crate::fs::{FileSystem, RealFs};
use std::sync::Arc;
use std::time::Duration;

/// When appended data is fsynced, with NSQ's `--sync-every` / `--sync-timeout` meaning.
///
/// What each policy survives (an append is acknowledged once its bytes are written to the
/// segment file, or, with `every == 1`, once they are fsynced):
///
/// | failure | `every == 1` | `every == N > 1` / `timeout == D` |
/// |---|---|---|
/// | process crash (`kill -9`, panic, OOM kill) | nothing acknowledged lost | nothing acknowledged lost |
/// | power cut, kernel crash | nothing acknowledged lost | up to the last N-1 messages, or the last D of time, may be lost; the log recovers to a clean prefix |
/// | failed fsync (I/O error) | the append fails; the log refuses appends until reopened | the same, found at the next sync |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPolicy {
    /// Fsync after this many messages (`1`: every append waits for its fsync, shared by
    /// concurrent appenders through group commit). `0` means only the timeout applies.
    pub every: u64,
    /// Fsync when this much time has passed since the last fsync and something is unsynced
    /// (checked on append and by [`crate::Engine::tick`]).
    pub timeout: Duration,
}

impl SyncPolicy {
    /// NSQ's defaults: every 2500 messages or 2 seconds.
    pub const NSQ_DEFAULT: SyncPolicy = SyncPolicy {
        every: 2500,
        timeout: Duration::from_secs(2),
    };

    /// Every append is fsynced before it returns.
    pub fn always() -> Self {
        SyncPolicy {
            every: 1,
            timeout: Duration::from_secs(2),
        }
    }

    /// Whether every append waits for its fsync.
    pub fn is_strict(&self) -> bool {
        self.every == 1
    }
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self::NSQ_DEFAULT
    }
}

/// How much *consumed* data a topic keeps for replay. Data some durable channel has not
/// finished is never deleted, whatever this says. With both bounds unset consumed segments are
/// reclaimed at once (NSQ's behaviour); a segment is kept while it is within every bound set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// Keep consumed segments whose newest message is younger than this (nanoseconds).
    pub time_ns: Option<i64>,
    /// Keep at most this many bytes of consumed segments (newest first).
    pub bytes: Option<u64>,
}

impl Retention {
    /// Whether consumed data is kept at all.
    pub fn keeps_anything(&self) -> bool {
        self.time_ns.is_some_and(|t| t > 0) || self.bytes.is_some_and(|b| b > 0)
    }
}

/// Engine configuration. `Options::default()` is NSQ's defaults on the real file system.
#[derive(Debug, Clone)]
pub struct Options {
    /// The file system all I/O goes through.
    pub fs: Arc<dyn FileSystem>,
    /// The source of time.
    pub clock: Arc<dyn Clock>,
    /// A segment rolls once it holds this many bytes (NSQ's `--max-bytes-per-file`).
    pub max_bytes_per_file: u64,
    /// Bytes of records between two sparse index entries.
    pub index_interval_bytes: u64,
    /// When appends are fsynced.
    pub sync: SyncPolicy,
    /// Largest message body accepted (NSQ's `--max-msg-size`).
    pub max_msg_size: usize,
    /// How often changed channel cursors are persisted by [`crate::Engine::tick`].
    pub persist_interval: Duration,
    /// Bytes a channel reads ahead from the log in one go.
    pub read_ahead_bytes: usize,
    /// Messages an `#ephemeral` topic keeps in memory (NSQ's `--mem-queue-size`).
    pub mem_queue_size: usize,
    /// Default retention of consumed data, per topic overridable.
    pub retention: Retention,
    /// The longest deferral (DPUB) a publisher may ask for (NSQ's `--max-req-timeout`). Open
    /// looks for deferred messages only among those published this long ago or less.
    pub max_defer: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fs: Arc::new(RealFs),
            clock: Arc::new(SystemClock),
            max_bytes_per_file: 100 * 1024 * 1024,
            index_interval_bytes: 32 * 1024,
            sync: SyncPolicy::default(),
            max_msg_size: 1024 * 1024,
            persist_interval: Duration::from_secs(1),
            read_ahead_bytes: 256 * 1024,
            mem_queue_size: 10_000,
            retention: Retention::default(),
            max_defer: Duration::from_secs(3600),
        }
    }
}
