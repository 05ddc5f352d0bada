//! `nsq_to_nsq`: copy NSQ topics to other nsqd. See [`nsq_tools::nsq_to_nsq`].

use nsq_tools::cli;
use nsq_tools::nsq_to_nsq::{self, Args};
use std::process::ExitCode;

const NAME: &str = "nsq_to_nsq";

fn main() -> ExitCode {
    let args: Args = cli::parse_args(NAME);
    cli::run_tool(
        NAME,
        args.version,
        || args.validate().map(drop),
        || cli::init_logging(NAME, "info"),
        || nsq_to_nsq::run(&args),
    )
}
