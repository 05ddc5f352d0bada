//! `to_nsq`: publish stdin to an NSQ topic. See [`nsq_tools::to_nsq`].

use nsq_tools::cli;
use nsq_tools::to_nsq::{self, Args};
use std::process::ExitCode;

const NAME: &str = "to_nsq";

fn main() -> ExitCode {
    let args: Args = cli::parse_args(NAME);
    cli::run_tool(
        NAME,
        args.version,
        || args.validate().map(drop),
        || cli::init_logging(NAME, "info"),
        || async {
            let stdin = tokio::io::BufReader::with_capacity(256 * 1024, tokio::io::stdin());
            to_nsq::run(&args, stdin).await.map(drop)
        },
    )
}
