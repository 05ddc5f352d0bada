//! `to_nsq`: publish stdin to an NSQ topic. See [`nsq_tools::to_nsq`].

use nsq_tools::cli;
use nsq_tools::to_nsq::{self, Args};
use std::process::ExitCode;

const NAME: &str = "to_nsq";

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
    let stdin = tokio::io::BufReader::with_capacity(256 * 1024, tokio::io::stdin());
    match runtime.block_on(to_nsq::run(&args, stdin)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => cli::fail(NAME, e),
    }
}
