//! IDENTIFY against nsqd's options: the checks and the answer live in
//! [`nsq_protocol::identify`]; this module feeds them the daemon's flags.

use super::options::NsqdOptions;
use crate::protocol::ProtocolError;
pub use nsq_protocol::identify::{IdentifyLimits, IdentifyRequest, IdentifyResponse, Negotiated};

/// The IDENTIFY limits nsqd's options set.
pub fn limits(opts: &NsqdOptions) -> IdentifyLimits {
    IdentifyLimits {
        max_heartbeat_interval: opts.max_heartbeat_interval,
        max_output_buffer_size: opts.max_output_buffer_size,
        output_buffer_timeout: opts.output_buffer_timeout,
        min_output_buffer_timeout: opts.min_output_buffer_timeout,
        max_output_buffer_timeout: opts.max_output_buffer_timeout,
        msg_timeout: opts.msg_timeout,
        max_msg_timeout: opts.max_msg_timeout,
        snappy: opts.snappy,
        deflate: opts.deflate,
        max_deflate_level: opts.max_deflate_level,
        max_rdy_count: opts.max_rdy_count,
    }
}

/// The settings of a client that never sent IDENTIFY.
pub fn defaults(opts: &NsqdOptions) -> Negotiated {
    Negotiated::defaults(&limits(opts))
}

/// Checks an IDENTIFY against the options, with NSQ's error codes and texts.
pub fn negotiate(req: &IdentifyRequest, opts: &NsqdOptions) -> Result<Negotiated, ProtocolError> {
    nsq_protocol::identify::negotiate(req, &limits(opts))
}

/// The feature-negotiation answer for `n`.
pub fn response(n: &Negotiated, opts: &NsqdOptions) -> IdentifyResponse {
    nsq_protocol::identify::response(n, &limits(opts), super::VERSION)
}
