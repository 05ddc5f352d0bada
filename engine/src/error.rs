//! The engine's typed errors.

use std::io;
use std::path::PathBuf;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process (or another `Engine` in this one) holds the data directory.
    #[error("data directory {} is locked by another process (is another nsqd running on it?)", path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// A file-system call failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes on disk do not check out (length, checksum, offset sequence, header).
    #[error("corrupt data in {} at byte {position}: {reason} (run `nsq_log repair`)", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position of the damage within the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file was written by a newer, unknown format version.
    #[error("{} has format version {found}, this build reads up to {supported}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Highest version this build understands.
        supported: u32,
    },
    /// An fsync or write failed earlier (the kernel may have dropped dirty pages), or a
    /// segment file shrank under the running log: the log refuses further appends until the
    /// data directory is reopened (and recovered).
    #[error("topic {topic} refuses appends ({cause}); restart to recover")]
    Poisoned {
        /// The topic whose log is poisoned.
        topic: String,
        /// The original failure.
        cause: String,
    },
    /// A segment file is shorter than what the log wrote to it or read from it: something
    /// outside nsqd truncated it. The topic's log stops accepting appends (see
    /// [`Error::Poisoned`]) rather than acknowledge into a file it no longer trusts.
    #[error("segment file {} is {found} bytes, shorter than the {written} bytes written to it: it was truncated behind nsqd's back", path.display())]
    Shrunk {
        /// The segment file.
        path: PathBuf,
        /// Its length now.
        found: u64,
        /// The length the log wrote (or found at open) and readers rely on.
        written: u64,
    },
    /// A topic or channel name is not valid (NSQ's rules: 1-64 of `[.a-zA-Z0-9_-]`, optional `#ephemeral`).
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// No such topic.
    #[error("topic {0} not found")]
    TopicNotFound(String),
    /// No such channel.
    #[error("channel {0} not found")]
    ChannelNotFound(String),
    /// The message is not in flight on this channel (already finished, timed out, or unknown).
    #[error("message {0} is not in flight")]
    NotInFlight(String),
    /// The message is in flight to another client.
    #[error("message {0} is in flight to another client")]
    NotOwner(String),
    /// A message body is larger than the engine accepts.
    #[error("message body of {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Size of the body.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A rewind or start position lies before the oldest retained message.
    #[error("position is before the earliest retained message (offset {earliest_offset}, timestamp {earliest_timestamp} ns)")]
    BeforeRetention {
        /// Oldest offset still in the log.
        earliest_offset: u64,
        /// Its publish time in Unix nanoseconds (0 when the log is empty).
        earliest_timestamp: i64,
    },
    /// A start offset lies past the end of the log.
    #[error("offset {requested} is past the end of the log ({end})")]
    PastEnd {
        /// The requested offset.
        requested: u64,
        /// The log's next offset.
        end: u64,
    },
    /// The operation needs a durable channel or topic (ephemeral ones keep nothing to replay).
    #[error("{0} is ephemeral: it keeps no log to replay")]
    Ephemeral(String),
    /// The thread that writes a topic's log stopped before it handled this append (the log
    /// was closed, or the thread could not be started); the append did not happen.
    #[error("the log writer of topic {0} stopped; the append was not made")]
    WriterStopped(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The same error once more, for each of several appenders one failed write or fsync
    /// covered (an `io::Error` cannot be cloned: its OS error code, or else its kind and text, is copied).
    pub fn duplicate(&self) -> Self {
        match self {
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Corrupt {
                path,
                position,
                reason,
            } => Error::corrupt(path.clone(), *position, reason.clone()),
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => Error::UnsupportedVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            Error::Poisoned { topic, cause } => Error::Poisoned {
                topic: topic.clone(),
                cause: cause.clone(),
            },
            Error::Shrunk {
                path,
                found,
                written,
            } => Error::Shrunk {
                path: path.clone(),
                found: *found,
                written: *written,
            },
            Error::InvalidName(n) => Error::InvalidName(n.clone()),
            Error::TopicNotFound(n) => Error::TopicNotFound(n.clone()),
            Error::ChannelNotFound(n) => Error::ChannelNotFound(n.clone()),
            Error::NotInFlight(n) => Error::NotInFlight(n.clone()),
            Error::NotOwner(n) => Error::NotOwner(n.clone()),
            Error::MessageTooLarge { size, max } => Error::MessageTooLarge {
                size: *size,
                max: *max,
            },
            Error::BeforeRetention {
                earliest_offset,
                earliest_timestamp,
            } => Error::BeforeRetention {
                earliest_offset: *earliest_offset,
                earliest_timestamp: *earliest_timestamp,
            },
            Error::PastEnd { requested, end } => Error::PastEnd {
                requested: *requested,
                end: *end,
            },
            Error::Ephemeral(n) => Error::Ephemeral(n.clone()),
            Error::WriterStopped(n) => Error::WriterStopped(n.clone()),
        }
    }

    /// A corruption error.
    pub fn corrupt(path: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }
}

/// Adds a path to I/O results.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
