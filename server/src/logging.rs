//! One-line-per-event logs through tracing, with NSQ's `--log-level` and `--log-prefix`.

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

struct Prefixed(String);

impl FormatTime for Prefixed {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        write!(w, "{}{}.{:03}", self.0, now.as_secs(), now.subsec_millis())
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
        .with_writer(std::io::stderr)
        .try_init();
}
