//! IDENTIFY: checking a client's requested settings against nsqd's limits, as NSQ does.

use super::options::NsqdOptions;
use crate::protocol::ProtocolError;
use std::time::Duration;

/// The fields of an IDENTIFY body nsqd acts on (NSQ's JSON names; unknown fields ignored).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct IdentifyRequest {
    #[serde(deserialize_with = "null_as_default")]
    pub client_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub short_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub long_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub hostname: String,
    #[serde(deserialize_with = "null_as_default")]
    pub feature_negotiation: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub heartbeat_interval: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub output_buffer_size: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub output_buffer_timeout: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub tls_v1: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub snappy: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub deflate: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub deflate_level: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub sample_rate: i32,
    #[serde(deserialize_with = "null_as_default")]
    pub user_agent: String,
    #[serde(deserialize_with = "null_as_default")]
    pub msg_timeout: i64,
}

/// Go's JSON decoding leaves a field alone on `null`, and clients rely on it (tokio-nsq sends
/// `"sample_rate": null`): read `null` as the field's default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// What the connection runs with after IDENTIFY.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    /// `None`: heartbeats disabled.
    pub heartbeat: Option<Duration>,
    /// 0: no buffering (flush every frame).
    pub output_buffer_size: usize,
    pub output_buffer_timeout: Option<Duration>,
    pub msg_timeout: Duration,
    pub sample_rate: i32,
    pub snappy: bool,
    pub deflate: Option<u32>,
    /// The level reported to the client (NSQ reports one even without deflate).
    pub deflate_level: u32,
}

impl Negotiated {
    /// The settings of a client that never sent IDENTIFY.
    pub fn defaults(opts: &NsqdOptions) -> Self {
        Negotiated {
            client_id: String::new(),
            hostname: String::new(),
            user_agent: String::new(),
            heartbeat: Some(default_heartbeat(opts)),
            output_buffer_size: 16 * 1024,
            output_buffer_timeout: Some(opts.output_buffer_timeout),
            msg_timeout: opts.msg_timeout,
            sample_rate: 0,
            snappy: false,
            deflate: None,
            deflate_level: 6_i64.min(opts.max_deflate_level).max(1) as u32,
        }
    }
}

/// NSQ: half the client timeout (60 s), i.e. 30 s, capped by the maximum.
fn default_heartbeat(opts: &NsqdOptions) -> Duration {
    Duration::from_secs(30).min(opts.max_heartbeat_interval)
}

/// A limit violation: NSQ answers `E_BAD_BODY IDENTIFY ...` and closes.
fn bad_body(what: String) -> ProtocolError {
    ProtocolError::fatal("E_BAD_BODY", &format!("IDENTIFY {what}"))
}

/// Checks an IDENTIFY against the limits, with NSQ's error codes and texts.
pub fn negotiate(req: &IdentifyRequest, opts: &NsqdOptions) -> Result<Negotiated, ProtocolError> {
    let mut n = Negotiated::defaults(opts);
    n.client_id = if req.client_id.is_empty() {
        req.short_id.clone()
    } else {
        req.client_id.clone()
    };
    n.hostname = if req.hostname.is_empty() {
        req.long_id.clone()
    } else {
        req.hostname.clone()
    };
    n.user_agent = req.user_agent.clone();

    let max_hb = opts.max_heartbeat_interval.as_millis() as i64;
    n.heartbeat = match req.heartbeat_interval {
        -1 => None,
        0 => Some(default_heartbeat(opts)),
        ms if (1000..=max_hb).contains(&ms) => Some(Duration::from_millis(ms as u64)),
        ms => return Err(bad_body(format!("heartbeat interval ({ms}) is invalid"))),
    };
    n.output_buffer_size = match req.output_buffer_size {
        -1 => 0,
        0 => 16 * 1024,
        size if size >= 64 && size <= opts.max_output_buffer_size => size as usize,
        size => return Err(bad_body(format!("output buffer size ({size}) is invalid"))),
    };
    let min_obt = opts.min_output_buffer_timeout.as_millis() as i64;
    let max_obt = opts.max_output_buffer_timeout.as_millis() as i64;
    n.output_buffer_timeout = match req.output_buffer_timeout {
        -1 => None,
        0 => Some(opts.output_buffer_timeout),
        ms if (min_obt..=max_obt).contains(&ms) => Some(Duration::from_millis(ms as u64)),
        ms => return Err(bad_body(format!("output buffer timeout ({ms}) is invalid"))),
    };
    if !(0..=99).contains(&req.sample_rate) {
        return Err(bad_body(format!(
            "sample rate ({}) is invalid",
            req.sample_rate
        )));
    }
    n.sample_rate = req.sample_rate;
    let max_msg = opts.max_msg_timeout.as_millis() as i64;
    n.msg_timeout = match req.msg_timeout {
        0 => opts.msg_timeout,
        ms if (1000..=max_msg).contains(&ms) => Duration::from_millis(ms as u64),
        ms => return Err(bad_body(format!("msg timeout ({ms}) is invalid"))),
    };
    // A compression the server has switched off is quietly not negotiated, as in NSQ.
    let snappy = req.snappy && opts.snappy;
    let deflate = req.deflate && opts.deflate;
    if snappy && deflate {
        return Err(ProtocolError::fatal(
            "E_IDENTIFY_FAILED",
            "cannot enable both deflate and snappy compression",
        ));
    }
    n.deflate_level = deflate_level(req, opts);
    n.deflate = deflate.then_some(n.deflate_level);
    n.snappy = snappy;
    Ok(n)
}

/// NSQ's level: the requested one when deflating (default 6), clamped to the server's maximum.
/// It is reported even when deflate is off.
fn deflate_level(req: &IdentifyRequest, opts: &NsqdOptions) -> u32 {
    let requested = if req.deflate && req.deflate_level > 0 {
        req.deflate_level
    } else {
        6
    };
    requested.min(opts.max_deflate_level).max(1) as u32
}

/// The feature-negotiation answer: NSQ's field names, in NSQ's order.
#[derive(Debug, serde::Serialize)]
pub struct IdentifyResponse {
    /// `--max-rdy-count`.
    pub max_rdy_count: i64,
    /// The NSQ version we speak.
    pub version: &'static str,
    /// `--max-msg-timeout` in ms.
    pub max_msg_timeout: i64,
    /// This connection's message timeout in ms.
    pub msg_timeout: i64,
    /// TLS negotiated (the connection upgrades right after this answer).
    pub tls_v1: bool,
    /// Deflate negotiated.
    pub deflate: bool,
    /// Deflate level (reported even without deflate, as NSQ does).
    pub deflate_level: u32,
    /// `--max-deflate-level`.
    pub max_deflate_level: i64,
    /// Snappy negotiated.
    pub snappy: bool,
    /// Sampling percentage.
    pub sample_rate: i32,
    /// Whether AUTH is required (an auth server is configured).
    pub auth_required: bool,
    /// Output buffer size in bytes (1 when disabled, as NSQ reports).
    pub output_buffer_size: usize,
    /// Output buffer timeout in ms (0 when disabled).
    pub output_buffer_timeout: i64,
}

/// The feature-negotiation answer for `n`.
pub fn response(n: &Negotiated, opts: &NsqdOptions) -> IdentifyResponse {
    IdentifyResponse {
        max_rdy_count: opts.max_rdy_count,
        version: super::VERSION,
        max_msg_timeout: opts.max_msg_timeout.as_millis() as i64,
        msg_timeout: n.msg_timeout.as_millis() as i64,
        tls_v1: false,
        deflate: n.deflate.is_some(),
        deflate_level: n.deflate_level,
        max_deflate_level: opts.max_deflate_level,
        snappy: n.snappy,
        sample_rate: n.sample_rate,
        auth_required: false,
        output_buffer_size: n.output_buffer_size.max(1),
        output_buffer_timeout: n.output_buffer_timeout.map_or(0, |d| d.as_millis() as i64),
    }
}
