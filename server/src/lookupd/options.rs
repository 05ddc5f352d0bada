//! nsqlookupd's flags: NSQ's names and defaults, from the command line (Go or clap style) and
//! from a `--config` TOML file with the same names spelled with `_`.

use crate::args::parse_duration;
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags as given; `None` means "not given", so the config file and then NSQ's default apply.
#[derive(Debug, Parser, Default)]
#[command(
    name = "nsqlookupd",
    // NSQ's `nsqlookupd --version` shape, which client fixtures parse (see crate::version).
    version = crate::version::VERSION_TEXT,
    about = concat!("nsqlookupd: NSQ's discovery service (which nsqd has which topic) (nsq-rs ", env!("CARGO_PKG_VERSION"), ")")
)]
pub struct Cli {
    /// path to config file (TOML; option names with `_`)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// address to listen on for TCP clients (nsqd) [default: 0.0.0.0:4160]
    #[arg(long)]
    pub tcp_address: Option<String>,
    /// address to listen on for HTTP clients [default: 0.0.0.0:4161]
    #[arg(long)]
    pub http_address: Option<String>,
    /// address of this lookupd node, told to nsqd in IDENTIFY [default: the OS hostname]
    #[arg(long)]
    pub broadcast_address: Option<String>,
    /// duration of time a producer will remain in the active list since its last ping [default: 5m0s]
    #[arg(long, value_parser = parse_duration)]
    pub inactive_producer_timeout: Option<Duration>,
    /// duration of time a producer will remain tombstoned if registration remains [default: 45s]
    #[arg(long, value_parser = parse_duration)]
    pub tombstone_lifetime: Option<Duration>,
    /// log verbosity: debug, info, warn, error, fatal [default: info]
    #[arg(long)]
    pub log_level: Option<String>,
    /// log message prefix [default: "[nsqlookupd] "]
    #[arg(long)]
    pub log_prefix: Option<String>,
    /// deprecated in NSQ, no effect
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub verbose: Option<bool>,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    tcp_address: Option<String>,
    http_address: Option<String>,
    broadcast_address: Option<String>,
    inactive_producer_timeout: Option<String>,
    tombstone_lifetime: Option<String>,
    log_level: Option<String>,
    log_prefix: Option<String>,
}

/// Resolved options.
#[derive(Debug, Clone)]
pub struct LookupdOptions {
    /// TCP listen address.
    pub tcp_address: SocketAddr,
    /// HTTP listen address.
    pub http_address: SocketAddr,
    /// Our address as told to nsqd.
    pub broadcast_address: String,
    /// Producers silent this long are left out of `/lookup` and `/nodes`.
    pub inactive_producer_timeout: Duration,
    /// How long a tombstone keeps a producer out of `/lookup`.
    pub tombstone_lifetime: Duration,
    /// debug, info, warn, error or fatal.
    pub log_level: String,
    /// Prefix of every log line.
    pub log_prefix: String,
}

/// A bad flag or config file.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A value is malformed.
    #[error("invalid --{flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
}

fn address(flag: &'static str, value: &str) -> Result<SocketAddr, OptionsError> {
    crate::args::parse_socket_address(value)
        .map_err(|reason| OptionsError::Invalid { flag, reason })
}

fn duration(
    flag: &'static str,
    cli: Option<Duration>,
    file: Option<String>,
    default: Duration,
) -> Result<Duration, OptionsError> {
    if let Some(d) = cli {
        return Ok(d);
    }
    match file {
        Some(text) => {
            parse_duration(&text).map_err(|reason| OptionsError::Invalid { flag, reason })
        }
        None => Ok(default),
    }
}

impl LookupdOptions {
    /// Resolves flags over the config file over NSQ's defaults.
    pub fn resolve(cli: Cli) -> Result<LookupdOptions, OptionsError> {
        let file = match &cli.config {
            Some(path) => {
                let config_error = |reason: String| OptionsError::Config {
                    path: path.display().to_string(),
                    reason,
                };
                let text =
                    std::fs::read_to_string(path).map_err(|e| config_error(e.to_string()))?;
                toml::from_str::<ConfigFile>(&text)
                    .map_err(|e| config_error(e.message().to_string()))?
            }
            None => ConfigFile::default(),
        };
        let tcp = cli
            .tcp_address
            .or(file.tcp_address)
            .unwrap_or_else(|| "0.0.0.0:4160".into());
        let http = cli
            .http_address
            .or(file.http_address)
            .unwrap_or_else(|| "0.0.0.0:4161".into());
        Ok(LookupdOptions {
            tcp_address: address("tcp-address", &tcp)?,
            http_address: address("http-address", &http)?,
            broadcast_address: cli
                .broadcast_address
                .or(file.broadcast_address)
                .unwrap_or_else(crate::nsqd::options::hostname),
            inactive_producer_timeout: duration(
                "inactive-producer-timeout",
                cli.inactive_producer_timeout,
                file.inactive_producer_timeout,
                Duration::from_secs(300),
            )?,
            tombstone_lifetime: duration(
                "tombstone-lifetime",
                cli.tombstone_lifetime,
                file.tombstone_lifetime,
                Duration::from_secs(45),
            )?,
            log_level: cli
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            log_prefix: cli
                .log_prefix
                .or(file.log_prefix)
                .unwrap_or_else(|| "[nsqlookupd] ".into()),
        })
    }
}
