//! Records the compiler's version for `--version` (`nsqd v1.3.0 (built w/rustc-1.87.0)`), as
//! NSQ's binaries name the Go release that built them.

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| parse(&text))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=NSQ_RS_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}

/// `rustc 1.87.0 (17067e9ac 2025-05-09)` → `1.87.0`; `rustc 1.90.0-nightly (...)` keeps its suffix.
fn parse(text: &str) -> Option<String> {
    let version = text.split_whitespace().nth(1)?;
    version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        .then(|| version.to_ascii_lowercase())
}
