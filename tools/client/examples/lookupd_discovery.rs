//! Finds the nsqd that have a topic through nsqlookupd, consumes from all of them, and prints
//! each message with the nsqd it came from, until `--count` messages have arrived.
//!
//! The consumer polls lookupd every `--poll-interval-ms`: it connects to nsqd that start
//! publishing the topic and closes connections to nsqd lookupd no longer lists.
//!
//! ```text
//! cargo run -p nsq-client --example lookupd_discovery -- --lookupd-http-address 127.0.0.1:4161 --count 10
//! ```

use clap::Parser;
use nsq_client::{Config, Consumer, Message};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Parser)]
struct Args {
    /// nsqlookupd's HTTP address (`host:port` or an `http://`/`https://` URL).
    #[arg(long, env = "LOOKUPD_HTTP_ADDRESS", default_value = "127.0.0.1:4161")]
    lookupd_http_address: String,
    /// The topic to consume.
    #[arg(long, default_value = "events")]
    topic: String,
    /// The channel to read.
    #[arg(long, default_value = "discovery")]
    channel: String,
    /// Stop after this many messages.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// How often lookupd is polled, in ms (go-nsq's default is a minute).
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args).await {
        eprintln!("lookupd_discovery: {e}");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> Result<(), nsq_client::Error> {
    let config = Config {
        max_in_flight: 10,
        lookupd_poll_interval: Duration::from_millis(args.poll_interval_ms),
        ..Config::default()
    };
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let (counter, wanted, finished) = (received.clone(), args.count, done.clone());
    let consumer = Consumer::new(&args.topic, &args.channel, config, move |msg: Message| {
        let (counter, finished) = (counter.clone(), finished.clone());
        async move {
            println!(
                "{} {}",
                msg.nsqd_address,
                String::from_utf8_lossy(&msg.body)
            );
            if counter.fetch_add(1, Ordering::SeqCst) + 1 == wanted {
                finished.notify_one();
            }
            Ok(())
        }
    })?;
    consumer
        .connect_to_lookupd(&args.lookupd_http_address)
        .await?;
    if args.count > 0 {
        done.notified().await;
    }
    let connections = consumer.connections();
    consumer.stop().await;
    println!(
        "received {} messages over {} connections: {}",
        received.load(Ordering::SeqCst),
        connections.len(),
        connections.join(" ")
    );
    Ok(())
}
