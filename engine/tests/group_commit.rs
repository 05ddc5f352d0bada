//! Group commit under `sync_every = 1`: batches that queue while the writer thread's fsync
//! runs go out as one write with one fsync, each appender is completed only after that
//! fsync, and a failed fsync fails exactly the appenders it covered.

mod common;

use common::*;
use nsq_engine::fs::{DirEntry, FileSystem, FsFile, FsLock, OpenMode, SimFaults, SimFs};
use nsq_engine::{Appended, Engine, Error, Options, SyncCounts, Topic};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

/// Holds segment fsyncs at a gate the test opens, and counts segment writes of records.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
    segment_writes: AtomicU64,
    /// Writes of records past the file's end (not into prepared space).
    extending_writes: AtomicU64,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    waiting: bool,
}

impl Gate {
    fn close(&self) {
        self.state.lock().expect("gate").closed = true;
    }

    fn open(&self) {
        self.state.lock().expect("gate").closed = false;
        self.changed.notify_all();
    }

    /// Waits until a segment fsync is held at the closed gate.
    fn wait_for_held_sync(&self) {
        let mut state = self.state.lock().expect("gate");
        while !state.waiting {
            state = self.changed.wait(state).expect("gate");
        }
    }

    fn pass(&self) {
        let mut state = self.state.lock().expect("gate");
        if state.closed {
            state.waiting = true;
            self.changed.notify_all();
            while state.closed {
                state = self.changed.wait(state).expect("gate");
            }
            state.waiting = false;
        }
    }
}

/// [`SimFs`] with a [`Gate`] in front of segment (`.log`) fsyncs.
#[derive(Debug)]
struct GatedFs {
    inner: SimFs,
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct GatedFile {
    inner: Arc<dyn FsFile>,
    gate: Arc<Gate>,
}

impl FsFile for GatedFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        // Zeros are the writer preparing space ahead (log/prepare.rs), not records.
        if data.iter().any(|&b| b != 0) {
            self.gate.segment_writes.fetch_add(1, Ordering::Relaxed);
            if pos + data.len() as u64 > self.inner.len()? {
                self.gate.extending_writes.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.inner.write_all_at(data, pos)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn sync_data(&self) -> io::Result<()> {
        self.gate.pass();
        self.inner.sync_data()
    }
}

impl FileSystem for GatedFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let file = self.inner.open(path, mode)?;
        if path.extension().is_some_and(|e| e == "log") {
            return Ok(Arc::new(GatedFile {
                inner: file,
                gate: self.gate.clone(),
            }));
        }
        Ok(file)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.inner.read_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn FsLock>> {
        self.inner.lock_exclusive(path)
    }
}

struct Setup {
    fs: SimFs,
    gate: Arc<Gate>,
    engine: Engine,
    topic: Arc<Topic>,
}

fn setup(max_bytes_per_file: u64) -> Setup {
    let (fs, clock) = sim();
    let gate = Arc::new(Gate::default());
    let options = Options {
        fs: Arc::new(GatedFs {
            inner: fs.clone(),
            gate: gate.clone(),
        }),
        max_bytes_per_file,
        ..sim_options(&fs, &clock)
    };
    let engine = Engine::open("/data", options).expect("open");
    let topic = engine.create_topic("t").expect("topic");
    Setup {
        fs,
        gate,
        engine,
        topic,
    }
}

type Results = mpsc::Receiver<(usize, nsq_engine::Result<Appended>)>;

/// Publishes body 0, holds its fsync at the gate, queues bodies 1.. behind it, then opens the
/// gate. Returns every publisher's result by index.
fn publish_behind_held_fsync(s: &Setup, bodies: &[String]) -> Vec<nsq_engine::Result<Appended>> {
    let (tx, rx): (_, Results) = mpsc::channel();
    s.gate.close();
    for (i, body) in bodies.iter().enumerate() {
        let tx = tx.clone();
        s.topic.publish_then(&[body.as_str()], 0, move |r| {
            let _ = tx.send((i, r));
        });
        if i == 0 {
            s.gate.wait_for_held_sync();
        }
    }
    drop(tx);
    assert!(
        rx.try_recv().is_err(),
        "nothing may be acknowledged before its fsync"
    );
    s.gate.open();
    let mut results: Vec<Option<nsq_engine::Result<Appended>>> =
        (0..bodies.len()).map(|_| None).collect();
    for (i, r) in rx {
        assert!(results[i].is_none(), "publisher {i} completed twice");
        results[i] = Some(r);
    }
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| panic!("publisher {i} never completed")))
        .collect()
}

fn reopen_after_power_cut(s: Setup) -> Engine {
    let Setup {
        fs, engine, topic, ..
    } = s;
    fs.power_cut();
    drop(topic);
    drop(engine);
    let (_, clock) = sim();
    Engine::open("/data", sim_options(&fs, &clock)).expect("reopen")
}

fn sync_counts(topic: &Topic) -> SyncCounts {
    topic.storage().disk().expect("disk log").sync_counts()
}

#[test]
fn publishes_queued_during_an_fsync_share_one_write_and_one_fsync() {
    let s = setup(1 << 20);
    let bodies: Vec<String> = (0..32).map(|i| format!("message {i}")).collect();
    let writes_before = s.gate.segment_writes.load(Ordering::Relaxed);
    let results = publish_behind_held_fsync(&s, &bodies);
    for (i, r) in results.iter().enumerate() {
        let appended = r.as_ref().expect("publish");
        assert_eq!((appended.first_offset, appended.count), (i as u64, 1));
    }
    assert_eq!(
        s.gate.segment_writes.load(Ordering::Relaxed) - writes_before,
        2,
        "one write for the first message, one for the 31 queued behind it"
    );
    let counts = sync_counts(&s.topic);
    assert_eq!((counts.fsyncs, counts.messages), (2, 32));
    // The histograms saw the same two fsyncs: one of 1 message, one of the 31 queued.
    assert_eq!(counts.latency.count, 2);
    assert_eq!((counts.batch.count, counts.batch.sum), (2, 32.0));
    let bucket_of = |bound: f64| {
        counts
            .batch
            .buckets
            .iter()
            .find(|(upper, _)| *upper == bound)
            .map(|(_, n)| *n)
    };
    assert_eq!((bucket_of(1.0), bucket_of(32.0)), (Some(1), Some(1)));
    let engine = reopen_after_power_cut(s);
    assert_eq!(log_bodies(&engine, "t"), bodies);
}

#[test]
fn a_writer_that_never_goes_idle_still_writes_its_groups_into_prepared_space() {
    let s = setup(1 << 20);
    let bodies: Vec<String> = (0..32).map(|i| format!("message {i}")).collect();
    let before = s.gate.extending_writes.load(Ordering::Relaxed); // the segment's header
    let results = publish_behind_held_fsync(&s, &bodies);
    assert!(results.iter().all(Result::is_ok));
    // Message 0 went into a fresh segment with nothing prepared. The 31 queued behind its
    // fsync left the writer no idle moment, yet it prepared space before writing them, so
    // their fsync had no file size to write.
    assert_eq!(s.gate.extending_writes.load(Ordering::Relaxed) - before, 1);
    let engine = reopen_after_power_cut(s);
    assert_eq!(log_bodies(&engine, "t"), bodies);
}

#[test]
fn a_group_that_crosses_segment_rolls_keeps_every_message_in_order() {
    let s = setup(1024);
    let bodies: Vec<String> = (0..32).map(|i| format!("{i:0>300}")).collect();
    let results = publish_behind_held_fsync(&s, &bodies);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.as_ref().expect("publish").first_offset, i as u64);
    }
    assert!(s.topic.storage().disk().expect("disk").segment_count() > 5);
    let engine = reopen_after_power_cut(s);
    assert_eq!(log_bodies(&engine, "t"), bodies);
}

#[test]
fn a_failed_group_fsync_fails_exactly_the_publishers_it_covered() {
    let s = setup(1 << 20);
    // The held fsync (message 0's) succeeds; the group's fsync after it fails.
    s.fs.set_faults(SimFaults {
        fail_sync_after: Some(1),
        ..SimFaults::default()
    });
    let bodies: Vec<String> = (0..32).map(|i| format!("message {i}")).collect();
    let results = publish_behind_held_fsync(&s, &bodies);
    assert!(
        results[0].is_ok(),
        "message 0 was fsynced: {:?}",
        results[0]
    );
    for (i, r) in results.iter().enumerate().skip(1) {
        assert!(
            matches!(r, Err(Error::Io { .. })),
            "publisher {i} was covered by the failed fsync: {r:?}"
        );
    }
    assert!(matches!(
        s.topic.publish(&["after"], 0),
        Err(Error::Poisoned { .. })
    ));
    s.fs.set_faults(SimFaults::default());
    let engine = reopen_after_power_cut(s);
    assert_eq!(log_bodies(&engine, "t"), vec!["message 0"]);
}

#[test]
fn concurrent_blocking_publishers_lose_nothing_acknowledged_to_a_power_cut() {
    let s = setup(4096);
    let topic = s.topic.clone();
    let acked: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..32)
            .map(|p| {
                let topic = topic.clone();
                scope.spawn(move || {
                    (0..20)
                        .map(|i| format!("p{p}-{i}"))
                        .inspect(|body| {
                            topic.publish(&[body.as_str()], 0).expect("publish");
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("publisher"))
            .collect()
    });
    let counts = sync_counts(&topic);
    assert_eq!(counts.messages, 640);
    assert!(counts.fsyncs <= counts.messages);
    drop(topic);
    let engine = reopen_after_power_cut(s);
    let found = log_bodies(&engine, "t");
    for bodies in acked {
        let mine: Vec<&String> = found
            .iter()
            .filter(|b| b.split('-').next() == bodies[0].split('-').next())
            .collect();
        assert_eq!(mine, bodies.iter().collect::<Vec<_>>());
    }
}
