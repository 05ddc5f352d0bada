//! NSQ-compatible servers over the `nsq-engine` storage engine.
//!
//! - [`protocol`]: the wire formats (commands, frames, multi-message bodies, IDENTIFY,
//!   compression): the `nsq-protocol` crate, shared with the client library `nsq-client`.
//! - [`nsqd`]: the daemon: TCP protocol V2, HTTP API, housekeeping, over one [`nsq_engine::Engine`].
//! - [`args`], [`listen`], [`logging`], [`signals`], [`version`]: process plumbing shared by the
//!   binaries.

pub mod args;
pub mod listen;
pub mod logging;
pub mod lookupd;
pub mod nsqd;
pub use nsq_protocol as protocol;
pub mod signals;
pub mod version;
