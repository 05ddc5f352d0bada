//! End-to-end test harness: starts the project's real binaries on loopback ports the test
//! picks, talks to them over raw TCP and HTTP, and kills what it started.
//!
//! The binaries must be built first (`cargo build --workspace --bins`, which `tests/run.sh`
//! does); they are looked up next to the test executable's `target/<profile>` directory.

pub mod auth_server;
pub mod data_dir;
pub mod http;
pub mod http_sink;
pub mod lookupd;
pub mod process;
pub mod python;
pub mod raw;
pub mod tls;
pub mod tool;
pub mod wait;

pub use data_dir::{first_offset, segment_files};
pub use http::{http_get, http_post, http_request, HttpReply};
pub use http_sink::{HttpSink, Received};
pub use lookupd::Nsqlookupd;
pub use process::{binary, free_port, Nsqd};
pub use raw::RawClient;
pub use tool::{archive_lines, run_tool, run_tool_with_env, Tool, ToolOutput};
