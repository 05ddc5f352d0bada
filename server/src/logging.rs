//! One-line-per-event logs through tracing, with NSQ's `--log-level` and `--log-prefix`. The
//! level can change at run time (nsqd's `PUT /config/log_level`).

use std::io::IsTerminal;
use std::sync::{OnceLock, RwLock};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, Registry};

struct Prefixed(String);

impl FormatTime for Prefixed {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        // NSQ's layout: `[nsqd] 2006/01/02 15:04:05.000000`, in UTC.
        let now = chrono::Utc::now();
        write!(w, "{}{}", self.0, now.format("%Y/%m/%d %H:%M:%S%.6f"))
    }
}

/// The installed level filter and the name it was set by.
static LEVEL: OnceLock<(reload::Handle<LevelFilter, Registry>, RwLock<String>)> = OnceLock::new();

/// NSQ's level names; `fatal` logs errors only (we have no level above error).
pub fn parse_level(level: &str) -> Option<LevelFilter> {
    match level.trim().to_ascii_lowercase().as_str() {
        "debug" => Some(LevelFilter::DEBUG),
        "info" => Some(LevelFilter::INFO),
        "warn" => Some(LevelFilter::WARN),
        "error" | "fatal" => Some(LevelFilter::ERROR),
        _ => None,
    }
}

/// Installs the global subscriber at `level` (unknown names log errors only).
pub fn init(level: &str, prefix: &str) {
    let filter = parse_level(level).unwrap_or(LevelFilter::ERROR);
    let (filter_layer, handle) = reload::Layer::new(filter);
    let format = tracing_subscriber::fmt::layer()
        .with_timer(Prefixed(prefix.to_string()))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if tracing_subscriber::registry()
        .with(filter_layer)
        .with(format)
        .try_init()
        .is_ok()
    {
        let _ = LEVEL.set((handle, RwLock::new(level.trim().to_ascii_lowercase())));
    }
}

/// Changes the level at run time; `None` if `level` is not one of NSQ's names.
pub fn set_level(level: &str) -> Option<()> {
    let filter = parse_level(level)?;
    if let Some((handle, name)) = LEVEL.get() {
        handle.modify(|f| *f = filter).ok()?;
        *name.write().unwrap_or_else(|e| e.into_inner()) = level.trim().to_ascii_lowercase();
    }
    Some(())
}

/// The level name in force, if [`init`] installed the subscriber.
pub fn current_level() -> Option<String> {
    LEVEL
        .get()
        .map(|(_, name)| name.read().unwrap_or_else(|e| e.into_inner()).clone())
}
