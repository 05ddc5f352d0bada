//! `nsq_bench`: publishes and/or consumes against a running nsqd over protocol V2 and reports
//! throughput and publish-acknowledgement latency. Unlike NSQ's bench_writer/bench_reader it
//! runs both sides at once, so it measures end-to-end flow, and it waits for every `OK`, so
//! "published" means acknowledged (durable, with `--sync-every=1`).

mod conn;
mod report;
mod run;

pub use report::Report;
pub use run::{run, BenchError, Config, Mode};
