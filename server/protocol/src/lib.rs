//! `nsq-protocol`: NSQ's wire protocols as bytes, shared by our nsqd/nsqlookupd (`nsq-server`),
//! the Rust client (`nsq-client`) and the fuzzers. Pure functions and state machines over
//! buffers: no I/O, no async runtime, no panics on any input.
//!
//! - The V2 client protocol: [`parse_command`] (bytes in, [`Command`] out), [`Command::encode`]
//!   for the client side, and the frames nsqd answers with ([`decode_frame`], `encode_*`).
//! - The V1 protocol nsqd speaks to nsqlookupd ([`parse_lookup_request`],
//!   [`decode_lookup_reply`]).
//! - [`identify`]: IDENTIFY's JSON body, its negotiation against nsqd's limits, the answer.
//! - [`compression`]: the snappy and deflate stream codecs IDENTIFY can switch on.
//! - [`MessageId`] and the topic/channel [`name`] rules.

#![deny(missing_docs)]

mod command;
pub mod compression;
mod error;
mod frame;
pub mod id;
pub mod identify;
mod lookup;
mod mpub;
pub mod name;
mod truncated;

pub use command::{parse_command, Command, Limits, MAX_LINE};
pub use error::ProtocolError;
pub use frame::{
    decode_frame, encode_error, encode_message, encode_response, Frame, FrameError, FrameType,
    MESSAGE_HEADER_LEN,
};
pub use id::MessageId;
pub use lookup::{
    decode_lookup_reply, parse_lookup_request, LookupCommand, LookupRequest, MAX_LOOKUP_IDENTIFY,
    MAX_LOOKUP_LINE,
};
pub use mpub::{parse_mpub_body, split_http_mpub, HttpMpubError, MpubError};
pub use truncated::truncated_error;

/// What a V2 client sends first.
pub const MAGIC_V2: &[u8; 4] = b"  V2";

/// What nsqd sends first to nsqlookupd.
pub const MAGIC_V1: &[u8; 4] = b"  V1";

/// Whether `name` is a valid topic or channel name under NSQ's rules.
pub fn is_valid_name(name: &str) -> bool {
    name::is_valid(name)
}

/// Whether `name` ends in `#ephemeral`.
pub fn is_ephemeral(name: &str) -> bool {
    name::is_ephemeral(name)
}
