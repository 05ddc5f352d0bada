//! IDENTIFY: checking a client's requested settings against nsqd's limits, as NSQ does.

use super::options::NsqdOptions;
use std::time::Duration;

/// The fields of an IDENTIFY body nsqd acts on (NSQ's JSON names; unknown fields ignored).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct IdentifyRequest {
    pub client_id: String,
    pub short_id: String,
    pub long_id: String,
    pub hostname: String,
    pub feature_negotiation: bool,
    pub heartbeat_interval: i64,
    pub output_buffer_size: i64,
    pub output_buffer_timeout: i64,
    pub tls_v1: bool,
    pub snappy: bool,
    pub deflate: bool,
    pub deflate_level: i64,
    pub sample_rate: i32,
    pub user_agent: String,
    pub msg_timeout: i64,
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
        }
    }
}

/// NSQ: half the client timeout (60 s), i.e. 30 s, capped by the maximum.
fn default_heartbeat(opts: &NsqdOptions) -> Duration {
    Duration::from_secs(30).min(opts.max_heartbeat_interval)
}

/// Checks an IDENTIFY against the limits; the error is the `E_BAD_BODY` text.
pub fn negotiate(req: &IdentifyRequest, opts: &NsqdOptions) -> Result<Negotiated, String> {
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
        ms => return Err(format!("heartbeat interval ({ms}) is invalid")),
    };
    n.output_buffer_size = match req.output_buffer_size {
        -1 => 0,
        0 => 16 * 1024,
        size if size >= 64 && size <= opts.max_output_buffer_size => size as usize,
        size => return Err(format!("output buffer size ({size}) is invalid")),
    };
    let min_obt = opts.min_output_buffer_timeout.as_millis() as i64;
    let max_obt = opts.max_output_buffer_timeout.as_millis() as i64;
    n.output_buffer_timeout = match req.output_buffer_timeout {
        -1 => None,
        0 => Some(opts.output_buffer_timeout),
        ms if (min_obt..=max_obt).contains(&ms) => Some(Duration::from_millis(ms as u64)),
        ms => return Err(format!("output buffer timeout ({ms}) is invalid")),
    };
    if !(0..=99).contains(&req.sample_rate) {
        return Err(format!("sample rate ({}) is invalid", req.sample_rate));
    }
    n.sample_rate = req.sample_rate;
    let max_msg = opts.max_msg_timeout.as_millis() as i64;
    n.msg_timeout = match req.msg_timeout {
        0 => opts.msg_timeout,
        ms if (1000..=max_msg).contains(&ms) => Duration::from_millis(ms as u64),
        ms => return Err(format!("msg timeout ({ms}) is invalid")),
    };
    if req.snappy && req.deflate {
        return Err("cannot enable both deflate and snappy compression".to_string());
    }
    if req.snappy && !opts.snappy {
        return Err("snappy compression is not supported".to_string());
    }
    if req.deflate {
        if !opts.deflate {
            return Err("deflate compression is not supported".to_string());
        }
        // NSQ: default 6, clamped to the server's maximum.
        let level = if req.deflate_level <= 0 {
            6
        } else {
            req.deflate_level
        };
        n.deflate = Some(level.min(opts.max_deflate_level).max(1) as u32);
    }
    n.snappy = req.snappy;
    Ok(n)
}

/// The feature-negotiation answer (NSQ's field names).
pub fn response(n: &Negotiated, opts: &NsqdOptions) -> serde_json::Value {
    serde_json::json!({
        "max_rdy_count": opts.max_rdy_count,
        "version": super::VERSION,
        "max_msg_timeout": opts.max_msg_timeout.as_millis() as i64,
        "msg_timeout": n.msg_timeout.as_millis() as i64,
        "tls_v1": false,
        "deflate": n.deflate.is_some(),
        "deflate_level": n.deflate.unwrap_or(0),
        "max_deflate_level": opts.max_deflate_level,
        "snappy": n.snappy,
        "sample_rate": n.sample_rate,
        "auth_required": false,
        "output_buffer_size": n.output_buffer_size,
        "output_buffer_timeout": n.output_buffer_timeout.map_or(-1, |d| d.as_millis() as i64),
    })
}
