//! `nsqd`: a drop-in replacement for NSQ's nsqd on a crash-safe log.

use clap::Parser;
use nsq_server::args::normalize_go_flags;
use nsq_server::nsqd::options::{Cli, NsqdOptions};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(normalize_go_flags(std::env::args())) {
        Ok(cli) => cli,
        // --help and --version: clap's text on stdout, exit 0.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // A bad flag: one line (clap's first, which names the flag), exit 2 like Go's flag.
        Err(e) => {
            eprintln!("nsqd: {} (see nsqd --help)", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let opts = match NsqdOptions::resolve(cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("nsqd: {e}");
            return ExitCode::FAILURE;
        }
    };
    nsq_server::logging::init(&opts.log_level, &opts.log_prefix);
    for setting in &opts.ignored {
        tracing::warn!("config file: ignoring {setting}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nsqd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(nsq_server::nsqd::run(
        opts,
        nsq_server::signals::terminated(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsqd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first line of clap's error text, without its `error: ` label.
fn one_line(text: &str) -> String {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text);
    first.trim().trim_start_matches("error: ").to_string()
}
