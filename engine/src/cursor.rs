//! A channel's position over its topic's log, as a pure state machine (no I/O), and the
//! cursor file that persists it.
//!
//! Every offset below `floor` is finished. Between `floor` and `next` an offset is finished
//! unless it is in flight or waiting (requeued with a delay, timed out, or held back by DPUB),
//! so only those few are stored: the unfinished set is bounded by what is in flight or
//! requeued, not by how far `next` has run ahead of a stuck message.

use crate::error::{Error, Result};
use crate::framed;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where a new channel (or a rewind) starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelStart {
    /// NSQ's rule: the topic's backlog for its first durable channel, the tail for later ones.
    #[default]
    Default,
    /// Only messages published from now on.
    Tail,
    /// The oldest retained message.
    Earliest,
    /// A given offset.
    Offset(u64),
    /// The first message published at or after this time (Unix ns).
    Timestamp(i64),
}

/// A message out with a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// When it times out (Unix ns).
    pub deadline: i64,
    /// Deliveries so far, this one included.
    pub attempts: u16,
    /// The server's id of the client holding it.
    pub client: u64,
}

/// A message waiting to be delivered again (or, for DPUB, the first time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// Not deliverable before this time (Unix ns).
    pub ready_at: i64,
    /// Deliveries so far.
    pub attempts: u16,
}

/// Why an in-flight operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightError {
    /// Not in flight.
    NotInFlight,
    /// In flight to another client.
    NotOwner,
}

/// The in-memory state of one channel's cursor.
#[derive(Debug, Clone, Default)]
pub struct CursorState {
    floor: u64,
    next: u64,
    in_flight: BTreeMap<u64, InFlight>,
    deadlines: BTreeSet<(i64, u64)>,
    waiting: BTreeMap<u64, Waiting>,
    ready: BTreeSet<(i64, u64)>,
}

impl CursorState {
    /// A cursor with nothing unfinished, reading from `offset`.
    pub fn at(offset: u64) -> Self {
        CursorState {
            floor: offset,
            next: offset,
            ..Default::default()
        }
    }

    /// Every offset below this is finished.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The next offset to take from the log.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Messages in flight.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Messages waiting (requeued, timed out or deferred).
    pub fn waiting_count(&self) -> usize {
        self.waiting.len()
    }

    /// Waiting messages not yet ready at `now` (NSQ's deferred count).
    pub fn deferred_count(&self, now: i64) -> usize {
        self.ready.range((now.saturating_add(1), 0)..).count()
    }

    /// Whether a requeued or deferred message is ready at `now` (cheap: the earliest only).
    pub fn has_ready(&self, now: i64) -> bool {
        self.ready
            .first()
            .is_some_and(|&(ready_at, _)| ready_at <= now)
    }

    /// The in-flight entry for `offset`.
    pub fn in_flight(&self, offset: u64) -> Option<&InFlight> {
        self.in_flight.get(&offset)
    }

    /// Oldest unfinished offset's entry time is not tracked; this gives the oldest unfinished offset.
    fn recompute_floor(&mut self) {
        let mut floor = self.next;
        if let Some((&o, _)) = self.in_flight.first_key_value() {
            floor = floor.min(o);
        }
        if let Some((&o, _)) = self.waiting.first_key_value() {
            floor = floor.min(o);
        }
        self.floor = floor;
    }

    /// Takes the first waiting message ready at `now`: `(offset, attempts so far)`.
    pub fn pop_ready(&mut self, now: i64) -> Option<(u64, u16)> {
        let &(ready_at, offset) = self.ready.first()?;
        if ready_at > now {
            return None;
        }
        self.ready.remove(&(ready_at, offset));
        let waiting = self.waiting.remove(&offset)?;
        self.recompute_floor();
        Some((offset, waiting.attempts))
    }

    /// The log offset `next` has been taken out of the log (delivered or deferred).
    pub fn advance_next(&mut self, offset: u64) {
        debug_assert!(offset >= self.next);
        self.next = offset + 1;
        self.recompute_floor();
    }

    /// Moves `next` forward to `offset` without delivering (messages lost to the log's front
    /// being trimmed, e.g. an ephemeral channel that fell behind).
    pub fn skip_to(&mut self, offset: u64) {
        if offset > self.next {
            self.next = offset;
            self.waiting.retain(|&o, _| o >= offset);
            self.ready.retain(|&(_, o)| o >= offset);
            self.recompute_floor();
        }
    }

    /// Moves `next` forward to `offset`, counting what it passes as finished (it was never
    /// the channel's); waiting and in-flight messages stay.
    pub fn pass_over(&mut self, offset: u64) {
        if offset > self.next {
            self.next = offset;
            self.recompute_floor();
        }
    }

    /// Holds `offset` back until `ready_at` (DPUB, or a requeue with a delay).
    pub fn wait(&mut self, offset: u64, ready_at: i64, attempts: u16) {
        if let Some(old) = self.waiting.insert(offset, Waiting { ready_at, attempts }) {
            self.ready.remove(&(old.ready_at, offset));
        }
        self.ready.insert((ready_at, offset));
        self.recompute_floor();
    }

    /// Records `offset` as delivered to `client` until `deadline`.
    pub fn start_flight(&mut self, offset: u64, attempts: u16, client: u64, deadline: i64) {
        if let Some(old) = self.in_flight.insert(
            offset,
            InFlight {
                deadline,
                attempts,
                client,
            },
        ) {
            self.deadlines.remove(&(old.deadline, offset));
        }
        self.deadlines.insert((deadline, offset));
        self.recompute_floor();
    }

    fn take_flight(&mut self, offset: u64, client: u64) -> Result<InFlight, FlightError> {
        match self.in_flight.get(&offset) {
            None => return Err(FlightError::NotInFlight),
            Some(f) if f.client != client => return Err(FlightError::NotOwner),
            Some(_) => {}
        }
        let flight = self
            .in_flight
            .remove(&offset)
            .ok_or(FlightError::NotInFlight)?;
        self.deadlines.remove(&(flight.deadline, offset));
        Ok(flight)
    }

    /// `FIN`: the message is done for good.
    pub fn finish(&mut self, offset: u64, client: u64) -> Result<InFlight, FlightError> {
        let flight = self.take_flight(offset, client)?;
        self.recompute_floor();
        Ok(flight)
    }

    /// `REQ`: deliver the message again at `ready_at`.
    pub fn requeue(
        &mut self,
        offset: u64,
        client: u64,
        ready_at: i64,
    ) -> Result<InFlight, FlightError> {
        let flight = self.take_flight(offset, client)?;
        self.wait(offset, ready_at, flight.attempts);
        Ok(flight)
    }

    /// `TOUCH`: extend the deadline.
    pub fn touch(&mut self, offset: u64, client: u64, deadline: i64) -> Result<(), FlightError> {
        let flight = self.take_flight(offset, client)?;
        self.start_flight(offset, flight.attempts, client, deadline);
        Ok(())
    }

    /// Requeues (ready now) every in-flight message whose deadline has passed; returns how many.
    pub fn expire(&mut self, now: i64) -> usize {
        let mut expired = 0;
        while let Some(&(deadline, offset)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, offset));
            if let Some(flight) = self.in_flight.remove(&offset) {
                self.wait(offset, now, flight.attempts);
                expired += 1;
            }
        }
        expired
    }

    /// Marks `finished` (sorted, as a journal replays them on open) finished. Offsets from
    /// `next` on move `next` past them; the offsets skipped over that are not in the list
    /// were taken but not finished, so they wait to be delivered again at once.
    pub fn replay_finished(&mut self, finished: &[u64]) {
        for &offset in finished {
            if offset < self.next {
                if let Some(w) = self.waiting.remove(&offset) {
                    self.ready.remove(&(w.ready_at, offset));
                }
                if let Some(f) = self.in_flight.remove(&offset) {
                    self.deadlines.remove(&(f.deadline, offset));
                }
                continue;
            }
            for unfinished in self.next..offset {
                self.waiting.insert(
                    unfinished,
                    Waiting {
                        ready_at: 0,
                        attempts: 0,
                    },
                );
                self.ready.insert((0, unfinished));
            }
            self.next = offset + 1;
        }
        self.recompute_floor();
    }

    /// Forgets everything in flight or waiting and reads from `offset` (rewind, empty).
    pub fn reset(&mut self, offset: u64) {
        *self = CursorState::at(offset);
    }

    /// The persisted form: floor, next, and every unfinished offset below next. In-flight
    /// messages are stored as ready at once, so a restart redelivers them.
    pub fn to_file(&self) -> CursorFile {
        let mut entries: Vec<(u64, u16, i64)> = self
            .waiting
            .iter()
            .map(|(&o, w)| (o, w.attempts, w.ready_at))
            .collect();
        entries.extend(self.in_flight.iter().map(|(&o, f)| (o, f.attempts, 0)));
        entries.sort_unstable();
        CursorFile {
            floor: self.floor,
            next: self.next,
            entries,
        }
    }

    /// Rebuilds a cursor from its persisted form, dropping entries outside `[floor, next)`.
    pub fn from_file(file: &CursorFile) -> Self {
        let mut state = CursorState::at(file.next);
        for &(offset, attempts, ready_at) in &file.entries {
            if offset >= file.floor && offset < file.next {
                state.wait(offset, ready_at, attempts);
            }
        }
        state.recompute_floor();
        state
    }
}

/// What a cursor file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorFile {
    /// Every offset below this is finished.
    pub floor: u64,
    /// The next offset to read from the log.
    pub next: u64,
    /// Unfinished offsets in `[floor, next)`: `(offset, attempts so far, ready at)`.
    pub entries: Vec<(u64, u16, i64)>,
}

/// Magic bytes of a cursor file.
pub const CURSOR_MAGIC: &[u8; 8] = b"NSQRCUR\0";
/// Cursor file format version.
pub const CURSOR_VERSION: u32 = framed::VERSION;

impl CursorFile {
    /// Encodes the file (see [`crate::framed`]).
    pub fn encode(&self) -> Vec<u8> {
        framed::encode(CURSOR_MAGIC, self)
    }

    /// Decodes and checks a cursor file's bytes.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let file: CursorFile = framed::decode(path, CURSOR_MAGIC, bytes)?;
        if file.floor > file.next {
            return Err(Error::corrupt(
                path,
                framed::HEADER_LEN as u64,
                "floor is past next",
            ));
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn floor_follows_oldest_unfinished() {
        let mut c = CursorState::at(0);
        for o in 0..5 {
            c.advance_next(o);
            c.start_flight(o, 1, 7, 100);
        }
        assert_eq!(c.floor(), 0);
        c.finish(1, 7).expect("in flight");
        c.finish(0, 7).expect("in flight");
        assert_eq!(c.floor(), 2);
        assert_eq!(c.finish(0, 7), Err(FlightError::NotInFlight));
        assert_eq!(c.finish(2, 8), Err(FlightError::NotOwner));
        c.requeue(2, 7, 50).expect("in flight");
        assert_eq!(c.floor(), 2);
        assert_eq!(c.pop_ready(49), None);
        assert_eq!(c.pop_ready(50), Some((2, 1)));
        c.start_flight(2, 2, 7, 200);
        assert_eq!(c.expire(99), 0);
        assert_eq!(c.expire(100), 2);
        assert_eq!(c.pop_ready(100), Some((3, 1)));
        assert_eq!(c.floor(), 2);
        assert_eq!(c.finish(2, 7).map(|f| f.attempts), Ok(2));
        assert_eq!(c.floor(), 4);
        assert_eq!(c.pop_ready(100), Some((4, 1)));
        assert_eq!(c.floor(), 5);
    }

    #[test]
    fn persisted_form_redelivers_unfinished() {
        let mut c = CursorState::at(10);
        for o in 10..14 {
            c.advance_next(o);
            c.start_flight(o, 2, 1, 100);
        }
        c.finish(10, 1).expect("in flight");
        c.requeue(12, 1, 500).expect("in flight");
        let file = c.to_file();
        assert_eq!(
            file,
            CursorFile {
                floor: 11,
                next: 14,
                entries: vec![(11, 2, 0), (12, 2, 500), (13, 2, 0)]
            }
        );
        let bytes = file.encode();
        let back = CursorFile::decode(Path::new("c"), &bytes).expect("valid");
        assert_eq!(back, file);
        let mut restored = CursorState::from_file(&back);
        assert_eq!(restored.floor(), 11);
        assert_eq!(restored.pop_ready(0), Some((11, 2)));
        assert_eq!(restored.pop_ready(0), Some((13, 2)));
        assert_eq!(restored.pop_ready(499), None);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(
                CursorFile::decode(Path::new("c"), &bad).is_err(),
                "flip at {at} undetected"
            );
        }
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = CursorFile::decode(Path::new("c"), &bytes);
        }
    }
}
