//! `nsq_stat`: a rolling table of one topic/channel's counters. See [`nsq_tools::stat`].

use nsq_tools::cli;
use nsq_tools::stat::{self, Args};
use std::process::ExitCode;

const NAME: &str = "nsq_stat";

fn main() -> ExitCode {
    let args: Args = cli::parse_args(NAME);
    if args.version {
        println!("{}", cli::version_line(NAME));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = args.validate() {
        return cli::fail(NAME, e);
    }
    cli::init_logging(NAME, "info");
    let runtime = match cli::runtime() {
        Ok(r) => r,
        Err(e) => return cli::fail(NAME, e),
    };
    let mut out = std::io::stdout();
    let result = runtime.block_on(async {
        tokio::select! {
            r = stat::run(&args, &mut out) => r,
            _ = nsq_server::signals::terminated() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(stat::Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => cli::fail(NAME, e),
    }
}
