//! What every network tool shares: Go-style flags (`-topic=x` as well as `--topic x`),
//! `--version` printing NSQ's `name vX` line, one-line errors with a non-zero exit, logging.

use crate::client::{self, Config, Consumer};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

/// Parses the process arguments for tool `name`. `--help` prints and exits 0; a bad flag
/// prints one line to stderr and exits 2.
pub fn parse_args<T: Parser>(name: &str) -> T {
    let args = nsq_server::args::normalize_go_flags(std::env::args());
    match T::try_parse_from(args) {
        Ok(parsed) => parsed,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                let _ = e.print();
                std::process::exit(0);
            }
            _ => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("invalid arguments");
                eprintln!("{name}: {}", first.trim_start_matches("error: "));
                std::process::exit(2);
            }
        },
    }
}

/// `name v1.3.0 (built w/rustc-X.Y.Z)`, NSQ's `--version` shape (see [`nsq_server::version`]).
pub fn version_line(name: &str) -> String {
    nsq_server::version::version_line(name)
}

/// A clap value parser for Go durations (`250ms`, `30s`, `1m0s`).
pub fn duration(text: &str) -> Result<Duration, String> {
    nsq_server::args::parse_duration(text)
}

/// Prints `name: error` on one line and returns the failure exit code.
pub fn fail(name: &str, error: impl std::fmt::Display) -> ExitCode {
    let text = error.to_string().replace(['\n', '\r'], " ");
    eprintln!("{name}: {text}");
    ExitCode::FAILURE
}

/// Logs to stderr with NSQ's `[name] ` prefix at `level` (debug, info, warn, error).
pub fn init_logging(name: &str, level: &str) {
    nsq_server::logging::init(level, &format!("[{name}] "));
}

/// The body of a network tool's `main` once its flags are parsed: `--version` prints NSQ's
/// line and exits 0; `check` refuses bad flags; `logging` sets up logging; `work` runs on a
/// tokio runtime. Any failure is one line on stderr (`name: error`) and a non-zero exit.
pub fn run_tool<CheckError, WorkError, Work>(
    name: &str,
    version: bool,
    check: impl FnOnce() -> Result<(), CheckError>,
    logging: impl FnOnce(),
    work: impl FnOnce() -> Work,
) -> ExitCode
where
    CheckError: std::fmt::Display,
    WorkError: std::fmt::Display,
    Work: std::future::Future<Output = Result<(), WorkError>>,
{
    if version {
        println!("{}", version_line(name));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = check() {
        return fail(name, e);
    }
    logging();
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => return fail(name, e),
    };
    match runtime.block_on(work()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(name, e),
    }
}

/// Connects `consumer` to every nsqd (`--nsqd-tcp-address`) and lookupd
/// (`--lookupd-http-address`) given, stopping at the first failure.
pub async fn connect_consumer(
    consumer: &Consumer,
    nsqd_tcp_addresses: &[String],
    lookupd_http_addresses: &[String],
) -> Result<(), client::Error> {
    for addr in nsqd_tcp_addresses {
        consumer.connect_to_nsqd(addr).await?;
    }
    for addr in lookupd_http_addresses {
        consumer.connect_to_lookupd(addr).await?;
    }
    Ok(())
}

/// A multi-threaded tokio runtime for a tool's `main`.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Applies one go-nsq option given as `name,value` (`--consumer-opt`, `--producer-opt`) to
/// `config`: TLS and AUTH ([`Config::set_tls_or_auth`]), `max_in_flight`, `max_attempts`,
/// `lookupd_poll_interval`, `lookupd_poll_jitter`, `default_requeue_delay`,
/// `max_requeue_delay`, `backoff_multiplier`, `max_backoff_duration`, `heartbeat_interval`,
/// `msg_timeout`, `dial_timeout`, `snappy`, `deflate`, `deflate_level`, `client_id`,
/// `hostname`, `user_agent`. Another name or a bad value is an error naming `flag`.
pub fn apply_client_opt(config: &mut Config, flag: &str, opt: &str) -> Result<(), String> {
    let bad = || format!("invalid {flag} {opt:?}");
    let (name, value) = opt.split_once(',').ok_or_else(bad)?;
    if let Some(result) = config.set_tls_or_auth(name, value) {
        return result.map_err(|e| format!("invalid {flag} {opt:?}: {e}"));
    }
    let dur = || duration(value).map_err(|_| bad());
    let int = || value.parse::<u32>().map_err(|_| bad());
    let flag_value = || value.parse::<bool>().map_err(|_| bad());
    match name {
        "max_in_flight" => config.max_in_flight = int()?,
        "max_attempts" => config.max_attempts = int()?.min(u32::from(u16::MAX)) as u16,
        "lookupd_poll_interval" => config.lookupd_poll_interval = dur()?,
        "lookupd_poll_jitter" => {
            config.lookupd_poll_jitter = value
                .parse::<f64>()
                .ok()
                .filter(|j| (0.0..=1.0).contains(j))
                .ok_or_else(bad)?
        }
        "default_requeue_delay" => config.default_requeue_delay = dur()?,
        "max_requeue_delay" => config.max_requeue_delay = dur()?,
        "backoff_multiplier" => config.backoff_multiplier = dur()?,
        "max_backoff_duration" => config.max_backoff_duration = dur()?,
        "heartbeat_interval" => config.heartbeat_interval = dur()?,
        "msg_timeout" => config.msg_timeout = Some(dur()?),
        "dial_timeout" => config.dial_timeout = dur()?,
        "snappy" => config.snappy = flag_value()?,
        "deflate" => config.deflate = flag_value()?,
        "deflate_level" => config.deflate_level = int()?,
        "client_id" => config.client_id = value.to_string(),
        "hostname" => config.hostname = value.to_string(),
        "user_agent" => config.user_agent = value.to_string(),
        _ => return Err(format!("invalid {flag} {opt:?}: unknown option")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_options_by_go_nsq_name() {
        let mut config = Config::default();
        for opt in [
            "max_attempts,0",
            "backoff_multiplier,250ms",
            "dial_timeout,3s",
            "snappy,true",
            "user_agent,me/1",
            "auth_secret,s",
        ] {
            apply_client_opt(&mut config, "--producer-opt", opt).expect(opt);
        }
        assert_eq!(config.max_attempts, 0);
        assert_eq!(config.backoff_multiplier, Duration::from_millis(250));
        assert_eq!(config.dial_timeout, Duration::from_secs(3));
        assert!(config.snappy);
        assert_eq!(config.user_agent, "me/1");
        assert_eq!(config.auth_secret.as_deref(), Some("s"));
        for bad in [
            "nope,1",
            "dial_timeout,soon",
            "snappy",
            "lookupd_poll_jitter,2",
        ] {
            let e = apply_client_opt(&mut config, "--producer-opt", bad).expect_err(bad);
            assert!(e.starts_with("invalid --producer-opt"), "{e}");
        }
    }
}
