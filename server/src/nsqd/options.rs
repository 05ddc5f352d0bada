//! nsqd's flags: NSQ's names and defaults, from the command line (Go style or clap style)
//! and from a `--config` TOML file with the same names spelled with `_`.

use super::tls::{ClientAuthPolicy, TlsMinVersion, TlsOptions, TlsRequired};
use crate::args::{format_duration, parse_duration};
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags as given on the command line; `None` means "not given" so the config file and then
/// NSQ's default apply, in that order.
#[derive(Debug, Parser, Default)]
#[command(
    name = "nsqd",
    // NSQ's `nsqd --version` shape, which client fixtures parse (see crate::version).
    version = crate::version::VERSION_TEXT,
    about = concat!("nsqd: a crash-safe NSQ daemon on a log-structured store (nsq-rs ", env!("CARGO_PKG_VERSION"), ")")
)]
pub struct Cli {
    /// path to config file (TOML; option names with `_`)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// address to listen on for TCP clients [default: 0.0.0.0:4150]
    #[arg(long)]
    pub tcp_address: Option<String>,
    /// address to listen on for HTTP clients [default: 0.0.0.0:4151]
    #[arg(long)]
    pub http_address: Option<String>,
    /// address to listen on for HTTPS clients (served when --tls-cert is set) [default: 0.0.0.0:4152]
    #[arg(long)]
    pub https_address: Option<String>,
    /// address that will be registered with lookupd [default: the OS hostname]
    #[arg(long)]
    pub broadcast_address: Option<String>,
    /// TCP port registered with lookupd [default: the TCP port listened on]
    #[arg(long)]
    pub broadcast_tcp_port: Option<u16>,
    /// HTTP port registered with lookupd [default: the HTTP port listened on]
    #[arg(long)]
    pub broadcast_http_port: Option<u16>,
    /// lookupd TCP address (may be given multiple times)
    #[arg(long)]
    pub lookupd_tcp_address: Vec<String>,
    /// path to store messages [default: the current directory]
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// unique part for message IDs, in [0,1024) [default: hash of hostname]
    #[arg(long)]
    pub node_id: Option<i64>,
    /// messages an #ephemeral topic keeps in memory [default: 10000]
    #[arg(long)]
    pub mem_queue_size: Option<i64>,
    /// number of bytes per segment file before rolling [default: 104857600]
    #[arg(long)]
    pub max_bytes_per_file: Option<i64>,
    /// number of messages per fsync; 1 = every publish is fsynced before its OK [default: 2500]
    #[arg(long)]
    pub sync_every: Option<i64>,
    /// duration of time per fsync [default: 2s]
    #[arg(long, value_parser = parse_duration)]
    pub sync_timeout: Option<Duration>,
    /// default duration to wait before auto-requeueing a message [default: 1m0s]
    #[arg(long, value_parser = parse_duration)]
    pub msg_timeout: Option<Duration>,
    /// maximum duration before a message will time out [default: 15m0s]
    #[arg(long, value_parser = parse_duration)]
    pub max_msg_timeout: Option<Duration>,
    /// maximum size of a single message in bytes [default: 1048576]
    #[arg(long)]
    pub max_msg_size: Option<i64>,
    /// maximum size of a single command body [default: 5242880]
    #[arg(long)]
    pub max_body_size: Option<i64>,
    /// maximum requeueing timeout for a message [default: 1h0m0s]
    #[arg(long, value_parser = parse_duration)]
    pub max_req_timeout: Option<Duration>,
    /// maximum RDY count for a client [default: 2500]
    #[arg(long)]
    pub max_rdy_count: Option<i64>,
    /// maximum client configurable duration between heartbeats [default: 1m0s]
    #[arg(long, value_parser = parse_duration)]
    pub max_heartbeat_interval: Option<Duration>,
    /// maximum client configurable output buffer size in bytes [default: 65536]
    #[arg(long)]
    pub max_output_buffer_size: Option<i64>,
    /// maximum client configurable duration between flushes [default: 30s]
    #[arg(long, value_parser = parse_duration)]
    pub max_output_buffer_timeout: Option<Duration>,
    /// minimum client configurable duration between flushes [default: 25ms]
    #[arg(long, value_parser = parse_duration)]
    pub min_output_buffer_timeout: Option<Duration>,
    /// default duration between flushes to clients [default: 250ms]
    #[arg(long, value_parser = parse_duration)]
    pub output_buffer_timeout: Option<Duration>,
    /// maximum consumers per channel, 0 = unlimited [default: 0]
    #[arg(long)]
    pub max_channel_consumers: Option<i64>,
    /// enable snappy feature negotiation [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub snappy: Option<bool>,
    /// enable deflate feature negotiation [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub deflate: Option<bool>,
    /// max deflate compression level a client can negotiate [default: 6]
    #[arg(long)]
    pub max_deflate_level: Option<i64>,
    /// keep consumed messages for replay this long (ours; unset = reclaim at once, as NSQ)
    #[arg(long, value_parser = parse_duration)]
    pub retention_time: Option<Duration>,
    /// keep at most this many bytes of consumed messages per topic (ours)
    #[arg(long)]
    pub retention_bytes: Option<u64>,
    /// log verbosity: debug, info, warn, error, fatal [default: info]
    #[arg(long)]
    pub log_level: Option<String>,
    /// log message prefix [default: "[nsqd] "]
    #[arg(long)]
    pub log_prefix: Option<String>,
    /// accepted for compatibility; our in-flight scanning does not use it
    #[arg(long, hide = true)]
    pub queue_scan_selection_count: Option<i64>,
    /// accepted for compatibility; our in-flight scanning does not use it
    #[arg(long, hide = true)]
    pub queue_scan_worker_pool_max: Option<i64>,
    /// deprecated in NSQ, no effect
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub verbose: Option<bool>,
    /// path to certificate file (PEM)
    #[arg(long)]
    pub tls_cert: Option<String>,
    /// path to key file (PEM)
    #[arg(long)]
    pub tls_key: Option<String>,
    /// path to certificate authority file: client certificates are verified against it
    #[arg(long)]
    pub tls_root_ca_file: Option<String>,
    /// client certificate auth policy ('require' or 'require-verify')
    #[arg(long)]
    pub tls_client_auth_policy: Option<String>,
    /// require TLS for client connections (true, false, tcp-https) [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub tls_required: Option<String>,
    /// minimum TLS version: ssl3.0, tls1.0, tls1.1, tls1.2, tls1.3 (below 1.2 means 1.2) [default: tls1.0]
    #[arg(long)]
    pub tls_min_version: Option<String>,
    /// auth server address, host:port or a URL (may be given multiple times)
    #[arg(long)]
    pub auth_http_address: Vec<String>,
    /// timeout for connecting to an auth server [default: 2s]
    #[arg(long, value_parser = parse_duration)]
    pub http_client_connect_timeout: Option<Duration>,
    /// timeout of a request to an auth server [default: 5s]
    #[arg(long, value_parser = parse_duration)]
    pub http_client_request_timeout: Option<Duration>,
    /// UDP <addr>:<port> of a statsd daemon for pushing stats
    #[arg(long)]
    pub statsd_address: Option<String>,
    /// prefix used for keys sent to statsd (%s for host replacement) [default: nsq.%s]
    #[arg(long)]
    pub statsd_prefix: Option<String>,
    /// duration between pushing to statsd [default: 1m0s]
    #[arg(long, value_parser = parse_duration)]
    pub statsd_interval: Option<Duration>,
    /// toggle sending memory and GC stats to statsd [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub statsd_mem_stats: Option<bool>,
    /// the size in bytes of statsd UDP packets [default: 508]
    #[arg(long)]
    pub statsd_udp_packet_size: Option<i64>,
    /// skip ephemeral topics and channels when sending stats to statsd [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub statsd_exclude_ephemeral: Option<bool>,
    /// message processing time percentiles (as float (0, 1.0]) to track (can be specified multiple times or comma separated '1.0,0.99,0.95')
    #[arg(long)]
    pub e2e_processing_latency_percentile: Vec<String>,
    /// calculate end to end latency quantiles for this duration of time [default: 10m0s]
    #[arg(long, value_parser = parse_duration)]
    pub e2e_processing_latency_window_time: Option<Duration>,
    /// leave ephemeral topics and channels out of /metrics (ours) [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub metrics_exclude_ephemeral: Option<bool>,
    /// deprecated NSQ alias of --node-id
    #[arg(long, hide = true)]
    pub worker_id: Option<i64>,
}

/// `--statsd-*`: where and how nsqd pushes its numbers (see [`super::statsd`]).
#[derive(Debug, Clone)]
pub struct StatsdOptions {
    /// The statsd daemon, `host:port` (UDP).
    pub address: String,
    /// Key prefix; `%s` stands for the broadcast `host_port` (filled in at start).
    pub prefix: String,
    /// Time between pushes.
    pub interval: Duration,
    /// Whether memory figures are sent too.
    pub mem_stats: bool,
    /// Whether `#ephemeral` topics and channels are left out.
    pub exclude_ephemeral: bool,
    /// Largest datagram; several metrics are packed into one up to this size.
    pub udp_packet_size: usize,
}

/// `--e2e-processing-latency-*`: which quantiles of FIN time − publish time are kept.
#[derive(Debug, Clone)]
pub struct E2eOptions {
    /// Quantiles in (0, 1], highest first (the order NSQ reports them in).
    pub percentiles: Vec<f64>,
    /// Quantiles cover about this much recent time.
    pub window: Duration,
}

/// A duration in the config file: a Go duration string, or an integer meaning milliseconds
/// (NSQ's option coercion treats integers that way).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConfigDuration {
    /// `"2s"`, `"15m"`.
    Text(String),
    /// Milliseconds.
    Millis(u64),
}

impl ConfigDuration {
    fn parse(&self) -> Result<Duration, String> {
        match self {
            ConfigDuration::Text(t) => parse_duration(t),
            ConfigDuration::Millis(ms) => Ok(Duration::from_millis(*ms)),
        }
    }
}

/// The `--config` file: the same options, `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfigFile {
    tcp_address: Option<String>,
    http_address: Option<String>,
    https_address: Option<String>,
    broadcast_address: Option<String>,
    broadcast_tcp_port: Option<u16>,
    broadcast_http_port: Option<u16>,
    nsqlookupd_tcp_addresses: Option<Vec<String>>,
    data_path: Option<PathBuf>,
    node_id: Option<i64>,
    /// NSQ's config name for the node id (`--node-id`).
    id: Option<i64>,
    mem_queue_size: Option<i64>,
    max_bytes_per_file: Option<i64>,
    sync_every: Option<i64>,
    sync_timeout: Option<ConfigDuration>,
    msg_timeout: Option<ConfigDuration>,
    max_msg_timeout: Option<ConfigDuration>,
    max_msg_size: Option<i64>,
    max_body_size: Option<i64>,
    max_req_timeout: Option<ConfigDuration>,
    max_rdy_count: Option<i64>,
    max_heartbeat_interval: Option<ConfigDuration>,
    max_output_buffer_size: Option<i64>,
    max_output_buffer_timeout: Option<ConfigDuration>,
    min_output_buffer_timeout: Option<ConfigDuration>,
    output_buffer_timeout: Option<ConfigDuration>,
    max_channel_consumers: Option<i64>,
    snappy: Option<bool>,
    deflate: Option<bool>,
    max_deflate_level: Option<i64>,
    retention_time: Option<ConfigDuration>,
    retention_bytes: Option<u64>,
    log_level: Option<String>,
    log_prefix: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_root_ca_file: Option<String>,
    tls_client_auth_policy: Option<String>,
    tls_required: Option<toml::Value>,
    tls_min_version: Option<toml::Value>,
    auth_http_addresses: Option<Vec<String>>,
    http_client_connect_timeout: Option<ConfigDuration>,
    http_client_request_timeout: Option<ConfigDuration>,
    statsd_address: Option<String>,
    statsd_prefix: Option<String>,
    statsd_interval: Option<ConfigDuration>,
    statsd_mem_stats: Option<bool>,
    statsd_udp_packet_size: Option<i64>,
    statsd_exclude_ephemeral: Option<bool>,
    e2e_processing_latency_percentiles: Option<Vec<f64>>,
    e2e_processing_latency_window_time: Option<ConfigDuration>,
    metrics_exclude_ephemeral: Option<bool>,
    #[serde(flatten)]
    _other: toml::Table,
}

/// nsqd's resolved configuration.
#[derive(Debug, Clone)]
pub struct NsqdOptions {
    pub tcp_address: SocketAddr,
    pub http_address: SocketAddr,
    /// Where HTTPS is served when a certificate is configured.
    pub https_address: SocketAddr,
    /// `--tls-*`.
    pub tls: TlsOptions,
    /// `--auth-http-address`: auth servers, `host:port` or URLs.
    pub auth_http_addresses: Vec<String>,
    /// `--http-client-connect-timeout` (auth server requests).
    pub http_client_connect_timeout: Duration,
    /// `--http-client-request-timeout` (auth server requests).
    pub http_client_request_timeout: Duration,
    pub broadcast_address: String,
    pub broadcast_tcp_port: Option<u16>,
    pub broadcast_http_port: Option<u16>,
    pub lookupd_tcp_addresses: Vec<String>,
    pub data_path: PathBuf,
    pub node_id: i64,
    pub mem_queue_size: usize,
    pub max_bytes_per_file: u64,
    pub sync_every: u64,
    pub sync_timeout: Duration,
    pub msg_timeout: Duration,
    pub max_msg_timeout: Duration,
    pub max_msg_size: usize,
    pub max_body_size: usize,
    pub max_req_timeout: Duration,
    pub max_rdy_count: i64,
    pub max_heartbeat_interval: Duration,
    pub max_output_buffer_size: i64,
    pub max_output_buffer_timeout: Duration,
    pub min_output_buffer_timeout: Duration,
    pub output_buffer_timeout: Duration,
    pub max_channel_consumers: i64,
    pub snappy: bool,
    pub deflate: bool,
    pub max_deflate_level: i64,
    pub retention_time: Option<Duration>,
    pub retention_bytes: Option<u64>,
    pub log_level: String,
    pub log_prefix: String,
    /// `--statsd-*`; `None` without `--statsd-address`.
    pub statsd: Option<StatsdOptions>,
    /// `--e2e-processing-latency-*`; `None` without percentiles.
    pub e2e: Option<E2eOptions>,
    /// `--metrics-exclude-ephemeral` (ours).
    pub metrics_exclude_ephemeral: bool,
    /// Settings from the config file that were accepted but have no effect (logged at start).
    pub ignored: Vec<String>,
}

/// A configuration problem, reported in one line before nsqd starts.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    Config { path: String, reason: String },
    /// A value is out of range or malformed.
    #[error("invalid --{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
    /// A flag for a feature this build does not have.
    #[error("--{0} is not supported by this nsqd yet")]
    Unsupported(&'static str),
}

fn invalid(flag: &'static str, reason: impl Into<String>) -> OptionsError {
    OptionsError::Invalid {
        flag,
        reason: reason.into(),
    }
}

fn duration_from_config(
    flag: &'static str,
    value: Option<ConfigDuration>,
) -> Result<Option<Duration>, OptionsError> {
    value
        .map(|v| v.parse().map_err(|e| invalid(flag, e)))
        .transpose()
}

/// NSQ's own example config sets `tls_cert = ""` and friends: empty means not set.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn positive(flag: &'static str, value: i64) -> Result<u64, OptionsError> {
    u64::try_from(value).map_err(|_| invalid(flag, format!("{value} must not be negative")))
}

fn address(flag: &'static str, value: &str) -> Result<SocketAddr, OptionsError> {
    crate::args::parse_socket_address(value).map_err(|reason| invalid(flag, reason))
}

/// The machine's host name (NSQ's default broadcast address).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A TOML value that NSQ reads through its flag parser: a string or a bool.
fn toml_text(value: &Option<toml::Value>) -> Option<String> {
    match value {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

/// The `--tls-*` settings, with NSQ's rules: a client auth policy implies `--tls-required`,
/// and requiring TLS without a certificate is an error.
fn tls_options(cli: &Cli, file: &ConfigFile) -> Result<TlsOptions, OptionsError> {
    let path = |c: &Option<String>, f: &Option<String>| {
        non_empty(c.clone())
            .or_else(|| non_empty(f.clone()))
            .map(PathBuf::from)
    };
    let policy = non_empty(cli.tls_client_auth_policy.clone())
        .or_else(|| non_empty(file.tls_client_auth_policy.clone()));
    let mut required = match cli
        .tls_required
        .clone()
        .or_else(|| toml_text(&file.tls_required))
    {
        Some(v) => TlsRequired::parse(&v).map_err(|e| invalid("tls-required", e))?,
        None => TlsRequired::No,
    };
    if policy.is_some() && required == TlsRequired::No {
        required = TlsRequired::Everywhere;
    }
    let min_version = match cli
        .tls_min_version
        .clone()
        .or_else(|| toml_text(&file.tls_min_version))
    {
        Some(v) => TlsMinVersion::parse(&v).map_err(|e| invalid("tls-min-version", e))?,
        None => TlsMinVersion::default(),
    };
    let tls = TlsOptions {
        cert: path(&cli.tls_cert, &file.tls_cert),
        key: path(&cli.tls_key, &file.tls_key),
        root_ca_file: path(&cli.tls_root_ca_file, &file.tls_root_ca_file),
        client_auth_policy: policy
            .as_deref()
            .map_or(ClientAuthPolicy::None, ClientAuthPolicy::parse),
        required,
        min_version,
    };
    if tls.required != TlsRequired::No && (tls.cert.is_none() || tls.key.is_none()) {
        return Err(invalid(
            "tls-required",
            "cannot require TLS client connections without TLS key and cert",
        ));
    }
    Ok(tls)
}

/// `--statsd-*` with NSQ's defaults; `None` when no address is given.
fn statsd_options(cli: &Cli, file: &ConfigFile) -> Result<Option<StatsdOptions>, OptionsError> {
    let Some(address) =
        non_empty(cli.statsd_address.clone()).or_else(|| non_empty(file.statsd_address.clone()))
    else {
        return Ok(None);
    };
    let interval = match cli.statsd_interval {
        Some(d) => d,
        None => duration_from_config("statsd-interval", file.statsd_interval.clone())?
            .unwrap_or(Duration::from_secs(60)),
    };
    if interval.is_zero() {
        return Err(invalid("statsd-interval", "must be positive"));
    }
    let packet = cli
        .statsd_udp_packet_size
        .or(file.statsd_udp_packet_size)
        .unwrap_or(508);
    // Below a few dozen bytes no metric fits; NSQ then sends one metric per datagram.
    let udp_packet_size = usize::try_from(packet)
        .map_err(|_| {
            invalid(
                "statsd-udp-packet-size",
                format!("{packet} must not be negative"),
            )
        })?
        .clamp(1, 65_507);
    Ok(Some(StatsdOptions {
        address,
        prefix: cli
            .statsd_prefix
            .clone()
            .or_else(|| file.statsd_prefix.clone())
            .unwrap_or_else(|| "nsq.%s".into()),
        interval,
        mem_stats: cli
            .statsd_mem_stats
            .or(file.statsd_mem_stats)
            .unwrap_or(true),
        exclude_ephemeral: cli
            .statsd_exclude_ephemeral
            .or(file.statsd_exclude_ephemeral)
            .unwrap_or(false),
        udp_packet_size,
    }))
}

/// `--e2e-processing-latency-*`, checked as NSQ does (each percentile in (0, 1]).
fn e2e_options(cli: &Cli, file: &ConfigFile) -> Result<Option<E2eOptions>, OptionsError> {
    let flag = "e2e-processing-latency-percentile";
    let mut percentiles = Vec::new();
    if cli.e2e_processing_latency_percentile.is_empty() {
        percentiles.extend(file.e2e_processing_latency_percentiles.iter().flatten());
    } else {
        for value in cli
            .e2e_processing_latency_percentile
            .iter()
            .flat_map(|v| v.split(','))
        {
            let value = value.trim();
            percentiles.push(
                value
                    .parse::<f64>()
                    .map_err(|_| invalid(flag, format!("{value:?} is not a number")))?,
            );
        }
    }
    if let Some(bad) = percentiles.iter().find(|v| !(**v > 0.0 && **v <= 1.0)) {
        return Err(invalid(
            flag,
            format!("invalid E2E processing latency percentile: {bad}"),
        ));
    }
    let window = match cli.e2e_processing_latency_window_time {
        Some(d) => d,
        None => duration_from_config(
            "e2e-processing-latency-window-time",
            file.e2e_processing_latency_window_time.clone(),
        )?
        .unwrap_or(Duration::from_secs(600)),
    };
    if percentiles.is_empty() {
        return Ok(None);
    }
    if window.is_zero() {
        return Err(invalid(
            "e2e-processing-latency-window-time",
            "must be positive",
        ));
    }
    percentiles.sort_by(|a, b| b.total_cmp(a));
    percentiles.dedup();
    Ok(Some(E2eOptions {
        percentiles,
        window,
    }))
}

impl NsqdOptions {
    /// Resolves flags over the config file over NSQ's defaults.
    pub fn resolve(cli: Cli) -> Result<NsqdOptions, OptionsError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| OptionsError::Config {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                toml::from_str::<ConfigFile>(&text).map_err(|e| OptionsError::Config {
                    path: path.display().to_string(),
                    reason: e.message().to_string(),
                })?
            }
            None => ConfigFile::default(),
        };
        let tls = tls_options(&cli, &file)?;
        let auth_http_addresses: Vec<String> = if cli.auth_http_address.is_empty() {
            file.auth_http_addresses.clone().unwrap_or_default()
        } else {
            cli.auth_http_address.clone()
        }
        .into_iter()
        .filter(|a| !a.trim().is_empty())
        .collect();
        let ignored = Vec::new();
        let statsd = statsd_options(&cli, &file)?;
        let e2e = e2e_options(&cli, &file)?;
        let dur = |cli: Option<Duration>,
                   flag,
                   file: Option<ConfigDuration>,
                   default: Duration|
         -> Result<Duration, OptionsError> {
            Ok(match cli {
                Some(d) => d,
                None => duration_from_config(flag, file)?.unwrap_or(default),
            })
        };
        let tcp = cli
            .tcp_address
            .or(file.tcp_address)
            .unwrap_or_else(|| "0.0.0.0:4150".into());
        let http = cli
            .http_address
            .or(file.http_address)
            .unwrap_or_else(|| "0.0.0.0:4151".into());
        let https = cli
            .https_address
            .or(file.https_address)
            .unwrap_or_else(|| "0.0.0.0:4152".into());
        let node_id = cli
            .node_id
            .or(cli.worker_id)
            .or(file.node_id)
            .or(file.id)
            .unwrap_or_else(|| {
                let h = hostname();
                (crc32fast::hash(h.as_bytes()) % 1024) as i64
            });
        if !(0..1024).contains(&node_id) {
            return Err(invalid("node-id", format!("{node_id} not in [0,1024)")));
        }
        let lookupds = if cli.lookupd_tcp_address.is_empty() {
            file.nsqlookupd_tcp_addresses.unwrap_or_default()
        } else {
            cli.lookupd_tcp_address
        };
        let opts = NsqdOptions {
            tcp_address: address("tcp-address", &tcp)?,
            http_address: address("http-address", &http)?,
            https_address: address("https-address", &https)?,
            tls,
            auth_http_addresses,
            http_client_connect_timeout: dur(
                cli.http_client_connect_timeout,
                "http-client-connect-timeout",
                file.http_client_connect_timeout,
                Duration::from_secs(2),
            )?,
            http_client_request_timeout: dur(
                cli.http_client_request_timeout,
                "http-client-request-timeout",
                file.http_client_request_timeout,
                Duration::from_secs(5),
            )?,
            broadcast_address: cli
                .broadcast_address
                .or(file.broadcast_address)
                .unwrap_or_else(hostname),
            broadcast_tcp_port: cli.broadcast_tcp_port.or(file.broadcast_tcp_port),
            broadcast_http_port: cli.broadcast_http_port.or(file.broadcast_http_port),
            lookupd_tcp_addresses: lookupds,
            data_path: cli
                .data_path
                .or(file.data_path)
                .unwrap_or_else(|| PathBuf::from(".")),
            node_id,
            mem_queue_size: positive(
                "mem-queue-size",
                cli.mem_queue_size.or(file.mem_queue_size).unwrap_or(10_000),
            )? as usize,
            max_bytes_per_file: positive(
                "max-bytes-per-file",
                cli.max_bytes_per_file
                    .or(file.max_bytes_per_file)
                    .unwrap_or(104_857_600),
            )?,
            sync_every: positive(
                "sync-every",
                cli.sync_every.or(file.sync_every).unwrap_or(2500),
            )?,
            sync_timeout: dur(
                cli.sync_timeout,
                "sync-timeout",
                file.sync_timeout,
                Duration::from_secs(2),
            )?,
            msg_timeout: dur(
                cli.msg_timeout,
                "msg-timeout",
                file.msg_timeout,
                Duration::from_secs(60),
            )?,
            max_msg_timeout: dur(
                cli.max_msg_timeout,
                "max-msg-timeout",
                file.max_msg_timeout,
                Duration::from_secs(900),
            )?,
            max_msg_size: positive(
                "max-msg-size",
                cli.max_msg_size.or(file.max_msg_size).unwrap_or(1_048_576),
            )? as usize,
            max_body_size: positive(
                "max-body-size",
                cli.max_body_size
                    .or(file.max_body_size)
                    .unwrap_or(5_242_880),
            )? as usize,
            max_req_timeout: dur(
                cli.max_req_timeout,
                "max-req-timeout",
                file.max_req_timeout,
                Duration::from_secs(3600),
            )?,
            max_rdy_count: cli.max_rdy_count.or(file.max_rdy_count).unwrap_or(2500),
            max_heartbeat_interval: dur(
                cli.max_heartbeat_interval,
                "max-heartbeat-interval",
                file.max_heartbeat_interval,
                Duration::from_secs(60),
            )?,
            max_output_buffer_size: cli
                .max_output_buffer_size
                .or(file.max_output_buffer_size)
                .unwrap_or(65_536),
            max_output_buffer_timeout: dur(
                cli.max_output_buffer_timeout,
                "max-output-buffer-timeout",
                file.max_output_buffer_timeout,
                Duration::from_secs(30),
            )?,
            min_output_buffer_timeout: dur(
                cli.min_output_buffer_timeout,
                "min-output-buffer-timeout",
                file.min_output_buffer_timeout,
                Duration::from_millis(25),
            )?,
            output_buffer_timeout: dur(
                cli.output_buffer_timeout,
                "output-buffer-timeout",
                file.output_buffer_timeout,
                Duration::from_millis(250),
            )?,
            max_channel_consumers: cli
                .max_channel_consumers
                .or(file.max_channel_consumers)
                .unwrap_or(0),
            snappy: cli.snappy.or(file.snappy).unwrap_or(true),
            deflate: cli.deflate.or(file.deflate).unwrap_or(true),
            max_deflate_level: cli
                .max_deflate_level
                .or(file.max_deflate_level)
                .unwrap_or(6),
            retention_time: match cli.retention_time {
                Some(d) => Some(d),
                None => duration_from_config("retention-time", file.retention_time)?,
            },
            retention_bytes: cli.retention_bytes.or(file.retention_bytes),
            log_level: cli
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into())
                .to_lowercase(),
            log_prefix: cli
                .log_prefix
                .or(file.log_prefix)
                .unwrap_or_else(|| "[nsqd] ".into()),
            statsd,
            e2e,
            metrics_exclude_ephemeral: cli
                .metrics_exclude_ephemeral
                .or(file.metrics_exclude_ephemeral)
                .unwrap_or(false),
            ignored,
        };
        if opts.max_msg_size == 0 || opts.max_msg_size > opts.max_body_size {
            return Err(invalid(
                "max-msg-size",
                format!(
                    "{} must be in 1..=--max-body-size ({})",
                    opts.max_msg_size, opts.max_body_size
                ),
            ));
        }
        if opts.max_rdy_count < 1 {
            return Err(invalid("max-rdy-count", "must be at least 1"));
        }
        if !(1..=9).contains(&opts.max_deflate_level) {
            return Err(invalid("max-deflate-level", "must be in 1..=9"));
        }
        if !["debug", "info", "warn", "error", "fatal"].contains(&opts.log_level.as_str()) {
            return Err(invalid(
                "log-level",
                format!(
                    "{:?} is not one of debug, info, warn, error, fatal",
                    opts.log_level
                ),
            ));
        }
        Ok(opts)
    }

    /// Port registered with lookupd and shown in `/info` for TCP.
    pub fn broadcast_tcp_port(&self) -> u16 {
        self.broadcast_tcp_port.unwrap_or(self.tcp_address.port())
    }

    /// Port registered with lookupd and shown in `/info` for HTTP.
    pub fn broadcast_http_port(&self) -> u16 {
        self.broadcast_http_port.unwrap_or(self.http_address.port())
    }

    /// Go-style rendering of a duration option, for `/info` and logs.
    pub fn show(d: Duration) -> String {
        format_duration(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<NsqdOptions, OptionsError> {
        let argv = crate::args::normalize_go_flags(
            std::iter::once("nsqd".to_string()).chain(args.iter().map(|s| s.to_string())),
        );
        NsqdOptions::resolve(Cli::try_parse_from(argv).map_err(|e| invalid("args", e.to_string()))?)
    }

    #[test]
    fn defaults_are_nsqs() {
        let o = parse(&[]).expect("defaults");
        assert_eq!(o.tcp_address.port(), 4150);
        assert_eq!(o.http_address.port(), 4151);
        assert_eq!(
            (o.sync_every, o.sync_timeout),
            (2500, Duration::from_secs(2))
        );
        assert_eq!(
            (o.max_msg_size, o.max_body_size, o.max_rdy_count),
            (1_048_576, 5_242_880, 2500)
        );
        assert_eq!(o.msg_timeout, Duration::from_secs(60));
        assert!(o.snappy && o.deflate);
        assert_eq!(o.data_path, PathBuf::from("."));
    }

    #[test]
    fn go_style_flags_and_config_file() {
        let dir = std::env::temp_dir().join(format!("nsqd-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cfg = dir.join("nsqd.cfg");
        std::fs::write(&cfg, "sync_every = 7\nmsg_timeout = \"30s\"\nnsqlookupd_tcp_addresses = [\"127.0.0.1:4160\"]\nunknown_thing = 1\n").expect("write");
        let o = parse(&[
            "-config",
            cfg.to_str().expect("utf8"),
            "-msg-timeout=5s",
            "--snappy=false",
            "--deflate",
        ])
        .expect("parse");
        assert_eq!(o.sync_every, 7);
        assert_eq!(
            o.msg_timeout,
            Duration::from_secs(5),
            "flags win over the file"
        );
        assert_eq!(o.lookupd_tcp_addresses, vec!["127.0.0.1:4160"]);
        assert!(!o.snappy && o.deflate);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn nsq_example_config_shapes_are_accepted() {
        let dir = std::env::temp_dir().join(format!("nsqd-opts-nsq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cfg = dir.join("nsqd.cfg");
        std::fs::write(
            &cfg,
            "id = 42\nmsg_timeout = 5000\nsync_timeout = \"2s\"\ntls_cert = \"\"\ntls_key = \"\"\n\
             tls_required = false\nstatsd_prefix = \"nsq.%s\"\n\
             e2e_processing_latency_percentiles = [1.0, 0.99]\n",
        )
        .expect("write");
        let o = parse(&["--config", cfg.to_str().expect("utf8")]).expect("parse");
        assert_eq!(o.node_id, 42);
        assert_eq!(
            o.msg_timeout,
            Duration::from_secs(5),
            "integers are milliseconds"
        );
        let e2e = o.e2e.expect("percentiles from the file");
        assert_eq!(e2e.percentiles, vec![1.0, 0.99]);
        assert_eq!(e2e.window, Duration::from_secs(600));
        std::fs::write(&cfg, "tls_required = true\n").expect("write");
        assert!(
            parse(&["--config", cfg.to_str().expect("utf8")]).is_err(),
            "TLS required without a certificate"
        );
        std::fs::write(
            &cfg,
            "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_required = \"tcp-https\"\n\
             tls_min_version = \"tls1.3\"\nauth_http_addresses = [\"127.0.0.1:4181\"]\n\
             http_client_request_timeout = \"9s\"\nhttps_address = \"127.0.0.1:9152\"\n",
        )
        .expect("write");
        let o = parse(&["--config", cfg.to_str().expect("utf8")]).expect("tls config");
        assert_eq!(o.tls.required, TlsRequired::TcpAndHttps);
        assert_eq!(o.tls.min_version, TlsMinVersion::Tls13);
        assert_eq!(o.auth_http_addresses, vec!["127.0.0.1:4181"]);
        assert_eq!(o.http_client_request_timeout, Duration::from_secs(9));
        assert_eq!(o.http_client_connect_timeout, Duration::from_secs(2));
        assert_eq!(o.https_address.port(), 9152);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(parse(&["-worker-id=9"]).expect("parse").node_id, 9);
        assert!(parse(&["--statsd-prefix=x", "--tls-min-version=tls1.2"]).is_ok());
        let o = parse(&[
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-client-auth-policy=require-verify",
        ])
        .expect("parse");
        assert_eq!(
            o.tls.required,
            TlsRequired::Everywhere,
            "a client auth policy implies --tls-required, as in NSQ"
        );
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        assert!(parse(&["--node-id", "5000"]).is_err());
        assert!(parse(&["--max-msg-size", "10", "--max-body-size", "5"]).is_err());
        assert!(parse(&["--tcp-address", "nonsense"]).is_err());
        assert!(parse(&["--e2e-processing-latency-percentile", "99"]).is_err());
        assert!(parse(&["--e2e-processing-latency-percentile", "0"]).is_err());
        assert!(parse(&[
            "--statsd-address=127.0.0.1:8125",
            "--statsd-udp-packet-size=-1"
        ])
        .is_err());
        assert!(parse(&["--tls-required=maybe", "--tls-cert=c", "--tls-key=k"]).is_err());
        assert!(parse(&["--log-level", "loud"]).is_err());
    }
}
