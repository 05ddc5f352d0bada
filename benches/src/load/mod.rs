//! `nsq_bench`: publishes (writer) and/or consumes (reader) against a running nsqd over
//! protocol V2 and reports throughput, publish-acknowledgement latency and end-to-end latency
//! (receive time minus the message's publish timestamp). Unlike NSQ's bench_writer/bench_reader it
//! runs both sides at once, so it measures end-to-end flow, and it waits for every `OK`, so
//! "published" means acknowledged (durable, with `--sync-every=1`).

mod conn;
pub mod histogram;
pub mod plot;
mod report;
mod run;

pub use report::Report;
pub use run::{run, BenchError, Config, Mode};
