//! `nsq_to_nsq`: copy NSQ topics to other nsqd. See [`nsq_tools::nsq_to_nsq`].

use nsq_tools::cli;
use nsq_tools::nsq_to_nsq::{self, Args};
use std::process::ExitCode;

const NAME: &str = "nsq_to_nsq";

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
    match runtime.block_on(nsq_to_nsq::run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(NAME, e),
    }
}
