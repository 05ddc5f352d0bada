//! `nsq-engine`: the crash-safe, log-structured storage engine under our NSQ.
//!
//! Every published message is appended once to its topic's segmented, checksummed log
//! ([`log`]); every channel is a durable cursor over that log ([`cursor`], [`channel`]), so
//! channels replay independently, a channel can be rewound, and a process crash loses nothing
//! that an append acknowledged. The byte-level formats are described in `FORMAT.md`.
//!
//! The core API is synchronous and thread-safe: the server calls it from its own tasks. Time
//! comes from a [`Clock`], and all file I/O goes through a [`fs::FileSystem`], so tests can run
//! the engine against a simulated disk that loses power.

pub mod channel;
pub mod check;
pub mod clock;
pub mod cursor;
mod engine;
pub mod error;
mod feed;
pub mod fin_journal;
pub mod framed;
pub mod fs;
pub mod id;
pub mod index;
pub mod log;
pub mod memlog;
pub mod meta;
pub mod name;
pub mod options;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod storage;
pub mod topic;

pub use channel::{Channel, ChannelStats, Delivery};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cursor::ChannelStart;
pub use engine::Engine;
pub use error::{Error, Result};
pub use id::MessageId;
pub use log::{Appended, Completion, HistogramSnapshot, SyncCounts};
pub use options::{Options, Retention, SyncPolicy};
pub use record::Message;
pub use recovery::RecoveryEvent;
pub use topic::{LogMetrics, Topic, TopicStats};
