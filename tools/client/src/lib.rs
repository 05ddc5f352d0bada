//! `nsq-client`: an async (tokio) NSQ client over the server's own protocol codec
//! ([`nsq_protocol`]), with go-nsq's behaviour and defaults.
//!
//! - [`Producer`]: PUB / MPUB / DPUB to one nsqd, each awaiting nsqd's `OK`.
//! - [`Consumer`]: a topic/channel from nsqd addresses and/or lookupd discovery, with RDY
//!   spread over connections, requeue delays, `max_attempts`, backoff and clean stop.
//! - [`Config`]: the knobs, defaulting to go-nsq's values.
//! - [`HttpClient`]: HTTP(S) to lookupd and nsqd (`host:port`, `http://` or `https://`).
//! - [`lookup`]: nsqlookupd queries over it.
//!
//! ```no_run
//! use nsq_client::{Config, Consumer, Error, Message, Producer};
//!
//! async fn run() -> Result<(), Error> {
//!     let producer = Producer::new("127.0.0.1:4150", Config::default());
//!     producer.publish("events", r#"{"kind":"click"}"#).await?; // nsqd has it now
//!
//!     let config = Config { max_in_flight: 50, ..Config::default() };
//!     let consumer = Consumer::new("events", "metrics", config, |msg: Message| async move {
//!         println!("{}", String::from_utf8_lossy(&msg.body));
//!         Ok(()) // Ok: FIN; Err(_): REQ with a growing delay, and the consumer backs off
//!     })?;
//!     consumer.connect_to_lookupd("127.0.0.1:4161").await?;
//!     // ... on shutdown: CLS, wait for the handlers in flight, close
//!     consumer.stop().await;
//!     Ok(())
//! }
//! ```

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
