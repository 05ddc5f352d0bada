//! `nsq-tools`: command-line tools for the `nsq-engine` data directory.
//!
//! The binaries under `src/bin` are thin wrappers: they parse their arguments and call into
//! this library, which holds the logic so it can be tested without spawning processes.
//!
//! - [`client`]: the async NSQ client library the tools are built on (the `nsq-client` crate).
//! - [`to_file`], [`to_nsq`], [`tail`], [`stat`]: `nsq_to_file` (archive topics to files),
//!   `to_nsq` (stdin to a topic), `nsq_tail` (topics to stdout), `nsq_stat` (rolling stats).
//! - [`to_http`]: `nsq_to_http` (messages to HTTP endpoints), with [`upstream`] (`--mode`)
//!   and [`timer_metrics`] (`--status-every`).
//! - [`nsq_to_nsq`]: `nsq_to_nsq` (topics to other nsqd), with [`json_filter`].
//! - [`cli`]: flag and error conventions shared by the network tools.
//! - [`log_tool`]: `nsq_log`, which inspects a data directory offline (`stat`, `dump`).
#![warn(missing_docs)]

pub mod cli;
pub use nsq_client as client;
pub mod json_filter;
pub mod log_tool;
pub mod nsq_to_nsq;
pub mod stat;
pub mod tail;
pub mod timer_metrics;
pub mod to_file;
pub mod to_http;
pub mod to_nsq;
pub mod upstream;
