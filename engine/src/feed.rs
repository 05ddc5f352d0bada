//! What a topic feeds its channels, shared by the topic and every channel of it: how far in
//! the log they may read (a paused topic's pause mark), and which records ahead of them are
//! deferred (DPUB), so a channel counts those as deferred, not depth, without reading them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// `pause_mark` when the topic is not paused.
const NOT_PAUSED: u64 = u64::MAX;

/// A topic's feed to its channels.
#[derive(Debug)]
pub(crate) struct Feed {
    /// Channels do not read at or past this offset ([`NOT_PAUSED`]: no limit). NSQ's paused
    /// topic keeps what was published while paused to itself; here that is the log past it.
    pause_mark: AtomicU64,
    deferred: Mutex<DeferredIndex>,
}

/// Deferred records by offset range: `first -> (end, deliver_at)`, one range per deferred
/// batch. Ranges whose time has come are dropped as they are met: from then on the records
/// count as depth, as NSQ moves a due message from its deferred queue to the channel's.
#[derive(Debug, Default)]
struct DeferredIndex {
    ranges: BTreeMap<u64, (u64, i64)>,
    /// Records from here on were indexed; older ones were not looked at (see
    /// [`Feed::indexed_from`]).
    indexed_from: u64,
}

impl Feed {
    /// A feed paused at `pause_mark` (if any), indexing deferred records from `indexed_from`.
    pub(crate) fn new(pause_mark: Option<u64>, indexed_from: u64) -> Self {
        Feed {
            pause_mark: AtomicU64::new(pause_mark.unwrap_or(NOT_PAUSED)),
            deferred: Mutex::new(DeferredIndex {
                ranges: BTreeMap::new(),
                indexed_from,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DeferredIndex> {
        self.deferred.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pause mark, while the topic is paused.
    pub(crate) fn pause_mark(&self) -> Option<u64> {
        Some(self.pause_mark.load(Ordering::Acquire)).filter(|&m| m != NOT_PAUSED)
    }

    /// Pauses at `mark`, or (`None`) lets channels read to the log's end again.
    pub(crate) fn set_pause_mark(&self, mark: Option<u64>) {
        self.pause_mark
            .store(mark.unwrap_or(NOT_PAUSED), Ordering::Release);
    }

    /// How far channels may read in a log ending at `end`.
    pub(crate) fn read_limit(&self, end: u64) -> u64 {
        end.min(self.pause_mark.load(Ordering::Acquire))
    }

    /// Records that `count` records from `first` are not deliverable before `deliver_at`
    /// (nothing to record if that is not after `now`).
    pub(crate) fn note_deferred(&self, first: u64, count: u64, deliver_at: i64, now: i64) {
        if count == 0 || deliver_at <= now {
            return;
        }
        self.lock()
            .ranges
            .insert(first, (first.saturating_add(count), deliver_at));
    }

    /// Indexed records in `[from, to)` still deferred at `now`.
    pub(crate) fn deferred_between(&self, from: u64, to: u64, now: i64) -> u64 {
        if from >= to {
            return 0;
        }
        let mut index = self.lock();
        index.ranges.retain(|_, &mut (_, at)| at > now);
        index
            .ranges
            .range(..to)
            .map(|(&first, &(end, _))| end.min(to).saturating_sub(first.max(from)))
            .sum()
    }

    /// When the indexed record at `offset` is due, if it is deferred past `now`.
    pub(crate) fn deferred_until(&self, offset: u64, now: i64) -> Option<i64> {
        let index = self.lock();
        let (_, &(end, at)) = index.ranges.range(..=offset).next_back()?;
        (offset < end && at > now).then_some(at)
    }

    /// Where indexing starts: records below were never looked at (open indexes only what a
    /// channel has yet to read, and only as far back as a deferral can still be running).
    pub(crate) fn indexed_from(&self) -> u64 {
        self.lock().indexed_from
    }

    /// Takes in the deferred ranges of records in `[from, indexed_from)`, found by a scan.
    pub(crate) fn extend_back(&self, from: u64, found: impl IntoIterator<Item = (u64, i64)>) {
        let mut index = self.lock();
        for (offset, deliver_at) in found {
            if offset < index.indexed_from {
                index
                    .ranges
                    .insert(offset, (offset.saturating_add(1), deliver_at));
            }
        }
        index.indexed_from = index.indexed_from.min(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_deferred_records_in_a_range_until_due() {
        let feed = Feed::new(None, 0);
        feed.note_deferred(3, 1, 100, 0);
        feed.note_deferred(5, 3, 200, 0);
        feed.note_deferred(9, 1, 50, 60);
        assert_eq!(feed.deferred_between(0, 10, 0), 4);
        assert_eq!(feed.deferred_between(4, 10, 0), 3);
        assert_eq!(feed.deferred_between(6, 7, 0), 1);
        assert_eq!(feed.deferred_between(0, 3, 0), 0);
        assert_eq!(feed.deferred_between(0, 10, 100), 3);
        assert_eq!(feed.deferred_between(0, 10, 200), 0);
    }

    #[test]
    fn a_pause_mark_limits_reads() {
        let feed = Feed::new(Some(4), 0);
        assert_eq!(feed.read_limit(10), 4);
        assert_eq!(feed.read_limit(2), 2);
        feed.set_pause_mark(None);
        assert_eq!(feed.pause_mark(), None);
        assert_eq!(feed.read_limit(10), 10);
    }

    #[test]
    fn a_scan_extends_the_index_backwards() {
        let feed = Feed::new(None, 10);
        feed.note_deferred(12, 1, 100, 0);
        feed.extend_back(4, [(5, 100), (9, 100), (12, 100)]);
        assert_eq!(feed.indexed_from(), 4);
        // 5 and 9 were below the old start, so taken; 12 was already there.
        assert_eq!(feed.deferred_between(0, 20, 0), 3);
    }
}
