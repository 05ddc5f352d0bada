//! `nsq-client`: an async (tokio) client for [NSQ](https://nsq.io), with go-nsq's behaviour
//! and defaults, over the same protocol codec our nsqd uses ([`nsq_protocol`]). It works
//! against NSQ's own nsqd/nsqlookupd as well as ours, and pulls in no server code.
//!
//! - [`Producer`]: `PUB` / `MPUB` / `DPUB` to one nsqd; each call returns once nsqd answered
//!   `OK` (on our nsqd: the message is in its log).
//! - [`Consumer`]: one topic/channel from nsqd addresses and/or nsqlookupd discovery. RDY is
//!   spread over connections within `max_in_flight`; a failed handler REQueues with a delay
//!   growing per attempt and puts the whole consumer into go-nsq's exponential backoff; a
//!   message delivered more than `max_attempts` times is given up; slow handlers are TOUCHed;
//!   producers lookupd stops listing are disconnected; `stop` is clean (CLS, wait, close).
//! - [`Config`]: every knob, defaulting to go-nsq's values, including snappy or deflate
//!   stream compression, TLS ([`TlsSettings`]) and AUTH (`auth_secret`).
//! - [`HttpClient`] and [`lookup`]: HTTP(S) queries to nsqlookupd and nsqd.
//!
//! Runnable versions of the three examples below are in `examples/` (`publish_json`,
//! `metrics_consumer`, `lookupd_discovery`).
//!
//! # Publishing events as JSON
//!
//! ```no_run
//! use nsq_client::{Config, Producer};
//!
//! #[derive(serde::Serialize)]
//! struct Event<'a> {
//!     kind: &'a str,
//!     user: u64,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let producer = Producer::new("127.0.0.1:4150", Config::default());
//! let event = Event { kind: "signup", user: 42 };
//! producer.publish("events", serde_json::to_vec(&event)?).await?; // nsqd has it now
//! // Many at once: stored all or none.
//! let batch: Vec<Vec<u8>> = (0..100)
//!     .map(|user| serde_json::to_vec(&Event { kind: "click", user }))
//!     .collect::<Result<_, _>>()?;
//! producer.multi_publish("events", batch).await?;
//! producer.stop().await;
//! # Ok(()) }
//! ```
//!
//! # A metrics consumer that backs off while its store is down
//!
//! The handler's `Result` is the answer: `Ok` FINishes the message; `Err` REQueues it
//! (after `default_requeue_delay` × attempts, capped by `max_requeue_delay`) and the consumer
//! backs off: every connection goes to RDY 0 for `backoff_multiplier` × 2^(failures-1)
//! (capped by `max_backoff_duration`), then one message tests the water, and each success
//! steps back towards full speed. After `max_attempts` deliveries a message is given up.
//!
//! ```no_run
//! use nsq_client::{Config, Consumer, Message};
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Metric {
//!     name: String,
//!     value: f64,
//! }
//!
//! async fn store(metric: Metric) -> Result<(), std::io::Error> {
//!     // Write to a database that is sometimes unavailable.
//! #   let _ = (metric.name, metric.value);
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), nsq_client::Error> {
//! let config = Config {
//!     max_in_flight: 50,
//!     default_requeue_delay: Duration::from_secs(5),
//!     max_attempts: 10,
//!     ..Config::default()
//! };
//! let consumer = Consumer::new("metrics", "aggregate", config, |msg: Message| async move {
//!     let metric: Metric = serde_json::from_slice(&msg.body)?; // Err: REQ, back off
//!     store(metric).await?; // Err: REQ, back off
//!     Ok(()) // FIN
//! })?;
//! consumer.connect_to_nsqd("127.0.0.1:4150").await?;
//! // ... until shutdown:
//! consumer.stop().await;
//! let stats = consumer.stats();
//! println!("{} finished, {} requeued, {} backoffs", stats.finished, stats.requeued, stats.backoffs);
//! # Ok(()) }
//! ```
//!
//! # Discovering producers through nsqlookupd
//!
//! Given only lookupd addresses, the consumer connects to every nsqd that lists the topic,
//! polls lookupd each `lookupd_poll_interval` (go-nsq's one minute by default, with jitter),
//! connects to nsqd that appear and closes connections to nsqd lookupd no longer lists.
//!
//! ```no_run
//! use nsq_client::{Config, Consumer, Message};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), nsq_client::Error> {
//! let config = Config {
//!     max_in_flight: 100,
//!     lookupd_poll_interval: Duration::from_secs(15),
//!     ..Config::default()
//! };
//! let consumer = Consumer::new("events", "archive", config, |msg: Message| async move {
//!     println!("{} from {}", String::from_utf8_lossy(&msg.body), msg.nsqd_address);
//!     Ok(())
//! })?;
//! consumer.connect_to_lookupd("127.0.0.1:4161").await?;
//! consumer.connect_to_lookupd("http://lookupd-2.internal:4161").await?;
//! println!("connected to {:?}", consumer.connections());
//! # consumer.stop().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod backoff;
mod config;
mod connection;
mod consumer;
mod error;
mod http;
pub mod lookup;
mod message;
mod producer;
mod session;
mod tls;

pub use backoff::{BackoffState, RdyPlanner};
pub use config::{hostname, Config};
pub use connection::Negotiated;
pub use consumer::{Consumer, ConsumerStats, HandlerResult};
pub use error::{Error, Result};
pub use http::{url, HttpClient};
pub use message::Message;
pub use producer::Producer;
pub use tls::TlsSettings;
