//! `to_nsq`: publishes stdin, split at a delimiter, to a topic on every given nsqd.

use crate::client::{self, Config, Producer};
use clap::Parser;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// What can stop to_nsq.
#[derive(Debug, Error)]
pub enum Error {
    /// Bad flags.
    #[error("{0}")]
    Usage(String),
    /// Reading stdin failed.
    #[error("reading stdin: {0}")]
    Input(std::io::Error),
    /// Publishing failed.
    #[error(transparent)]
    Client(#[from] client::Error),
}

/// to_nsq's flags (NSQ v1.3.0 names and defaults).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "to_nsq",
    disable_version_flag = true,
    about = "Publish stdin, split at a delimiter, to an NSQ topic on every given nsqd"
)]
pub struct Args {
    /// NSQ topic to publish to
    #[arg(long, default_value = "")]
    pub topic: String,
    /// character to split input from stdin
    #[arg(long, default_value = "\n")]
    pub delimiter: String,
    /// destination nsqd TCP address (may be given multiple times)
    #[arg(long = "nsqd-tcp-address")]
    pub nsqd_tcp_addresses: Vec<String>,
    /// Throttle messages to n/second. 0 to disable
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// option to passthrough to nsq.Producer as name,value (go-nsq names: dial_timeout,
    /// heartbeat_interval, snappy, deflate, tls_v1, tls_root_ca_file, auth_secret, ...; may be
    /// given multiple times)
    #[arg(long = "producer-opt")]
    pub producer_opts: Vec<String>,
    /// print version string
    #[arg(long)]
    pub version: bool,
}

impl Args {
    /// The producer configuration `--producer-opt` describes.
    pub fn producer_config(&self) -> Result<Config, Error> {
        let mut config = Config::default();
        for opt in &self.producer_opts {
            crate::cli::apply_client_opt(&mut config, "--producer-opt", opt)
                .map_err(Error::Usage)?;
        }
        Ok(config)
    }

    /// Checks the flags; returns the delimiter byte.
    pub fn validate(&self) -> Result<u8, Error> {
        if self.topic.is_empty() {
            return Err(Error::Usage("--topic required".into()));
        }
        if !nsq_server::protocol::is_valid_name(&self.topic) {
            return Err(Error::Usage(format!("invalid topic name {:?}", self.topic)));
        }
        if self.nsqd_tcp_addresses.is_empty() {
            return Err(Error::Usage("--nsqd-tcp-address required".into()));
        }
        self.producer_config()?;
        match self.delimiter.as_bytes() {
            [byte] => Ok(*byte),
            _ => Err(Error::Usage("--delimiter must be a single byte".into())),
        }
    }
}

/// Largest MPUB batch built from input that is already buffered (well under nsqd's
/// default `--max-body-size` of 5 MiB).
const BATCH_BYTES: usize = 1024 * 1024;
const BATCH_COUNT: usize = 500;

/// Publishes every non-empty record of `input` to every nsqd; returns how many records.
/// Without `--rate`, records already read are sent together as one MPUB per nsqd.
pub async fn run<R: AsyncRead + Unpin>(args: &Args, mut input: BufReader<R>) -> Result<u64, Error> {
    let delimiter = args.validate()?;
    let config = args.producer_config()?;
    let producers: Vec<Producer> = args
        .nsqd_tcp_addresses
        .iter()
        .map(|a| Producer::new(a, config.clone()))
        .collect();
    for producer in &producers {
        producer.connect().await?;
    }
    let pace = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    let mut ticker = pace.map(tokio::time::interval);
    let mut published = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let mut record = Vec::new();
        let n = input
            .read_until(delimiter, &mut record)
            .await
            .map_err(Error::Input)?;
        let eof = n == 0;
        if record.last() == Some(&delimiter) {
            record.pop();
        }
        if !record.is_empty() {
            batch_bytes += record.len();
            batch.push(record);
        }
        // Only what is already buffered joins a batch: never wait for input to fill one.
        let more_buffered = !input.buffer().is_empty();
        let flush = eof
            || ticker.is_some()
            || !more_buffered
            || batch.len() >= BATCH_COUNT
            || batch_bytes >= BATCH_BYTES;
        if flush && !batch.is_empty() {
            if let Some(ticker) = ticker.as_mut() {
                ticker.tick().await;
            }
            let bodies = std::mem::take(&mut batch);
            batch_bytes = 0;
            published += bodies.len() as u64;
            for producer in &producers {
                if bodies.len() == 1 {
                    producer.publish(&args.topic, bodies[0].clone()).await?;
                } else {
                    producer.multi_publish(&args.topic, bodies.clone()).await?;
                }
            }
        }
        if eof {
            break;
        }
    }
    for producer in &producers {
        producer.stop().await;
    }
    Ok(published)
}
