//! `nsq_tail`: prints the messages of one or more topics to stdout, one per line.

use crate::cli;
use crate::client::{self, Config, Consumer, Message};
use crate::to_file::apply_consumer_opt;
use clap::Parser;
use rand::Rng;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::Notify;

/// What can stop nsq_tail.
#[derive(Debug, Error)]
pub enum Error {
    /// Bad flags.
    #[error("{0}")]
    Usage(String),
    /// Connecting or discovery failed.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// stdout failed (not a closed pipe, which ends quietly).
    #[error("writing to stdout: {0}")]
    Output(std::io::Error),
}

/// nsq_tail's flags (NSQ v1.3.0 names and defaults).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "nsq_tail",
    disable_version_flag = true,
    about = "Print the messages of NSQ topics to stdout, one per line"
)]
pub struct Args {
    /// NSQ channel (default: tail<random>#ephemeral)
    #[arg(long, default_value = "")]
    pub channel: String,
    /// NSQ topic (may be given multiple times)
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// nsqd TCP address (may be given multiple times)
    #[arg(long = "nsqd-tcp-address")]
    pub nsqd_tcp_addresses: Vec<String>,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long = "lookupd-http-address")]
    pub lookupd_http_addresses: Vec<String>,
    /// max number of messages to allow in flight
    #[arg(long, default_value_t = 200)]
    pub max_in_flight: u32,
    /// total messages to show (will wait if starved)
    #[arg(short = 'n', long = "n", default_value_t = 0)]
    pub n: u64,
    /// print topic name where message was received
    #[arg(long)]
    pub print_topic: bool,
    /// option to passthrough to the consumer (may be given multiple times): name,value
    #[arg(long = "consumer-opt")]
    pub consumer_opts: Vec<String>,
    /// print version string
    #[arg(long)]
    pub version: bool,
}

impl Args {
    /// Checks the flags; returns the consumer settings and the channel to use.
    pub fn validate(&self) -> Result<(Config, String), Error> {
        let usage = |s: &str| Err(Error::Usage(s.to_string()));
        if self.topics.is_empty() {
            return usage("--topic required");
        }
        if self.nsqd_tcp_addresses.is_empty() && self.lookupd_http_addresses.is_empty() {
            return usage("--nsqd-tcp-address or --lookupd-http-address required");
        }
        if !self.nsqd_tcp_addresses.is_empty() && !self.lookupd_http_addresses.is_empty() {
            return usage("use --nsqd-tcp-address or --lookupd-http-address not both");
        }
        let channel = if self.channel.is_empty() {
            let n: u32 = rand::thread_rng().gen_range(0..1_000_000);
            format!("tail{n}#ephemeral")
        } else {
            self.channel.clone()
        };
        for name in self.topics.iter().chain([&channel]) {
            if !nsq_server::protocol::is_valid_name(name) {
                return Err(Error::Usage(format!(
                    "invalid topic or channel name {name:?}"
                )));
            }
        }
        let mut max_in_flight = self.max_in_flight.max(1);
        if self.n > 0 && self.n < u64::from(max_in_flight) {
            max_in_flight = self.n as u32;
        }
        let mut config = Config {
            max_in_flight,
            ..Config::default()
        };
        for opt in &self.consumer_opts {
            apply_consumer_opt(&mut config, opt).map_err(|e| Error::Usage(e.to_string()))?;
        }
        Ok((config, channel))
    }
}

/// Prints until `-n` messages were shown, stdout closes, or SIGTERM/SIGINT.
pub async fn run(args: &Args) -> Result<(), Error> {
    let (config, channel) = args.validate()?;
    let shown = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let failure: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut consumers = Vec::new();
    for topic in &args.topics {
        tracing::info!("Adding consumer for topic: {topic}");
        let (shown, done, failure, out) =
            (shown.clone(), done.clone(), failure.clone(), out.clone());
        let (limit, print_topic, name) = (args.n, args.print_topic, topic.clone());
        let handler = move |m: Message| {
            let result = print(
                &out,
                &m,
                print_topic.then_some(name.as_str()),
                limit,
                &shown,
            );
            match result {
                Ok(true) => {}
                Ok(false) => {
                    // Past -n: leave it for others on a durable channel.
                    m.requeue_without_backoff(std::time::Duration::ZERO);
                    done.notify_one();
                }
                Err(e) => {
                    m.requeue_without_backoff(std::time::Duration::ZERO);
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        failure.lock().unwrap_or_else(|p| p.into_inner()).replace(e);
                    }
                    done.notify_one();
                }
            }
            if limit > 0 && shown.load(Ordering::SeqCst) >= limit {
                done.notify_one();
            }
            async { Ok(()) }
        };
        let consumer = Consumer::new(topic, &channel, config.clone(), handler)?;
        cli::connect_consumer(
            &consumer,
            &args.nsqd_tcp_addresses,
            &args.lookupd_http_addresses,
        )
        .await?;
        consumers.push(consumer);
    }
    tokio::select! {
        _ = nsq_server::signals::terminated() => {}
        _ = done.notified() => {}
    }
    for consumer in &consumers {
        consumer.stop().await;
    }
    let failed = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    failed.map_or(Ok(()), |e| Err(Error::Output(e)))
}

/// Writes one message; `Ok(false)` when `-n` was already reached.
fn print(
    out: &Mutex<std::io::Stdout>,
    m: &Message,
    topic: Option<&str>,
    limit: u64,
    shown: &AtomicU64,
) -> std::io::Result<bool> {
    let out = out.lock().unwrap_or_else(|p| p.into_inner());
    if limit > 0 && shown.load(Ordering::SeqCst) >= limit {
        return Ok(false);
    }
    let mut out = out.lock();
    if let Some(topic) = topic {
        out.write_all(topic.as_bytes())?;
        out.write_all(b" | ")?;
    }
    out.write_all(&m.body)?;
    out.write_all(b"\n")?;
    out.flush()?;
    shown.fetch_add(1, Ordering::SeqCst);
    Ok(true)
}
