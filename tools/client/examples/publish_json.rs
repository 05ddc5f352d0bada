//! Publishes `--count` events as JSON to one nsqd, each acknowledged by nsqd before the next.
//!
//! ```text
//! cargo run -p nsq-client --example publish_json -- --nsqd-tcp-address 127.0.0.1:4150 --count 10
//! ```

use clap::Parser;
use nsq_client::{Config, Producer};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    /// nsqd's TCP address.
    #[arg(long, env = "NSQD_TCP_ADDRESS", default_value = "127.0.0.1:4150")]
    nsqd_tcp_address: String,
    /// The topic to publish to.
    #[arg(long, default_value = "events")]
    topic: String,
    /// How many events to publish.
    #[arg(long, default_value_t = 10)]
    count: u64,
}

/// One event, as services usually send them: a kind, a sequence number, a time.
#[derive(Serialize)]
struct Event<'a> {
    kind: &'a str,
    seq: u64,
    at_ms: u128,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args).await {
        eprintln!("publish_json: {e}");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let producer = Producer::new(&args.nsqd_tcp_address, Config::default());
    producer.connect().await?;
    for seq in 0..args.count {
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
        let event = Event {
            kind: "click",
            seq,
            at_ms,
        };
        // `publish` returns once nsqd answered OK: the event is stored.
        producer
            .publish(&args.topic, serde_json::to_vec(&event)?)
            .await?;
    }
    producer.stop().await;
    println!("published {} events to {}", args.count, args.topic);
    Ok(())
}
