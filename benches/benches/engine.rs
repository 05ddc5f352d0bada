//! Criterion benchmarks of the storage engine on the real file system.
//!
//! * `append`: publishing 200-byte bodies, one at a time and in batches of 200, without fsync
//!   and with `SyncPolicy::always()` from 4 concurrent appenders (group commit), plus 32
//!   concurrent single-message appenders (many publishers sharing each fsync).
//! * `read`: sequential `take` + `finish` on one channel and on 4 channels of one topic.
//! * `reopen`: `Engine::open` (then drop) of a data directory holding 1 GiB of log.
//!
//! Data directories are made under `$NSQ_BENCH_DIR`, or else under cargo's
//! `CARGO_TARGET_TMPDIR` (`target/tmp`, on the same disk as the workspace), never on a tmpfs
//! by accident. Under `cargo test` (criterion's test mode: each benchmark runs once) the
//! pre-populated logs are kept small.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nsq_engine::{Channel, ChannelStart, Delivery, Engine, Options, SyncPolicy, Topic};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const BODY_LEN: usize = 200;
const MIB: u64 = 1024 * 1024;
/// Messages taken from a channel in one `take`.
const TAKE_BATCH: usize = 100;
/// How long a taken message stays in flight (it is finished long before).
const MSG_TIMEOUT_NS: i64 = 60_000_000_000;
/// Concurrent appenders of the group-commit benchmarks.
const APPENDERS: usize = 4;
/// Concurrent single-message appenders of the many-publishers group-commit benchmark.
const MANY_APPENDERS: usize = 32;
/// Channels of the multi-channel read benchmark.
const READERS: usize = 4;

/// Whether criterion is really benchmarking (`cargo bench`), as opposed to running each
/// benchmark once as a test (`cargo test --benches`) or listing them.
fn full_size() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list")
}

/// A fresh directory on the real disk, removed when dropped.
fn bench_dir() -> TempDir {
    let root = std::env::var_os("NSQ_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&root).expect("create the benchmark root");
    tempfile::Builder::new()
        .prefix("nsq-engine-bench-")
        .tempdir_in(&root)
        .expect("create a benchmark directory")
}

/// Appends are fsynced only when a segment is sealed.
fn no_sync() -> SyncPolicy {
    SyncPolicy {
        every: 0,
        timeout: Duration::from_secs(3600),
    }
}

fn options(sync: SyncPolicy) -> Options {
    Options {
        sync,
        max_bytes_per_file: 100 * MIB,
        ..Options::default()
    }
}

fn body() -> Vec<u8> {
    (0..BODY_LEN).map(|i| (i * 31 % 251) as u8).collect()
}

/// An open engine in its own directory, with one topic.
struct Fixture {
    // Field order matters: the engine is dropped before its directory is removed.
    engine: Engine,
    topic: Arc<Topic>,
    _dir: TempDir,
}

impl Fixture {
    fn new(sync: SyncPolicy, topic: &str) -> Self {
        let dir = bench_dir();
        let engine = Engine::open(dir.path().join("data"), options(sync)).expect("open engine");
        let topic = engine.create_topic(topic).expect("create topic");
        Fixture {
            engine,
            topic,
            _dir: dir,
        }
    }

    /// Appends `count` messages (a multiple of 200) in batches of 200.
    fn populate(&self, count: u64) {
        let body = body();
        let bodies = vec![&body[..]; 200];
        for _ in 0..count / 200 {
            self.topic.publish(&bodies, 0).expect("publish");
        }
    }
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    let body = body();

    // No fsync: one appender. The log keeps growing over the whole benchmark (one engine per
    // benchmark), so segments roll, and are fsynced when sealed, at their natural rate.
    for batch in [1usize, 200] {
        group.throughput(Throughput::Elements(batch as u64));
        let mut fixture = None;
        group.bench_function(BenchmarkId::new("nosync", format!("batch{batch}")), |b| {
            let f = fixture.get_or_insert_with(|| Fixture::new(no_sync(), "append"));
            let bodies = vec![&body[..]; batch];
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    f.topic.publish(&bodies, 0).expect("publish");
                }
                start.elapsed()
            });
        });
        drop(fixture);
    }

    // Every append fsynced before it returns; concurrent appenders share fsyncs through
    // group commit.
    group.sample_size(10);
    for (appenders, batch) in [(APPENDERS, 1usize), (APPENDERS, 200), (MANY_APPENDERS, 1)] {
        group.throughput(Throughput::Elements(batch as u64));
        let mut fixture = None;
        group.bench_function(
            BenchmarkId::new(format!("fsync_{appenders}threads"), format!("batch{batch}")),
            |b| {
                let f = fixture.get_or_insert_with(|| Fixture::new(SyncPolicy::always(), "append"));
                b.iter_custom(|iters| concurrent_appends(&f.topic, appenders, batch, iters));
            },
        );
        drop(fixture);
    }
    group.finish();
}

/// `iters` publishes of `batch` bodies spread over `appenders` threads; returns the wall
/// time from the moment all threads are ready until the last one is done.
fn concurrent_appends(topic: &Arc<Topic>, appenders: usize, batch: usize, iters: u64) -> Duration {
    let start_line = Arc::new(Barrier::new(appenders + 1));
    let threads: Vec<_> = (0..appenders as u64)
        .map(|t| {
            let share = iters / appenders as u64 + u64::from(t < iters % appenders as u64);
            let topic = topic.clone();
            let start_line = start_line.clone();
            thread::spawn(move || {
                let body = body();
                let bodies = vec![&body[..]; batch];
                start_line.wait();
                for _ in 0..share {
                    topic.publish(&bodies, 0).expect("publish");
                }
            })
        })
        .collect();
    start_line.wait();
    let start = Instant::now();
    for t in threads {
        t.join().expect("appender thread");
    }
    start.elapsed()
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(8));
    // Built on first use, so a filtered-out or listed benchmark does not pay for it.
    let mut fixture: Option<(Fixture, Vec<Arc<Channel>>)> = None;
    let messages: u64 = if full_size() { 2_000_000 } else { 20_000 };
    let mut setup = || {
        let f = Fixture::new(no_sync(), "read");
        f.populate(messages);
        let channels = (0..READERS)
            .map(|i| {
                f.engine
                    .create_channel("read", &format!("c{i}"), ChannelStart::Earliest)
                    .expect("create channel")
            })
            .collect();
        (f, channels)
    };

    for readers in [1usize, READERS] {
        group.throughput(Throughput::Elements((TAKE_BATCH * readers) as u64));
        group.bench_function(
            BenchmarkId::new("take_finish", format!("{readers}ch_batch{TAKE_BATCH}")),
            |b| {
                let (f, channels) = fixture.get_or_insert_with(&mut setup);
                // Channels carry on where the previous sample stopped and wrap around at the
                // end, so the samples cover the sealed (mmap) and active (pread) segments alike.
                let channels = &channels[..readers];
                b.iter_custom(|iters| read_channels(&f.engine, channels, iters));
            },
        );
    }
    group.finish();
}

/// Every channel takes and finishes `iters` batches of [`TAKE_BATCH`] messages on its own
/// thread, rewinding to the start of the log whenever it reaches the end. Returns the longest
/// time any thread spent reading (rewinds, which persist the cursor, are not counted).
fn read_channels(engine: &Engine, channels: &[Arc<Channel>], iters: u64) -> Duration {
    let start_line = Barrier::new(channels.len());
    thread::scope(|s| {
        let threads: Vec<_> = channels
            .iter()
            .enumerate()
            .map(|(client, channel)| {
                let start_line = &start_line;
                s.spawn(move || {
                    let client = client as u64 + 1;
                    let mut out: Vec<Delivery> = Vec::with_capacity(TAKE_BATCH);
                    let mut rewinds = Duration::ZERO;
                    start_line.wait();
                    let start = Instant::now();
                    let mut batches = 0;
                    while batches < iters {
                        out.clear();
                        let n = channel
                            .take(engine.now(), client, MSG_TIMEOUT_NS, TAKE_BATCH, &mut out)
                            .expect("take");
                        for d in &out {
                            channel.finish(client, &d.id).expect("finish");
                        }
                        if n == TAKE_BATCH {
                            batches += 1;
                        } else {
                            let rewind = Instant::now();
                            engine
                                .rewind_channel(
                                    channel.topic(),
                                    channel.name(),
                                    ChannelStart::Earliest,
                                )
                                .expect("rewind");
                            rewinds += rewind.elapsed();
                        }
                    }
                    start.elapsed().saturating_sub(rewinds)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("reader thread"))
            .max()
            .unwrap_or_default()
    })
}

fn reopen(c: &mut Criterion) {
    let mut group = c.benchmark_group("reopen");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let log_bytes = if full_size() { 1024 * MIB } else { 8 * MIB };
    let mut built: Option<(TempDir, PathBuf)> = None;
    group.bench_function(
        BenchmarkId::new("open_drop", format!("{}MiB", log_bytes / MIB)),
        |b| {
            let (_dir, path) = built.get_or_insert_with(|| {
                let dir = bench_dir();
                let path = dir.path().join("data");
                let engine = Engine::open(&path, options(no_sync())).expect("open engine");
                let topic = engine.create_topic("reopen").expect("create topic");
                let body = body();
                let bodies = vec![&body[..]; 200];
                while topic.stats().expect("stats").bytes < log_bytes {
                    topic.publish(&bodies, 0).expect("publish");
                }
                engine.close().expect("close");
                (dir, path)
            });
            b.iter(|| {
                let engine = Engine::open(&*path, options(no_sync())).expect("reopen engine");
                assert!(engine.recovery_events().is_empty());
                drop(engine);
            });
        },
    );
    group.finish();
}

criterion_group!(benches, append, read, reopen);
criterion_main!(benches);
