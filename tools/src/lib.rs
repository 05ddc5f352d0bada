//! `nsq-tools`: command-line tools for the `nsq-engine` data directory.
//!
//! The binaries under `src/bin` are thin wrappers: they parse their arguments and call into
//! this library, which holds the logic so it can be tested without spawning processes.
//!
//! - [`client`]: an async NSQ client library (`Producer`, `Consumer`) the tools are built on.
//! - [`log_tool`]: `nsq_log`, which inspects a data directory offline (`stat`, `dump`).
#![warn(missing_docs)]

pub mod client;
pub mod log_tool;
