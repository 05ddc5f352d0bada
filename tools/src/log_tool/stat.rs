//! `nsq_log stat`: what a data directory holds, per topic and channel.
//!
//! Per topic: the retained offsets, messages and bytes, the segment count and the publish
//! time of the oldest retained message. Per channel: its floor (every offset below it is
//! finished) and next read offset, its lag (`end - floor`: messages not yet finished), the
//! age of the oldest unfinished message, and how many messages are in flight or deferred.

use super::format::{human_bytes, human_duration, rfc3339, rfc3339_seconds, Table};
use super::{open_data_dir, report_recovery, Error, Result};
use nsq_engine::{Channel, Engine, Topic};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Arguments of `nsq_log stat`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StatArgs {
    /// Only this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Everything `stat` reports (also its JSON form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatReport {
    /// The data directory.
    pub data_path: String,
    /// When the report was made, Unix ns (ages are measured from here).
    pub now_ns: i64,
    /// What recovery did when the directory was opened, one line per event.
    pub recovered: Vec<String>,
    /// The topics, by name.
    pub topics: Vec<TopicReport>,
}

/// One topic's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicReport {
    /// Topic name.
    pub name: String,
    /// Whether delivery is paused.
    pub paused: bool,
    /// Oldest retained offset.
    pub first_offset: u64,
    /// Newest offset, `None` when the log retains nothing.
    pub last_offset: Option<u64>,
    /// One past the newest offset.
    pub end_offset: u64,
    /// Messages retained (`end_offset - first_offset`).
    pub messages: u64,
    /// Bytes of the log's segments.
    pub bytes: u64,
    /// Segment files (`None` for an in-memory topic).
    pub segments: Option<usize>,
    /// Publish time of the oldest retained message, Unix ns.
    pub oldest_timestamp_ns: Option<i64>,
    /// The same as RFC 3339 UTC.
    pub oldest_time: Option<String>,
    /// The topic's channels, by name.
    pub channels: Vec<ChannelReport>,
}

/// One channel's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelReport {
    /// Channel name.
    pub name: String,
    /// Whether delivery is paused.
    pub paused: bool,
    /// Every offset below this is finished.
    pub floor: u64,
    /// Next offset to read from the log.
    pub next: u64,
    /// Messages not yet finished: `end_offset - floor`.
    pub lag: u64,
    /// Messages ready to deliver (unread, plus requeued ones that are due).
    pub depth: u64,
    /// Messages in flight (always 0 offline: a reopened cursor redelivers them).
    pub in_flight: u64,
    /// Messages held back (requeued with a delay, or deferred publishes not yet due).
    pub deferred: u64,
    /// Publish time of the message at `floor`, Unix ns (`None` when nothing is unfinished).
    pub oldest_unfinished_timestamp_ns: Option<i64>,
    /// The same as RFC 3339 UTC.
    pub oldest_unfinished_time: Option<String>,
    /// `now - oldest_unfinished_timestamp_ns`, never negative.
    pub age_ns: Option<i64>,
}

/// Runs `nsq_log stat` on the data directory at `path`.
pub fn run(path: &Path, args: &StatArgs, out: &mut dyn Write, diag: &mut dyn Write) -> Result<()> {
    let engine = open_data_dir(path)?;
    report_recovery(&engine, diag)?;
    let report = collect(&engine, args.topic.as_deref());
    // Read-only: dropping the engine releases the lock without persisting anything.
    drop(engine);
    let report = report?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        render_table(&report, out)?;
    }
    Ok(())
}

/// Gathers the report from an open engine: every topic, or only `topic`.
pub fn collect(engine: &Engine, topic: Option<&str>) -> Result<StatReport> {
    let now = engine.now();
    let topics = match topic {
        Some(name) => vec![engine
            .topic(name)
            .ok_or_else(|| Error::TopicNotFound(name.to_string()))?],
        None => engine.topics(),
    };
    let topics = topics
        .iter()
        .map(|t| topic_report(t, now))
        .collect::<Result<Vec<_>>>()?;
    Ok(StatReport {
        data_path: engine.path().display().to_string(),
        now_ns: now,
        recovered: engine
            .recovery_events()
            .iter()
            .map(ToString::to_string)
            .collect(),
        topics,
    })
}

fn topic_report(topic: &Topic, now: i64) -> Result<TopicReport> {
    let storage = topic.storage();
    let first = storage.first_offset();
    let end = storage.end_offset();
    let oldest = if end > first {
        storage.first_timestamp()?
    } else {
        None
    };
    let channels = topic
        .channels()
        .iter()
        .map(|c| channel_report(topic, c, end, now))
        .collect::<Result<Vec<_>>>()?;
    Ok(TopicReport {
        name: topic.name().to_string(),
        paused: topic.is_paused(),
        first_offset: first,
        last_offset: end.checked_sub(1).filter(|_| end > first),
        end_offset: end,
        messages: end.saturating_sub(first),
        bytes: storage.total_bytes(),
        segments: storage.disk().map(|log| log.segment_count()),
        oldest_timestamp_ns: oldest,
        oldest_time: oldest.map(rfc3339),
        channels,
    })
}

fn channel_report(topic: &Topic, channel: &Channel, end: u64, now: i64) -> Result<ChannelReport> {
    let stats = channel.stats(now);
    let oldest = if stats.floor < end {
        match topic.storage().read_one(stats.floor) {
            Ok(m) => m.map(|m| m.timestamp),
            // The floor's message is gone (only possible for a cursor behind retention).
            Err(nsq_engine::Error::BeforeRetention { .. }) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    Ok(ChannelReport {
        name: channel.name().to_string(),
        paused: channel.is_paused(),
        floor: stats.floor,
        next: stats.next,
        lag: end.saturating_sub(stats.floor),
        depth: stats.depth,
        in_flight: stats.in_flight,
        deferred: stats.deferred,
        oldest_unfinished_timestamp_ns: oldest,
        oldest_unfinished_time: oldest.map(rfc3339),
        age_ns: oldest.map(|t| now.saturating_sub(t).max(0)),
    })
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn with_paused(name: &str, paused: bool) -> String {
    if paused {
        format!("{name} (paused)")
    } else {
        name.to_string()
    }
}

/// Writes the report as a table: a row per topic, and under each topic an indented header and
/// a row per channel.
pub fn render_table(report: &StatReport, out: &mut dyn Write) -> Result<()> {
    if report.topics.is_empty() {
        writeln!(out, "no topics in {}", report.data_path)?;
        return Ok(());
    }
    let mut table = Table::new();
    table.row([
        "TOPIC", "FIRST", "LAST", "MESSAGES", "BYTES", "SEGMENTS", "OLDEST",
    ]);
    for topic in &report.topics {
        table.row([
            with_paused(&topic.name, topic.paused),
            topic.first_offset.to_string(),
            or_dash(topic.last_offset),
            topic.messages.to_string(),
            human_bytes(topic.bytes),
            or_dash(topic.segments),
            or_dash(topic.oldest_timestamp_ns.map(rfc3339_seconds)),
        ]);
        if topic.channels.is_empty() {
            continue;
        }
        table.row([
            "  CHANNEL",
            "FLOOR",
            "NEXT",
            "LAG",
            "AGE",
            "IN-FLIGHT",
            "DEFERRED",
        ]);
        for channel in &topic.channels {
            table.row([
                format!("  {}", with_paused(&channel.name, channel.paused)),
                channel.floor.to_string(),
                channel.next.to_string(),
                channel.lag.to_string(),
                or_dash(channel.age_ns.map(human_duration)),
                channel.in_flight.to_string(),
                channel.deferred.to_string(),
            ]);
        }
    }
    table.render(out)
}
