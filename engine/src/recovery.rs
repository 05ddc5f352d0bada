//! What opening a data directory found and fixed, reported so the server can log it.

use std::fmt;
use std::path::PathBuf;

/// One thing recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryEvent {
    /// A torn or checksum-failing tail of a topic's last segment was cut off.
    TruncatedTail {
        /// The segment.
        path: PathBuf,
        /// Where the last good record ends (the new file length).
        position: u64,
        /// Bytes removed.
        dropped_bytes: u64,
        /// Why the record at `position` was rejected.
        reason: String,
    },
    /// A reader met unreadable data in a segment (sealed, or the active one before its last
    /// index entry; or a segment file missing between two others) and skipped to the next record that checks out. Found while serving, not
    /// on open: sealed segments are not scanned on open. `nsq_log repair` removes it for good.
    SkippedDamage {
        /// The segment.
        path: PathBuf,
        /// Byte position of the damage.
        position: u64,
        /// What was wrong.
        reason: String,
        /// First offset skipped.
        from: u64,
        /// One past the last offset skipped.
        to: u64,
    },
    /// An index was missing or damaged and was rebuilt (or trimmed) from the records.
    IndexRepaired {
        /// The index file.
        path: PathBuf,
    },
    /// The newest segment held no complete header (a roll cut short) and was removed; the one
    /// before it is the active segment again.
    EmptySegmentRemoved {
        /// The removed segment.
        path: PathBuf,
    },
    /// A segment created just before a crash held no complete header; it was re-initialised.
    HeaderRewritten {
        /// The segment.
        path: PathBuf,
    },
    /// A channel cursor pointed past the end of the log (data lost with unsynced writes) and
    /// was moved back to the end.
    CursorClamped {
        /// Topic.
        topic: String,
        /// Channel.
        channel: String,
        /// Offset the cursor had.
        from: u64,
        /// Offset it has now.
        to: u64,
    },
    /// A channel listed in the metadata had no cursor file; it starts again from the oldest
    /// retained message (redelivery rather than loss).
    CursorMissing {
        /// Topic.
        topic: String,
        /// Channel.
        channel: String,
    },
    /// A channel's finished-offsets journal held damaged entries (skipped: those FINs are
    /// redelivered), a torn tail (cut off), or entries past the log's end (dropped); the
    /// journal is rewritten without them.
    JournalDamaged {
        /// The journal file.
        path: PathBuf,
        /// Entries that failed their checksum between good ones.
        damaged_entries: usize,
        /// Bytes cut from the end.
        torn_bytes: u64,
        /// Entries naming offsets past the log's end (records lost with unsynced writes),
        /// dropped so they cannot finish the new messages that take those offsets.
        past_end: usize,
    },
    /// A file or directory left by an interrupted create or delete was removed.
    RemovedLeftover {
        /// What was removed.
        path: PathBuf,
    },
    /// A cursor file that the metadata did not list (a missing or stale `meta`, or a create
    /// interrupted by a crash) was taken back in as a channel.
    AdoptedChannel {
        /// Topic.
        topic: String,
        /// Channel.
        channel: String,
    },
    /// A cursor file the metadata did not list was unreadable, so no channel was made of it.
    /// It is left in place: `nsq_log repair` takes it in (reset to the oldest message).
    IgnoredCursor {
        /// The cursor file.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// A topic directory that the metadata did not list (created just before a crash) was
    /// taken back in.
    AdoptedTopic {
        /// The topic.
        topic: String,
    },
}

impl fmt::Display for RecoveryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryEvent::SkippedDamage { path, position, reason, from, to } => write!(
                f,
                "corrupt data in {} at byte {position}: {reason}; skipped offsets {from}..{} (run `nsq_log repair` on the stopped nsqd)",
                path.display(),
                to.saturating_sub(1)
            ),
            RecoveryEvent::TruncatedTail { path, position, dropped_bytes, reason } => write!(
                f,
                "truncated torn tail of {} at byte {position} ({dropped_bytes} bytes dropped: {reason})",
                path.display()
            ),
            RecoveryEvent::IndexRepaired { path } => write!(f, "rebuilt index {}", path.display()),
            RecoveryEvent::EmptySegmentRemoved { path } => write!(
                f,
                "removed {}, a segment without a complete header (a roll cut short)",
                path.display()
            ),
            RecoveryEvent::HeaderRewritten { path } => {
                write!(f, "re-initialised empty segment {} with a torn header", path.display())
            }
            RecoveryEvent::CursorClamped { topic, channel, from, to } => write!(
                f,
                "channel {topic}/{channel} pointed past the end of the log ({from}); moved to {to}"
            ),
            RecoveryEvent::CursorMissing { topic, channel } => write!(
                f,
                "channel {topic}/{channel} had no cursor file; it replays from the oldest retained message"
            ),
            RecoveryEvent::JournalDamaged { path, damaged_entries, torn_bytes, past_end } => write!(
                f,
                "finished-offsets journal {}: skipped {damaged_entries} damaged entries, cut a torn tail of {torn_bytes} bytes (those messages are redelivered), dropped {past_end} entries past the log's end",
                path.display()
            ),
            RecoveryEvent::RemovedLeftover { path } => {
                write!(f, "removed {} left by an interrupted operation", path.display())
            }
            RecoveryEvent::AdoptedChannel { topic, channel } => write!(
                f,
                "channel {topic}/{channel} had a cursor file but was not in the metadata; taken back in"
            ),
            RecoveryEvent::IgnoredCursor { path, reason } => write!(
                f,
                "ignored {}: not in the metadata and unreadable ({reason}); `nsq_log repair` takes it in",
                path.display()
            ),
            RecoveryEvent::AdoptedTopic { topic } => {
                write!(f, "topic {topic} was on disk but not in the metadata; taken back in")
            }
        }
    }
}
