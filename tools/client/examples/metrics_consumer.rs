//! Aggregates JSON metrics (`{"name": "cpu", "value": 0.5}`) from a topic until `--count` have
//! been stored, then prints the sums and the consumer's counters.
//!
//! The "metrics store" is unavailable for the first `--store-down-for` writes: the handler
//! returns an error, so the message is REQueued (with a delay growing per attempt) and the
//! consumer backs off (RDY 0 for a while, then one message to test the water) before it goes
//! back to full speed. A body that is not a metric fails every time and is given up (FINished
//! and logged) after `max_attempts`.
//!
//! ```text
//! cargo run -p nsq-client --example metrics_consumer -- --count 100 --store-down-for 3
//! ```

use clap::Parser;
use nsq_client::{Config, Consumer, HandlerResult, Message};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Parser)]
struct Args {
    /// nsqd's TCP address.
    #[arg(long, env = "NSQD_TCP_ADDRESS", default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// The topic holding the metrics.
    #[arg(long, default_value = "metrics")]
    topic: String,
    /// The channel this consumer reads.
    #[arg(long, default_value = "aggregate")]
    channel: String,
    /// Stop after this many metrics are stored.
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// How many store writes fail before the store comes back.
    #[arg(long, default_value_t = 3)]
    store_down_for: u64,
    /// Requeue delay of a failed message, in ms (times its attempt count).
    #[arg(long, default_value_t = 100)]
    requeue_delay_ms: u64,
    /// First backoff pause after a failure, in ms (doubling per further failure).
    #[arg(long, default_value_t = 100)]
    backoff_ms: u64,
}

#[derive(Deserialize)]
struct Metric {
    name: String,
    value: f64,
}

/// A stand-in for a metrics database that is down for its first few writes.
struct Store {
    failures_left: AtomicU64,
    sums: Mutex<BTreeMap<String, f64>>,
    stored: AtomicU64,
    wanted: u64,
    done: Notify,
}

impl Store {
    fn write(&self, metric: Metric) -> HandlerResult {
        let down = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if down {
            return Err("metrics store unavailable".into());
        }
        let mut sums = self.sums.lock().unwrap_or_else(|e| e.into_inner());
        *sums.entry(metric.name).or_default() += metric.value;
        if self.stored.fetch_add(1, Ordering::SeqCst) + 1 >= self.wanted {
            self.done.notify_one();
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args).await {
        eprintln!("metrics_consumer: {e}");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> Result<(), nsq_client::Error> {
    let store = Arc::new(Store {
        failures_left: AtomicU64::new(args.store_down_for),
        sums: Mutex::new(BTreeMap::new()),
        stored: AtomicU64::new(0),
        wanted: args.count,
        done: Notify::new(),
    });
    let config = Config {
        max_in_flight: 10,
        default_requeue_delay: Duration::from_millis(args.requeue_delay_ms),
        backoff_multiplier: Duration::from_millis(args.backoff_ms),
        max_backoff_duration: Duration::from_millis(args.backoff_ms * 8),
        ..Config::default()
    };
    let handler_store = store.clone();
    let consumer = Consumer::new(&args.topic, &args.channel, config, move |msg: Message| {
        let store = handler_store.clone();
        async move {
            // Err: the consumer REQueues the message and backs off; Ok: it FINishes it.
            let metric: Metric = serde_json::from_slice(&msg.body)?;
            store.write(metric)
        }
    })?;
    consumer.connect_to_nsqd(&args.nsqd_tcp_address).await?;
    if args.count > 0 {
        store.done.notified().await;
    }
    consumer.stop().await;

    let sums = store.sums.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (name, sum) in &sums {
        println!("{name} {sum}");
    }
    let stats = consumer.stats();
    println!(
        "stored={} received={} finished={} requeued={} backoffs={}",
        store.stored.load(Ordering::SeqCst),
        stats.received,
        stats.finished,
        stats.requeued,
        stats.backoffs
    );
    Ok(())
}
