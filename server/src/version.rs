//! What the binaries say about their version. NSQ's clients and test fixtures parse
//! `--version` as `NAME vX.Y.Z(-suffix)? (built w/[a-z0-9.-]+)`, so every binary prints the
//! NSQ version it speaks in that shape, naming the compiler (`build.rs`) where NSQ names Go.
//! Our own release is told where nothing parses it: `--help` and `/info`.

/// The NSQ version we speak and report (`/info`, IDENTIFY, lookupd), so clients enable what they expect.
pub const NSQ_VERSION: &str = "1.3.0";

/// This build's own version (the `nsq-rs` release).
pub const NSQ_RS_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The compiler this was built with, as `rustc-1.87.0`.
pub const BUILT_WITH: &str = concat!("rustc-", env!("NSQ_RS_RUSTC_VERSION"));

/// What follows the binary's name in `--version`: `v1.3.0 (built w/rustc-1.87.0)`.
pub const VERSION_TEXT: &str = concat!("v1.3.0 (built w/rustc-", env!("NSQ_RS_RUSTC_VERSION"), ")");

/// The whole `--version` line of binary `name`: `nsq_tail v1.3.0 (built w/rustc-1.87.0)`.
pub fn version_line(name: &str) -> String {
    format!("{name} {VERSION_TEXT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_names_the_nsq_version_and_the_compiler() {
        assert!(VERSION_TEXT.starts_with(&format!("v{NSQ_VERSION} (built w/rustc-")));
        let built = BUILT_WITH.trim_start_matches("rustc-");
        assert!(
            built.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{built}"
        );
        assert_eq!(version_line("nsqd"), format!("nsqd {VERSION_TEXT}"));
    }
}
