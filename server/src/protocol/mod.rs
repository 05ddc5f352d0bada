//! NSQ's wire protocols as bytes: the V2 client protocol (commands in, frames out) and the
//! helpers the HTTP API shares with it. Pure functions over buffers, no I/O, so the server,
//! the client library and the fuzzers all use the same code.

mod command;
mod error;
mod frame;
mod lookup;
mod mpub;
mod truncated;

pub use command::{parse_command, Command, Limits, MAX_LINE};
pub use error::ProtocolError;
pub use frame::{
    decode_frame, encode_error, encode_message, encode_response, Frame, FrameError, FrameType,
    MESSAGE_HEADER_LEN,
};
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
    nsq_engine::name::is_valid(name)
}

/// Whether `name` ends in `#ephemeral`.
pub fn is_ephemeral(name: &str) -> bool {
    nsq_engine::name::is_ephemeral(name)
}
