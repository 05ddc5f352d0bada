//! What every network tool shares: Go-style flags (`-topic=x` as well as `--topic x`),
//! `--version` printing NSQ's `name vX` line, one-line errors with a non-zero exit, logging.

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

/// A multi-threaded tokio runtime for a tool's `main`.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
