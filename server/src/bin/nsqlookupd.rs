//! `nsqlookupd`: NSQ's discovery daemon, a drop-in replacement.

use clap::Parser;
use nsq_server::args::normalize_go_flags;
use nsq_server::lookupd::options::{Cli, LookupdOptions};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(normalize_go_flags(std::env::args())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let opts = match LookupdOptions::resolve(cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("nsqlookupd: {e}");
            return ExitCode::FAILURE;
        }
    };
    nsq_server::logging::init(&opts.log_level, &opts.log_prefix);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nsqlookupd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(nsq_server::lookupd::run(
        opts,
        nsq_server::signals::terminated(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsqlookupd: {e}");
            ExitCode::FAILURE
        }
    }
}
