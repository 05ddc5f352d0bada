//! A topic's log, on disk or (for `#ephemeral` topics) in memory, behind one interface.

use crate::error::Result;
use crate::log::{Appended, Completion, LogReader, TopicLog};
use crate::memlog::MemLog;
use crate::record::Message;
use std::collections::VecDeque;

/// Where a topic's messages live.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per topic, never moved around
pub enum Storage {
    /// A segmented log on disk.
    Disk(TopicLog),
    /// A bounded in-memory log (`#ephemeral` topics).
    Memory(MemLog),
}

impl Storage {
    /// Appends a batch of bodies.
    pub fn append<B: AsRef<[u8]>>(
        &self,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
    ) -> Result<Appended> {
        match self {
            Storage::Disk(log) => log.append(bodies, deliver_at, now),
            Storage::Memory(log) => log.append(bodies, deliver_at, now),
        }
    }

    /// Appends a batch and reports the result to `done` (see [`TopicLog::submit`]): at once in
    /// memory and for relaxed sync policies, after the group's fsync under a strict one.
    pub fn submit<B: AsRef<[u8]>>(
        &self,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
        done: Completion,
    ) {
        match self {
            Storage::Disk(log) => log.submit(bodies, deliver_at, now, done),
            Storage::Memory(log) => done(log.append(bodies, deliver_at, now)),
        }
    }

    /// Reads sequentially from `reader`.
    pub fn read(
        &self,
        reader: &mut LogReader,
        max_bytes: usize,
        max_count: usize,
        out: &mut VecDeque<Message>,
    ) -> Result<usize> {
        match self {
            Storage::Disk(log) => log.read(reader, max_bytes, max_count, out),
            Storage::Memory(log) => log.read(reader, max_bytes, max_count, out),
        }
    }

    /// Reads one message by offset.
    pub fn read_one(&self, offset: u64) -> Result<Option<Message>> {
        match self {
            Storage::Disk(log) => log.read_one(offset),
            Storage::Memory(log) => Ok(log.read_one(offset)),
        }
    }

    /// Damage readers skipped in sealed segments (always empty in memory).
    pub fn skipped_damage(&self) -> Vec<crate::recovery::RecoveryEvent> {
        match self {
            Storage::Disk(log) => log.skipped_damage(),
            Storage::Memory(_) => Vec::new(),
        }
    }

    /// Oldest retained offset.
    pub fn first_offset(&self) -> u64 {
        match self {
            Storage::Disk(log) => log.first_offset(),
            Storage::Memory(log) => log.first_offset(),
        }
    }

    /// One past the newest readable offset.
    pub fn end_offset(&self) -> u64 {
        match self {
            Storage::Disk(log) => log.end_offset(),
            Storage::Memory(log) => log.end_offset(),
        }
    }

    /// Publish time of the oldest retained message.
    pub fn first_timestamp(&self) -> Result<Option<i64>> {
        match self {
            Storage::Disk(log) => log.first_timestamp(),
            Storage::Memory(log) => Ok(log.first_timestamp()),
        }
    }

    /// First offset published at or after `timestamp`.
    pub fn offset_at_time(&self, timestamp: i64) -> Result<u64> {
        match self {
            Storage::Disk(log) => log.offset_at_time(timestamp),
            Storage::Memory(log) => Ok(log.offset_at_time(timestamp)),
        }
    }

    /// Bytes held.
    pub fn total_bytes(&self) -> u64 {
        match self {
            Storage::Disk(log) => log.total_bytes(),
            Storage::Memory(log) => log.total_bytes(),
        }
    }

    /// The disk log, if this is one.
    pub fn disk(&self) -> Option<&TopicLog> {
        match self {
            Storage::Disk(log) => Some(log),
            Storage::Memory(_) => None,
        }
    }
}
