//! `nsq_tail`: print NSQ topics to stdout. See [`nsq_tools::tail`].

use nsq_tools::cli;
use nsq_tools::tail::{self, Args};
use std::process::ExitCode;

const NAME: &str = "nsq_tail";

fn main() -> ExitCode {
    let args: Args = cli::parse_args(NAME);
    cli::run_tool(
        NAME,
        args.version,
        || args.validate().map(drop),
        || cli::init_logging(NAME, "warn"),
        || tail::run(&args),
    )
}
