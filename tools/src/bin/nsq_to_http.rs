//! `nsq_to_http`: send NSQ messages to HTTP endpoints. See [`nsq_tools::to_http`].

use nsq_tools::cli;
use nsq_tools::to_http::{self, Args};
use std::process::ExitCode;

const NAME: &str = "nsq_to_http";

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
    match runtime.block_on(to_http::run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(NAME, e),
    }
}
