//! Offline checking and repair of a data directory (`nsq_log verify` / `nsq_log repair`).
//!
//! Unlike [`crate::Engine::open`], which trusts sealed segments and their indexes and only
//! scans the tail, these read every byte: every record's length, checksum and offset sequence,
//! every index entry against the record it names, every cursor against the log. Both take the
//! directory's `LOCK`, so they refuse to run beside a live nsqd.
//!
//! Repair never deletes bytes it cannot read: they go to a quarantine file beside their
//! segment (format in `FORMAT.md`). A lost record inside the log is replaced by a *hole*: a
//! record with its offset and an empty body, which channels skip (NSQ never accepts an empty
//! message, so no real message looks like one). Offsets stay dense and ids stable.
//!
//! Channels' finished-offsets journals are judged by open's own rules (`journal`): crash
//! leftovers are notes, damage is a finding, and repair leaves what open would have left.

mod journal;
mod layout;
mod repair;
mod repair_journals;
pub mod scan;
mod verify;

pub use layout::{catalogue, list_topics, TopicFiles};
pub use repair::{repair, RepairAction, RepairReport};
pub use verify::{total_bytes, verify, VerifyReport};

use serde::Serialize;
use std::path::PathBuf;

/// What kind of problem a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The `meta` file is missing or damaged.
    Meta,
    /// A segment header is damaged or names the wrong offset.
    SegmentHeader,
    /// Bytes inside a segment hold no valid record.
    BadRecord,
    /// The last segment ends in an incomplete or damaged record (nsqd truncates it on start).
    TornTail,
    /// Offsets no segment holds, between two segments.
    MissingOffsets,
    /// An index file is missing, damaged, or names records that are not there.
    Index,
    /// A cursor file is missing, damaged, or points outside the log.
    Cursor,
    /// A channel's finished-offsets journal (`.fin`, `.fin.next`) is damaged, names offsets
    /// past the log's end, extends no cursor file, or is left over by a crash.
    Journal,
}

/// One problem, located.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// The file.
    pub path: PathBuf,
    /// Byte position in the file, when it is about bytes.
    pub position: Option<u64>,
    /// The log offset involved, when there is one.
    pub offset: Option<u64>,
    /// What is wrong, in words.
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(p) = self.position {
            write!(f, " byte {p}")?;
        }
        if let Some(o) = self.offset {
            write!(f, " offset {o}")?;
        }
        write!(f, ": {}", self.detail)
    }
}
