//! `nsq_to_http`: send NSQ messages to HTTP endpoints. See [`nsq_tools::to_http`].

use nsq_tools::cli;
use nsq_tools::to_http::{self, Args};
use std::process::ExitCode;

const NAME: &str = "nsq_to_http";

fn main() -> ExitCode {
    let args: Args = cli::parse_args(NAME);
    cli::run_tool(
        NAME,
        args.version,
        || args.validate().map(drop),
        || cli::init_logging(NAME, "info"),
        || to_http::run(&args),
    )
}
