//! An async (tokio) NSQ client over the server's own protocol codec
//! ([`nsq_server::protocol`]), with go-nsq's behaviour and defaults.
//!
//! - [`Producer`]: PUB / MPUB / DPUB to one nsqd, each awaiting nsqd's `OK`.
//! - [`Consumer`]: a topic/channel from nsqd addresses and/or lookupd discovery, with RDY
//!   spread over connections, requeue delays, `max_attempts`, backoff and clean stop.
//! - [`Config`]: the knobs, defaulting to go-nsq's values.
//! - [`lookup`]: nsqlookupd queries and the small HTTP GET behind them (also used for nsqd's
//!   `/stats`).

mod backoff;
mod config;
mod connection;
mod consumer;
mod error;
pub mod lookup;
mod message;
mod producer;
mod session;

pub use backoff::{BackoffState, RdyPlanner};
pub use config::{hostname, Config};
pub use connection::Negotiated;
pub use consumer::{Consumer, ConsumerStats, HandlerResult};
pub use error::{Error, Result};
pub use message::Message;
pub use producer::Producer;
