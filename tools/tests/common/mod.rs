//! What the nsq_log tests share: running the built `nsq_log` against a data directory.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `nsq_log --data-path <data> <args>` and returns what it did.
pub fn nsq_log(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsq_log"))
        .arg("--data-path")
        .arg(data)
        .args(args)
        .output()
        .expect("run nsq_log")
}

/// Its stdout then its stderr, as text.
#[allow(dead_code)] // not every test file reads both streams together
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
