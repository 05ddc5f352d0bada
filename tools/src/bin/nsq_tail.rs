//! `nsq_tail`: print NSQ topics to stdout. See [`nsq_tools::tail`].

use nsq_tools::cli;
use nsq_tools::tail::{self, Args};
use std::process::ExitCode;

const NAME: &str = "nsq_tail";

fn main() -> ExitCode {
    let args: Args = cli::parse_args(NAME);
    if args.version {
        println!("{}", cli::version_line(NAME));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = args.validate() {
        return cli::fail(NAME, e);
    }
    cli::init_logging(NAME, "warn");
    let runtime = match cli::runtime() {
        Ok(r) => r,
        Err(e) => return cli::fail(NAME, e),
    };
    match runtime.block_on(tail::run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(NAME, e),
    }
}
