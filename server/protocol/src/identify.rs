//! IDENTIFY: the JSON body a client sends, nsqd's checks of it against its limits (NSQ's
//! error codes and texts), and the feature-negotiation answer. Pure: the server supplies its
//! limits as an [`IdentifyLimits`].

use crate::ProtocolError;
use std::time::Duration;

/// The fields of an IDENTIFY body nsqd acts on (NSQ's JSON names; unknown fields ignored).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct IdentifyRequest {
    /// The client's id (`short_id` in old clients).
    #[serde(deserialize_with = "null_as_default")]
    pub client_id: String,
    /// Deprecated spelling of `client_id`.
    #[serde(deserialize_with = "null_as_default")]
    pub short_id: String,
    /// Deprecated spelling of `hostname`.
    #[serde(deserialize_with = "null_as_default")]
    pub long_id: String,
    /// The client's host name.
    #[serde(deserialize_with = "null_as_default")]
    pub hostname: String,
    /// Whether the client wants the JSON feature-negotiation answer instead of `OK`.
    #[serde(deserialize_with = "null_as_default")]
    pub feature_negotiation: bool,
    /// Heartbeat interval in ms (`-1` disables, `0` the default).
    #[serde(deserialize_with = "null_as_default")]
    pub heartbeat_interval: i64,
    /// Output buffer size in bytes (`-1` disables, `0` the default).
    #[serde(deserialize_with = "null_as_default")]
    pub output_buffer_size: i64,
    /// Output buffer timeout in ms (`-1` disables, `0` the default).
    #[serde(deserialize_with = "null_as_default")]
    pub output_buffer_timeout: i64,
    /// Whether the client wants to upgrade to TLS.
    #[serde(deserialize_with = "null_as_default")]
    pub tls_v1: bool,
    /// Whether the client wants snappy stream compression.
    #[serde(deserialize_with = "null_as_default")]
    pub snappy: bool,
    /// Whether the client wants deflate stream compression.
    #[serde(deserialize_with = "null_as_default")]
    pub deflate: bool,
    /// The deflate level the client asks for (`0`: the default, 6).
    #[serde(deserialize_with = "null_as_default")]
    pub deflate_level: i64,
    /// Percentage of messages to deliver (`0`: all).
    #[serde(deserialize_with = "null_as_default")]
    pub sample_rate: i32,
    /// The client library's name and version.
    #[serde(deserialize_with = "null_as_default")]
    pub user_agent: String,
    /// Message timeout in ms for this connection (`0`: the server's default).
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

/// The server's limits and defaults that IDENTIFY is checked against (nsqd's flags).
#[derive(Debug, Clone, PartialEq)]
pub struct IdentifyLimits {
    /// `--max-heartbeat-interval`.
    pub max_heartbeat_interval: Duration,
    /// `--max-output-buffer-size` in bytes.
    pub max_output_buffer_size: i64,
    /// `--output-buffer-timeout`: the default.
    pub output_buffer_timeout: Duration,
    /// `--min-output-buffer-timeout`.
    pub min_output_buffer_timeout: Duration,
    /// `--max-output-buffer-timeout`.
    pub max_output_buffer_timeout: Duration,
    /// `--msg-timeout`: the default.
    pub msg_timeout: Duration,
    /// `--max-msg-timeout`.
    pub max_msg_timeout: Duration,
    /// `--snappy`: whether snappy may be negotiated.
    pub snappy: bool,
    /// `--deflate`: whether deflate may be negotiated.
    pub deflate: bool,
    /// `--max-deflate-level`.
    pub max_deflate_level: i64,
    /// `--max-rdy-count` (reported in the answer).
    pub max_rdy_count: i64,
}

/// What the connection runs with after IDENTIFY.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    /// The client's id.
    pub client_id: String,
    /// The client's host name.
    pub hostname: String,
    /// The client library's name and version.
    pub user_agent: String,
    /// `None`: heartbeats disabled.
    pub heartbeat: Option<Duration>,
    /// 0: no buffering (flush every frame).
    pub output_buffer_size: usize,
    /// `None`: no timed flushes (flush every frame).
    pub output_buffer_timeout: Option<Duration>,
    /// How long a message may stay in flight before nsqd requeues it.
    pub msg_timeout: Duration,
    /// Percentage of messages delivered (`0`: all).
    pub sample_rate: i32,
    /// Snappy negotiated.
    pub snappy: bool,
    /// Deflate negotiated, at this level.
    pub deflate: Option<u32>,
    /// The level reported to the client (NSQ reports one even without deflate).
    pub deflate_level: u32,
}

impl Negotiated {
    /// The settings of a client that never sent IDENTIFY.
    pub fn defaults(limits: &IdentifyLimits) -> Self {
        Negotiated {
            client_id: String::new(),
            hostname: String::new(),
            user_agent: String::new(),
            heartbeat: Some(default_heartbeat(limits)),
            output_buffer_size: 16 * 1024,
            output_buffer_timeout: Some(limits.output_buffer_timeout),
            msg_timeout: limits.msg_timeout,
            sample_rate: 0,
            snappy: false,
            deflate: None,
            deflate_level: 6_i64.min(limits.max_deflate_level).max(1) as u32,
        }
    }
}

/// NSQ: half the client timeout (60 s), i.e. 30 s, capped by the maximum.
fn default_heartbeat(limits: &IdentifyLimits) -> Duration {
    Duration::from_secs(30).min(limits.max_heartbeat_interval)
}

/// A limit violation: NSQ answers `E_BAD_BODY IDENTIFY ...` and closes.
fn bad_body(what: String) -> ProtocolError {
    ProtocolError::fatal("E_BAD_BODY", &format!("IDENTIFY {what}"))
}

/// Checks an IDENTIFY against the limits, with NSQ's error codes and texts.
pub fn negotiate(
    req: &IdentifyRequest,
    limits: &IdentifyLimits,
) -> Result<Negotiated, ProtocolError> {
    let mut n = Negotiated::defaults(limits);
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

    let max_hb = limits.max_heartbeat_interval.as_millis() as i64;
    n.heartbeat = match req.heartbeat_interval {
        -1 => None,
        0 => Some(default_heartbeat(limits)),
        ms if (1000..=max_hb).contains(&ms) => Some(Duration::from_millis(ms as u64)),
        ms => return Err(bad_body(format!("heartbeat interval ({ms}) is invalid"))),
    };
    n.output_buffer_size = match req.output_buffer_size {
        -1 => 0,
        0 => 16 * 1024,
        size if size >= 64 && size <= limits.max_output_buffer_size => size as usize,
        size => return Err(bad_body(format!("output buffer size ({size}) is invalid"))),
    };
    let min_obt = limits.min_output_buffer_timeout.as_millis() as i64;
    let max_obt = limits.max_output_buffer_timeout.as_millis() as i64;
    n.output_buffer_timeout = match req.output_buffer_timeout {
        -1 => None,
        0 => Some(limits.output_buffer_timeout),
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
    let max_msg = limits.max_msg_timeout.as_millis() as i64;
    n.msg_timeout = match req.msg_timeout {
        0 => limits.msg_timeout,
        ms if (1000..=max_msg).contains(&ms) => Duration::from_millis(ms as u64),
        ms => return Err(bad_body(format!("msg timeout ({ms}) is invalid"))),
    };
    // A compression the server has switched off is quietly not negotiated, as in NSQ.
    let snappy = req.snappy && limits.snappy;
    let deflate = req.deflate && limits.deflate;
    if snappy && deflate {
        return Err(ProtocolError::fatal(
            "E_IDENTIFY_FAILED",
            "cannot enable both deflate and snappy compression",
        ));
    }
    n.deflate_level = deflate_level(req, limits);
    n.deflate = deflate.then_some(n.deflate_level);
    n.snappy = snappy;
    Ok(n)
}

/// NSQ's level: the requested one when deflating (default 6), clamped to the server's maximum.
/// It is reported even when deflate is off.
fn deflate_level(req: &IdentifyRequest, limits: &IdentifyLimits) -> u32 {
    let requested = if req.deflate && req.deflate_level > 0 {
        req.deflate_level
    } else {
        6
    };
    requested.min(limits.max_deflate_level).max(1) as u32
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

/// The feature-negotiation answer for `n`, from a server speaking NSQ `version`. TLS and AUTH
/// are reported off; the server sets them when it has them.
pub fn response(
    n: &Negotiated,
    limits: &IdentifyLimits,
    version: &'static str,
) -> IdentifyResponse {
    IdentifyResponse {
        max_rdy_count: limits.max_rdy_count,
        version,
        max_msg_timeout: limits.max_msg_timeout.as_millis() as i64,
        msg_timeout: n.msg_timeout.as_millis() as i64,
        tls_v1: false,
        deflate: n.deflate.is_some(),
        deflate_level: n.deflate_level,
        max_deflate_level: limits.max_deflate_level,
        snappy: n.snappy,
        sample_rate: n.sample_rate,
        auth_required: false,
        output_buffer_size: n.output_buffer_size.max(1),
        output_buffer_timeout: n.output_buffer_timeout.map_or(0, |d| d.as_millis() as i64),
    }
}
