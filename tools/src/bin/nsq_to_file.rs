//! `nsq_to_file`: archive NSQ topics to files. See [`nsq_tools::to_file`].

use nsq_tools::cli;
use nsq_tools::to_file::{self, Args};
use std::process::ExitCode;

const NAME: &str = "nsq_to_file";

fn main() -> ExitCode {
    let args: Args = cli::parse_args(NAME);
    cli::run_tool(
        NAME,
        args.version,
        || args.validate().map(drop),
        || nsq_server::logging::init(&args.log_level, &args.log_prefix),
        || to_file::run(args.clone()),
    )
}
