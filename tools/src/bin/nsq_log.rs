//! `nsq_log`: inspect an nsq-engine data directory offline. See [`nsq_tools::log_tool`].

use clap::Parser;
use nsq_tools::log_tool::{self, Cli};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut diag = io::stderr().lock();
    let result = log_tool::run(&cli, &mut out, &mut diag)
        .and_then(|()| out.flush().map_err(log_tool::Error::Output));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            // Whatever was printed before the failure goes out first; a failed flush there
            // is no news next to the error itself.
            let _ = out.flush();
            let message = e.to_string().replace(['\n', '\r'], " ");
            let _ = writeln!(diag, "nsq_log: {message}");
            ExitCode::FAILURE
        }
    }
}
