//! Running publishers and consumers against nsqd for a fixed time.

use super::conn::Conn;
use super::histogram::Histogram;
use super::report::Report;
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nsq_server::protocol::{Command, Frame};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which sides run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Publishers only (like NSQ's bench_writer).
    #[value(alias = "pub")]
    Writer,
    /// Consumers only, of what is already there (like NSQ's bench_reader).
    #[value(alias = "sub")]
    Reader,
    /// Both at once.
    Both,
    /// Connections only: connect, (IDENTIFY and TLS handshake with `--tls`), close; the
    /// cost of a connection, as connections per second.
    Connect,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// nsqd's TCP address.
    pub addr: SocketAddr,
    /// Topic to publish to and consume from.
    pub topic: String,
    /// Channel the consumers share.
    pub channel: String,
    /// Which sides run.
    pub mode: Mode,
    /// Body size in bytes.
    pub size: usize,
    /// Messages per MPUB (1: PUB).
    pub batch: usize,
    /// Connections per side.
    pub concurrency: usize,
    /// RDY per consumer.
    pub max_in_flight: u32,
    /// How long to run.
    pub runfor: Duration,
    /// Speak TLS (IDENTIFY `tls_v1`) with this client configuration.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// nsqd could not be reached.
    #[error("cannot connect to nsqd at {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// A socket error mid-run.
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    /// nsqd closed a connection.
    #[error("nsqd closed the connection")]
    Closed,
    /// nsqd answered with an error or something unexpected.
    #[error("protocol error: {0}")]
    Protocol(String),
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    consumed: AtomicU64,
    connections: AtomicU64,
}

/// Opens and closes connections until `until`.
async fn connector(
    config: Arc<Config>,
    counters: Arc<Counters>,
    until: Instant,
) -> Result<Histogram, BenchError> {
    let mut latencies = Histogram::default();
    while Instant::now() < until {
        let started = Instant::now();
        let mut conn = Conn::connect(config.addr, config.tls.as_ref()).await?;
        // A NOP answers nothing; one round trip proves the connection works end to end.
        conn.queue(&Command::Nop);
        conn.flush().await?;
        drop(conn);
        latencies.record(started.elapsed());
        counters.connections.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

async fn publisher(
    config: Arc<Config>,
    counters: Arc<Counters>,
    until: Instant,
) -> Result<Histogram, BenchError> {
    let mut conn = Conn::connect(config.addr, config.tls.as_ref()).await?;
    let body = Bytes::from(vec![b'a'; config.size]);
    let command = if config.batch <= 1 {
        Command::Pub {
            topic: config.topic.clone(),
            body,
        }
    } else {
        Command::Mpub {
            topic: config.topic.clone(),
            bodies: vec![body; config.batch],
        }
    };
    let per_command = config.batch.max(1) as u64;
    let mut latencies = Histogram::default();
    while Instant::now() < until {
        let started = Instant::now();
        conn.queue(&command);
        conn.flush().await?;
        conn.expect_ok().await?;
        latencies.record(started.elapsed());
        counters.published.fetch_add(per_command, Ordering::Relaxed);
    }
    Ok(latencies)
}

fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

async fn consumer(
    config: Arc<Config>,
    counters: Arc<Counters>,
    until: Instant,
) -> Result<Histogram, BenchError> {
    let mut conn = Conn::connect(config.addr, config.tls.as_ref()).await?;
    conn.queue(&Command::Sub {
        topic: config.topic.clone(),
        channel: config.channel.clone(),
    });
    conn.flush().await?;
    conn.expect_ok().await?;
    conn.queue(&Command::Rdy(i64::from(config.max_in_flight)));
    let mut end_to_end = Histogram::default();
    loop {
        let remaining = until.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(end_to_end);
        }
        match tokio::time::timeout(remaining, conn.frame()).await {
            Err(_) => return Ok(end_to_end),
            Ok(frame) => {
                if let Frame::Message { id, timestamp, .. } = frame? {
                    let age = unix_nanos().saturating_sub(timestamp).max(0);
                    end_to_end.record(Duration::from_nanos(age as u64));
                    conn.queue(&Command::Fin(nsq_engine::MessageId(id)));
                    counters.consumed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn progress() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

/// Runs the benchmark and returns its report.
pub async fn run(config: Config) -> Result<Report, BenchError> {
    let config = Arc::new(config);
    let counters = Arc::new(Counters::default());
    // Create the topic and channel before timing, so both sides start together.
    let mut setup = Conn::connect(config.addr, config.tls.as_ref()).await?;
    setup.queue(&Command::Sub {
        topic: config.topic.clone(),
        channel: config.channel.clone(),
    });
    setup.flush().await?;
    setup.expect_ok().await?;
    drop(setup);

    let started = Instant::now();
    let until = started + config.runfor;
    let acks = Arc::new(Mutex::new(Histogram::default()));
    let ends = Arc::new(Mutex::new(Histogram::default()));
    let mut tasks = tokio::task::JoinSet::new();
    if config.mode == Mode::Connect {
        for _ in 0..config.concurrency {
            let (config, counters, acks) = (config.clone(), counters.clone(), acks.clone());
            tasks.spawn(async move {
                let mine = connector(config, counters, until).await?;
                acks.lock().unwrap_or_else(|e| e.into_inner()).merge(&mine);
                Ok::<(), BenchError>(())
            });
        }
    }
    if matches!(config.mode, Mode::Writer | Mode::Both) {
        for _ in 0..config.concurrency {
            let (config, counters, acks) = (config.clone(), counters.clone(), acks.clone());
            tasks.spawn(async move {
                let mine = publisher(config, counters, until).await?;
                acks.lock().unwrap_or_else(|e| e.into_inner()).merge(&mine);
                Ok::<(), BenchError>(())
            });
        }
    }
    if matches!(config.mode, Mode::Reader | Mode::Both) {
        for _ in 0..config.concurrency {
            let (config, counters, ends) = (config.clone(), counters.clone(), ends.clone());
            tasks.spawn(async move {
                let mine = consumer(config, counters, until).await?;
                ends.lock().unwrap_or_else(|e| e.into_inner()).merge(&mine);
                Ok::<(), BenchError>(())
            });
        }
    }
    let bar = progress();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(BenchError::Protocol(format!("task failed: {e}"))),
            },
            _ = tick.tick() => {
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                let (p, c) = (counters.published.load(Ordering::Relaxed), counters.consumed.load(Ordering::Relaxed));
                bar.set_message(format!("published {p} ({:.0}/s)  consumed {c} ({:.0}/s)", p as f64 / secs, c as f64 / secs));
                bar.tick();
            }
        }
    }
    bar.finish_and_clear();
    let take =
        |h: &Mutex<Histogram>| std::mem::take(&mut *h.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Report {
        elapsed: started.elapsed(),
        published: counters.published.load(Ordering::Relaxed),
        consumed: counters.consumed.load(Ordering::Relaxed),
        connections: counters.connections.load(Ordering::Relaxed),
        size: config.size,
        ack_latency: take(&acks),
        end_to_end: take(&ends),
    })
}
