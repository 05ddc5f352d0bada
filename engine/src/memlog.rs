//! The log of an `#ephemeral` topic: the newest `capacity` messages in memory, nothing on
//! disk. When it is full the oldest message is dropped (channels that had not read it skip it).

use crate::error::{Error, Result};
use crate::id::MessageId;
use crate::log::{Appended, LogReader};
use crate::record::Message;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// An in-memory, bounded topic log.
#[derive(Debug)]
pub struct MemLog {
    inner: Mutex<Inner>,
    capacity: usize,
    salt: u64,
    max_body: usize,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Offset of `messages[0]`.
    base: u64,
    messages: VecDeque<Message>,
    last_timestamp: i64,
}

impl MemLog {
    /// An empty log keeping at most `capacity` messages (at least one).
    pub fn new(capacity: usize, salt: u64, max_body: usize) -> Self {
        MemLog {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
            salt,
            max_body,
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a batch; see [`crate::log::TopicLog::append`].
    pub fn append<B: AsRef<[u8]>>(
        &self,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
    ) -> Result<Appended> {
        for body in bodies {
            let size = body.as_ref().len();
            if size > self.max_body {
                return Err(Error::MessageTooLarge {
                    size,
                    max: self.max_body,
                });
            }
        }
        let mut inner = self.lock();
        let timestamp = now.max(inner.last_timestamp);
        inner.last_timestamp = timestamp;
        let first_offset = inner.base + inner.messages.len() as u64;
        for (i, body) in bodies.iter().enumerate() {
            let offset = first_offset + i as u64;
            inner.messages.push_back(Message {
                offset,
                id: MessageId::for_offset(self.salt, offset),
                timestamp,
                deliver_at,
                body: Bytes::copy_from_slice(body.as_ref()),
            });
            if inner.messages.len() > self.capacity {
                inner.messages.pop_front();
                inner.base += 1;
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Appended {
            first_offset,
            count: bodies.len() as u64,
            timestamp,
        })
    }

    /// Reads like [`crate::log::TopicLog::read`].
    pub fn read(
        &self,
        reader: &mut LogReader,
        max_bytes: usize,
        max_count: usize,
        out: &mut std::collections::VecDeque<Message>,
    ) -> Result<usize> {
        let inner = self.lock();
        let offset = reader.offset();
        if offset < inner.base {
            return Err(Error::BeforeRetention {
                earliest_offset: inner.base,
                earliest_timestamp: inner.messages.front().map_or(0, |m| m.timestamp),
            });
        }
        let start = (offset - inner.base) as usize;
        let mut bytes = 0;
        let mut count = 0;
        for m in inner.messages.iter().skip(start) {
            if count >= max_count || bytes >= max_bytes {
                break;
            }
            bytes += m.body.len() + crate::record::RECORD_HEADER_LEN;
            count += 1;
            out.push_back(m.clone());
        }
        *reader = LogReader::at(offset + count as u64);
        Ok(count)
    }

    /// The message at `offset`, if still held.
    pub fn read_one(&self, offset: u64) -> Option<Message> {
        let inner = self.lock();
        offset
            .checked_sub(inner.base)
            .and_then(|i| inner.messages.get(i as usize).cloned())
    }

    /// Oldest offset held.
    pub fn first_offset(&self) -> u64 {
        self.lock().base
    }

    /// One past the newest offset.
    pub fn end_offset(&self) -> u64 {
        let inner = self.lock();
        inner.base + inner.messages.len() as u64
    }

    /// Bytes of bodies held.
    pub fn total_bytes(&self) -> u64 {
        self.lock()
            .messages
            .iter()
            .map(|m| m.body.len() as u64)
            .sum()
    }

    /// Publish time of the oldest message held.
    pub fn first_timestamp(&self) -> Option<i64> {
        self.lock().messages.front().map(|m| m.timestamp)
    }

    /// First offset published at or after `timestamp`.
    pub fn offset_at_time(&self, timestamp: i64) -> u64 {
        let inner = self.lock();
        let i = inner.messages.partition_point(|m| m.timestamp < timestamp);
        inner.base + i as u64
    }

    /// Messages dropped because the log was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_capacity_messages() {
        let log = MemLog::new(3, 0, 100);
        log.append(&[b"a", b"b", b"c", b"d"], 0, 5).expect("append");
        assert_eq!(
            (log.first_offset(), log.end_offset(), log.dropped()),
            (1, 4, 1)
        );
        let mut out = VecDeque::new();
        assert!(log.read(&mut LogReader::at(0), 1000, 10, &mut out).is_err());
        let mut reader = LogReader::at(1);
        assert_eq!(log.read(&mut reader, 1000, 10, &mut out).expect("read"), 3);
        assert_eq!(&out[0].body[..], b"b");
        assert_eq!(reader.offset(), 4);
        assert!(log.append(&[vec![0u8; 101]], 0, 5).is_err());
    }
}
