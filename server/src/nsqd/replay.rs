//! Replay, which NSQ cannot do: rewind a channel to any point of the retained log, start a
//! new channel anywhere in it, and keep consumed data for a retention window per topic.
//!
//! - `POST /channel/rewind?topic=&channel=&to=`: `to` is `earliest`, an offset, an RFC 3339
//!   time, or Unix nanoseconds (an integer of 10^15 or more; smaller integers are offsets).
//!   The channel's in-flight messages are dropped from tracking (late FINs fail with
//!   `E_FIN_FAILED`), its floor and read position move, attempts start again.
//! - `POST /channel/create?topic=&channel=&start=`: the same positions for a new channel.
//! - `POST /topic/retention?topic=[&time=24h][&bytes=N]`: this topic's retention window
//!   (either unset: back to the nsqd-wide `--retention-time` / `--retention-bytes`).

use super::context::Nsqd;
use super::http::{
    bad, channel_param, first_wins, internal, not_found, topic_param, Params, Reply, Shared,
};
use axum::extract::State;
use axum::http::StatusCode;
use nsq_engine::{ChannelStart, Error as EngineError, Retention};
use serde_json::json;

/// Integers at least this large are Unix nanoseconds (2001-09-09 onwards), smaller ones offsets.
const NANOS_THRESHOLD: u64 = 1_000_000_000_000_000;

/// Parses a `to=` / `start=` position.
pub fn parse_start(text: &str) -> Result<ChannelStart, Reply> {
    let invalid = || {
        Reply::ErrorText(
            StatusCode::BAD_REQUEST,
            format!(
                "INVALID_ARG_TO: {text:?} is not earliest, latest, an offset, an RFC 3339 time or Unix nanoseconds"
            ),
        )
    };
    match text {
        "earliest" => return Ok(ChannelStart::Earliest),
        "latest" | "tail" => return Ok(ChannelStart::Tail),
        _ => {}
    }
    if let Ok(n) = text.parse::<u64>() {
        return Ok(if n >= NANOS_THRESHOLD {
            ChannelStart::Timestamp(i64::try_from(n).map_err(|_| invalid())?)
        } else {
            ChannelStart::Offset(n)
        });
    }
    let time = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| invalid())?;
    let nanos = time.timestamp_nanos_opt().ok_or_else(invalid)?;
    Ok(ChannelStart::Timestamp(nanos))
}

fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// NSQ-style answers for the engine's replay errors.
fn replay_error(e: EngineError) -> Reply {
    match e {
        EngineError::TopicNotFound(_) => not_found("TOPIC_NOT_FOUND"),
        EngineError::ChannelNotFound(_) => not_found("CHANNEL_NOT_FOUND"),
        EngineError::BeforeRetention {
            earliest_offset,
            earliest_timestamp,
        } => Reply::ErrorText(
            StatusCode::BAD_REQUEST,
            format!(
                "BEFORE_RETENTION: the earliest retained message is offset {earliest_offset}, published {}",
                rfc3339(earliest_timestamp)
            ),
        ),
        EngineError::PastEnd { requested, end } => Reply::ErrorText(
            StatusCode::BAD_REQUEST,
            format!("PAST_END: offset {requested} is past the end of the log (next offset {end})"),
        ),
        EngineError::Ephemeral(what) => Reply::ErrorText(
            StatusCode::BAD_REQUEST,
            format!("EPHEMERAL: {what} is ephemeral and keeps no log to replay"),
        ),
        other => internal(other),
    }
}

/// `/channel/create`: creates the channel starting at `start` (a no-op if it exists).
pub fn create_at(nsqd: &Nsqd, topic: &str, channel: &str, start: ChannelStart) -> Reply {
    match nsqd.engine.create_channel(topic, channel, start) {
        Ok(_) => {
            nsqd.wake(topic);
            Reply::Empty
        }
        Err(e) => replay_error(e),
    }
}

/// `POST /channel/rewind`.
pub async fn rewind(State(nsqd): Shared, params: Params) -> Reply {
    let params = first_wins(params);
    let topic = match topic_param(&params, "INVALID_ARG_TOPIC") {
        Ok(t) => t,
        Err(r) => return r,
    };
    let channel = match channel_param(&params, "INVALID_ARG_CHANNEL") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(to) = params.get("to") else {
        return bad("MISSING_ARG_TO");
    };
    let start = match parse_start(to) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match nsqd.engine.rewind_channel(&topic, &channel, start) {
        Ok(offset) => {
            tracing::info!("channel {topic}/{channel} rewound to offset {offset} ({to})");
            nsqd.wake(&topic);
            Reply::Json(json!({ "topic": topic, "channel": channel, "offset": offset }))
        }
        Err(e) => replay_error(e),
    }
}

/// `POST /topic/retention`.
pub async fn retention(State(nsqd): Shared, params: Params) -> Reply {
    let params = first_wins(params);
    let topic = match topic_param(&params, "INVALID_ARG_TOPIC") {
        Ok(t) => t,
        Err(r) => return r,
    };
    let time_ns = match params.get("time").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => match crate::args::parse_duration(t) {
            Ok(d) => Some(d.as_nanos().min(i64::MAX as u128) as i64),
            Err(_) => return bad("INVALID_ARG_TIME"),
        },
    };
    let bytes = match params.get("bytes").filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match b.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return bad("INVALID_ARG_BYTES"),
        },
    };
    let retention = (time_ns.is_some() || bytes.is_some()).then_some(Retention { time_ns, bytes });
    match nsqd.engine.set_topic_retention(&topic, retention) {
        Ok(()) => Reply::Empty,
        Err(e) => replay_error(e),
    }
}
