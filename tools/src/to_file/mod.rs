//! `nsq_to_file`: consumes topics and writes every message as a line to files in a
//! directory, with NSQ's flags, rotation, gzip and work-dir semantics. A message is FIN'd
//! only after the file holding it is synced.

mod filename;
mod logger;

pub use filename::{NameFormat, NameOptions};
pub use logger::{Event, FileLogger, LoggerOptions};

use crate::cli::{self, duration};
use crate::client::{self, Config, Consumer, HttpClient, Message};
use clap::Parser;
use regex::Regex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// What can stop nsq_to_file.
#[derive(Debug, Error)]
pub enum Error {
    /// Flags that do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Connecting or discovery failed.
    #[error(transparent)]
    Client(#[from] client::Error),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// nsq_to_file's flags (NSQ v1.3.0 names and defaults).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "nsq_to_file",
    disable_version_flag = true,
    about = "Archive NSQ topics to files, one message per line; a message is FIN'd once its file is synced"
)]
pub struct Args {
    /// nsq topic (may be given multiple times)
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// only log topics matching the following pattern
    #[arg(long, default_value = "")]
    pub topic_pattern: String,
    /// how frequently the topic list should be refreshed
    #[arg(long, default_value = "1m0s", value_parser = duration)]
    pub topic_refresh: Duration,
    /// nsq channel
    #[arg(long, default_value = "nsq_to_file")]
    pub channel: String,
    /// nsqd TCP address (may be given multiple times)
    #[arg(long = "nsqd-tcp-address")]
    pub nsqd_tcp_addresses: Vec<String>,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long = "lookupd-http-address")]
    pub lookupd_http_addresses: Vec<String>,
    /// where a new channel starts on our nsqd: earliest (backfill everything retained),
    /// latest, an offset, an RFC 3339 time or Unix nanoseconds (nsq-rs only; an existing
    /// channel keeps its position)
    #[arg(long)]
    pub start: Option<String>,
    /// nsqd HTTP address for --start with --nsqd-tcp-address (may be given multiple times)
    #[arg(long = "nsqd-http-address")]
    pub nsqd_http_addresses: Vec<String>,
    /// directory to write output files to
    #[arg(long, default_value = "/tmp")]
    pub output_dir: PathBuf,
    /// directory for in-progress files before moving to output-dir
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// output filename format (<TOPIC>, <HOST>, <PID>, <DATETIME>, <REV> are replaced. <REV> is increased when file already exists)
    #[arg(long, default_value = "<TOPIC>.<HOST><REV>.<DATETIME>.log")]
    pub filename_format: String,
    /// strftime compatible format for <DATETIME> in filename format
    #[arg(long, default_value = "%Y-%m-%d_%H")]
    pub datetime_format: String,
    /// value to output in log filename in place of hostname. <SHORT_HOST> and <HOSTNAME> are valid replacement tokens
    #[arg(long, default_value = "")]
    pub host_identifier: String,
    /// gzip output files.
    #[arg(long)]
    pub gzip: bool,
    /// gzip compression level (1-9, 1=BestSpeed, 9=BestCompression)
    #[arg(long, default_value_t = 6)]
    pub gzip_level: u32,
    /// rotate the file when it grows bigger than rotate-size bytes
    #[arg(long, default_value_t = 0)]
    pub rotate_size: u64,
    /// rotate the file every duration
    #[arg(long, default_value = "0", value_parser = duration)]
    pub rotate_interval: Duration,
    /// sync file to disk every duration
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub sync_interval: Duration,
    /// skip writing empty files
    #[arg(long)]
    pub skip_empty_files: bool,
    /// max number of messages to allow in flight
    #[arg(long, default_value_t = 200)]
    pub max_in_flight: u32,
    /// option to passthrough to the consumer (may be given multiple times): name,value
    #[arg(long = "consumer-opt")]
    pub consumer_opts: Vec<String>,
    /// timeout for HTTP connect
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub http_client_connect_timeout: Duration,
    /// timeout for HTTP request
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub http_client_request_timeout: Duration,
    /// set log verbosity: debug, info, warn, error, or fatal
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// log message prefix
    #[arg(long, default_value = "[nsq_to_file] ")]
    pub log_prefix: String,
    /// print version string
    #[arg(long)]
    pub version: bool,
}

impl Args {
    /// Checks the flags as nsq_to_file does; returns the consumer settings.
    pub fn validate(&self) -> Result<Config, Error> {
        let usage = |s: &str| Err(Error::Usage(s.to_string()));
        if self.nsqd_tcp_addresses.is_empty() && self.lookupd_http_addresses.is_empty() {
            return usage("--nsqd-tcp-address or --lookupd-http-address required.");
        }
        if !self.nsqd_tcp_addresses.is_empty() && !self.lookupd_http_addresses.is_empty() {
            return usage("use --nsqd-tcp-address or --lookupd-http-address not both");
        }
        if self.topics.is_empty() && self.lookupd_http_addresses.is_empty() {
            return usage("--topic is required when subscribing directly to nsqd (or give --lookupd-http-address to discover topics)");
        }
        if self.start.is_some()
            && !self.nsqd_tcp_addresses.is_empty()
            && self.nsqd_http_addresses.is_empty()
        {
            return usage("--start with --nsqd-tcp-address needs --nsqd-http-address (the channel is created over HTTP)");
        }
        if !(1..=9).contains(&self.gzip_level) {
            return usage("invalid --gzip-level");
        }
        if self.sync_interval.is_zero() || self.max_in_flight == 0 {
            return usage("--sync-interval and --max-in-flight must be positive");
        }
        for name in self.topics.iter().chain([&self.channel]) {
            if !nsq_server::protocol::is_valid_name(name) {
                return Err(Error::Usage(format!(
                    "invalid topic or channel name {name:?}"
                )));
            }
        }
        Regex::new(&self.topic_pattern)
            .map_err(|e| Error::Usage(format!("invalid --topic-pattern: {e}")))?;
        let mut config = Config {
            max_in_flight: self.max_in_flight,
            ..Config::default()
        };
        for opt in &self.consumer_opts {
            apply_consumer_opt(&mut config, opt)?;
        }
        Ok(config)
    }

    fn logger_options(&self) -> LoggerOptions {
        LoggerOptions {
            output_dir: self.output_dir.clone(),
            work_dir: self
                .work_dir
                .clone()
                .unwrap_or_else(|| self.output_dir.clone()),
            gzip: self.gzip.then_some(self.gzip_level),
            rotate_size: self.rotate_size,
            rotate_interval: self.rotate_interval,
            sync_interval: self.sync_interval,
            skip_empty_files: self.skip_empty_files,
            max_in_flight: self.max_in_flight as usize,
        }
    }
}

/// `--consumer-opt name,value` for the go-nsq options our client has
/// (see [`crate::cli::apply_client_opt`]).
pub fn apply_consumer_opt(config: &mut Config, opt: &str) -> Result<(), Error> {
    crate::cli::apply_client_opt(config, "--consumer-opt", opt).map_err(Error::Usage)
}

/// One topic being archived.
struct TopicLogger {
    consumer: Arc<Consumer>,
    events: mpsc::Sender<Event>,
    thread: std::thread::JoinHandle<Result<(), Error>>,
}

/// Runs until SIGTERM/SIGINT (then flushes, syncs, FINs, closes and returns `Ok`).
pub async fn run(args: Args) -> Result<(), Error> {
    let config = args.validate()?;
    let opts = args.logger_options();
    for dir in [&opts.output_dir, &opts.work_dir] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let pattern = Regex::new(&args.topic_pattern).map_err(|e| Error::Usage(e.to_string()))?;
    // For lookupd's topic list and --start's channel creation (the consumers poll lookupd
    // with their own, from the consumer options).
    let http = HttpClient::new(
        args.http_client_connect_timeout,
        args.http_client_request_timeout,
    )?;
    let mut loggers: BTreeMap<String, TopicLogger> = BTreeMap::new();
    for topic in &args.topics {
        let logger = start_topic(&args, &http, &config, &opts, topic).await?;
        loggers.insert(topic.clone(), logger);
    }
    let discover = args.topics.is_empty();
    if discover {
        refresh_topics(&args, &http, &config, &opts, &pattern, &mut loggers, true).await?;
    }
    let mut refresh = tokio::time::interval(args.topic_refresh);
    refresh.reset();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Error::Usage(format!("cannot listen for SIGHUP: {e}")))?;
    let mut check = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = nsq_server::signals::terminated() => break,
            _ = hup.recv() => {
                for logger in loggers.values() {
                    let _ = logger.events.send(Event::Hup);
                }
            }
            _ = refresh.tick(), if discover => {
                if let Err(e) = refresh_topics(&args, &http, &config, &opts, &pattern, &mut loggers, false).await {
                    tracing::warn!("topic refresh: {e}");
                }
            }
            _ = check.tick() => {
                // A logger thread only ends early on an I/O error: stop with it.
                if let Some(topic) = loggers.iter().find(|(_, l)| l.thread.is_finished()).map(|(t, _)| t.clone()) {
                    if let Some(logger) = loggers.remove(&topic) {
                        return Err(join(logger.thread).await.err().unwrap_or_else(|| {
                            Error::Usage(format!("file logger for {topic} exited"))
                        }));
                    }
                }
            }
        }
    }
    tracing::info!("stopping");
    let mut first_error = None;
    // Every topic stops at once: CLS, the logger FINs what it synced, then closes its file.
    let stops: Vec<_> = loggers
        .into_values()
        .map(|logger| {
            tokio::spawn(async move {
                let _ = logger.events.send(Event::Stopping);
                logger.consumer.stop().await;
                let _ = logger.events.send(Event::Terminate);
                join(logger.thread).await
            })
        })
        .collect();
    for stop in stops {
        let result = stop
            .await
            .unwrap_or_else(|e| Err(Error::Usage(format!("stopping: {e}"))));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn join(thread: std::thread::JoinHandle<Result<(), Error>>) -> Result<(), Error> {
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .map_err(|e| Error::Usage(format!("file logger: {e}")))?
        .map_err(|_| Error::Usage("file logger panicked".to_string()))?
}

/// Subscribes to every lookupd topic matching the pattern that is not archived yet.
async fn refresh_topics(
    args: &Args,
    http: &HttpClient,
    config: &Config,
    opts: &LoggerOptions,
    pattern: &Regex,
    loggers: &mut BTreeMap<String, TopicLogger>,
    first: bool,
) -> Result<(), Error> {
    let mut found = Vec::new();
    let mut last_error = None;
    for addr in &args.lookupd_http_addresses {
        match client::lookup::lookup_topics(http, addr).await {
            Ok(topics) => found.extend(topics),
            Err(e) => last_error = Some(e),
        }
    }
    if first && found.is_empty() {
        if let Some(e) = last_error {
            return Err(e.into());
        }
    }
    for topic in found {
        if loggers.contains_key(&topic) || !pattern.is_match(&topic) {
            continue;
        }
        tracing::info!("adding topic {topic}");
        let logger = start_topic(args, http, config, opts, &topic).await?;
        loggers.insert(topic, logger);
    }
    Ok(())
}

/// With `--start`, creates the channel at that position on every nsqd that has (or, given
/// directly, will have) the topic, before subscribing; an existing channel is left as it is.
async fn create_channel_at_start(args: &Args, http: &HttpClient, topic: &str) -> Result<(), Error> {
    let Some(start) = &args.start else {
        return Ok(());
    };
    let mut nsqds = args.nsqd_http_addresses.clone();
    for lookupd in &args.lookupd_http_addresses {
        nsqds.extend(client::lookup::lookup_http_producers(http, lookupd, topic).await?);
    }
    let (t, c) = (
        client::lookup::query_escape(topic),
        client::lookup::query_escape(&args.channel),
    );
    for nsqd in nsqds {
        let create_topic = format!("/topic/create?topic={t}");
        let create_channel = format!(
            "/channel/create?topic={t}&channel={c}&start={}",
            client::lookup::query_escape(start)
        );
        for path in [create_topic, create_channel] {
            let (status, body) = http.post(&nsqd, &path).await?;
            if status != 200 {
                return Err(Error::Usage(format!(
                    "--start {start}: nsqd {nsqd} answered {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                )));
            }
        }
    }
    Ok(())
}

async fn start_topic(
    args: &Args,
    http: &HttpClient,
    config: &Config,
    opts: &LoggerOptions,
    topic: &str,
) -> Result<TopicLogger, Error> {
    create_channel_at_start(args, http, topic).await?;
    let needs_rev = opts.gzip.is_some()
        || opts.rotate_size > 0
        || !opts.rotate_interval.is_zero()
        || opts.work_dir != opts.output_dir;
    let format = NameFormat::compute(
        &NameOptions {
            filename_format: &args.filename_format,
            datetime_format: &args.datetime_format,
            host_identifier: &args.host_identifier,
            needs_rev,
            gzip: opts.gzip.is_some(),
        },
        topic,
        &client::hostname(),
    )?;
    let (tx, rx) = mpsc::channel();
    let handler_tx = tx.clone();
    let consumer = Consumer::new(topic, &args.channel, config.clone(), move |m: Message| {
        // The logger FINs it once synced; if the logger is gone, nsqd redelivers it later.
        m.disable_auto_response();
        let sent = handler_tx.send(Event::Message(m));
        async move { sent.map_err(|_| "file logger stopped".into()) }
    })?;
    let consumer = Arc::new(consumer);
    let starved = consumer.clone();
    let label = format!("{topic}/{}", args.channel);
    let logger = FileLogger::new(opts.clone(), format, label);
    let thread = std::thread::Builder::new()
        .name(format!("nsq_to_file {topic}"))
        .spawn(move || logger.run(rx, move || starved.is_starved()))
        .map_err(|e| Error::Usage(format!("cannot start a thread: {e}")))?;
    let connected = cli::connect_consumer(
        &consumer,
        &args.nsqd_tcp_addresses,
        &args.lookupd_http_addresses,
    );
    if let Err(e) = connected.await {
        consumer.stop().await;
        let _ = tx.send(Event::Terminate);
        return Err(e.into());
    }
    Ok(TopicLogger {
        consumer,
        events: tx,
        thread,
    })
}
