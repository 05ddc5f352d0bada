//! One-line-per-event logs through tracing, with NSQ's `--log-level` and `--log-prefix`.

use std::io::IsTerminal;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

struct Prefixed(String);

impl FormatTime for Prefixed {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        // NSQ's layout: `[nsqd] 2006/01/02 15:04:05.000000`, in UTC.
        let now = chrono::Utc::now();
        write!(w, "{}{}", self.0, now.format("%Y/%m/%d %H:%M:%S%.6f"))
    }
}

/// Installs the global subscriber; `fatal` logs errors only.
pub fn init(level: &str, prefix: &str) {
    let filter = match level {
        "debug" => tracing::Level::DEBUG,
        "info" => tracing::Level::INFO,
        "warn" => tracing::Level::WARN,
        _ => tracing::Level::ERROR,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_timer(Prefixed(prefix.to_string()))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
