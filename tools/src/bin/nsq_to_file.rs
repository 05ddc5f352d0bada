//! `nsq_to_file`: archive NSQ topics to files. See [`nsq_tools::to_file`].

use nsq_tools::cli;
use nsq_tools::to_file::{self, Args};
use std::process::ExitCode;

const NAME: &str = "nsq_to_file";

fn main() -> ExitCode {
    let args: Args = cli::parse_args(NAME);
    if args.version {
        println!("{}", cli::version_line(NAME));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = args.validate() {
        return cli::fail(NAME, e);
    }
    nsq_server::logging::init(&args.log_level, &args.log_prefix);
    let runtime = match cli::runtime() {
        Ok(r) => r,
        Err(e) => return cli::fail(NAME, e),
    };
    match runtime.block_on(to_file::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(NAME, e),
    }
}
