//! `nsq_log dump`: prints the records of one topic's log, oldest first.
//!
//! Text format, one record per line, tab separated:
//! `offset  id  timestamp  deliver_at  body`, times in RFC 3339 UTC, `deliver_at` `-` when the
//! message was not deferred, and the body as UTF-8 (invalid bytes replaced) with backslash,
//! tab, newline and carriage return escaped as `\\`, `\t`, `\n`, `\r`.
//!
//! JSON format, one object per line: `offset`, `id`, `timestamp` (RFC 3339), `timestamp_ns`,
//! `deliver_at` (RFC 3339 or null), `deliver_at_ns` (0 when not deferred), and the body under
//! `body` when it is valid UTF-8, else under `body_base64`.

use super::format::{base64, escape_line, parse_time, rfc3339};
use super::{open_data_dir, report_recovery, Error, Result};
use nsq_engine::log::LogReader;
use nsq_engine::{Message, Topic};
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;

/// Bytes read from the log in one go.
const READ_BYTES: usize = 1024 * 1024;
/// Records read from the log in one go.
const READ_COUNT: usize = 4096;

/// Output format of `dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DumpFormat {
    /// Tab-separated text, one record per line.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `nsq_log dump`.
#[derive(Debug, Clone, clap::Args)]
pub struct DumpArgs {
    /// The topic to dump.
    #[arg(long)]
    pub topic: String,
    /// Start at this offset (default: the oldest retained message).
    #[arg(long, value_name = "OFFSET", conflicts_with = "since")]
    pub from: Option<u64>,
    /// Start at the first message published at or after this time (RFC 3339 or Unix ns).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Print at most this many records.
    #[arg(short = 'n', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Text)]
    pub format: DumpFormat,
}

/// One record in the JSON format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonRecord {
    /// Log offset.
    pub offset: u64,
    /// NSQ message id.
    pub id: String,
    /// Publish time, RFC 3339 UTC.
    pub timestamp: String,
    /// Publish time, Unix ns.
    pub timestamp_ns: i64,
    /// Deferred-delivery time, RFC 3339 UTC (`None` when not deferred).
    pub deliver_at: Option<String>,
    /// Deferred-delivery time, Unix ns (0 when not deferred).
    pub deliver_at_ns: i64,
    /// The body, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body in base64, when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl JsonRecord {
    /// The JSON form of a message.
    pub fn new(m: &Message) -> Self {
        let (body, body_base64) = match std::str::from_utf8(&m.body) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (None, Some(base64(&m.body))),
        };
        JsonRecord {
            offset: m.offset,
            id: m.id.to_string(),
            timestamp: rfc3339(m.timestamp),
            timestamp_ns: m.timestamp,
            deliver_at: (m.deliver_at != 0).then(|| rfc3339(m.deliver_at)),
            deliver_at_ns: m.deliver_at,
            body,
            body_base64,
        }
    }
}

/// Writes one message in `format`.
pub fn write_record(out: &mut dyn Write, m: &Message, format: DumpFormat) -> Result<()> {
    match format {
        DumpFormat::Text => {
            let deliver_at = if m.deliver_at == 0 {
                "-".to_string()
            } else {
                rfc3339(m.deliver_at)
            };
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                m.offset,
                m.id,
                rfc3339(m.timestamp),
                deliver_at,
                escape_line(&String::from_utf8_lossy(&m.body))
            )?;
        }
        DumpFormat::Json => {
            serde_json::to_writer(&mut *out, &JsonRecord::new(m))?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Where a dump of `topic` starts: `--from`, `--since`, or the oldest retained offset.
pub fn start_offset(topic: &Topic, args: &DumpArgs) -> Result<u64> {
    let storage = topic.storage();
    let (first, end) = (storage.first_offset(), storage.end_offset());
    if let Some(from) = args.from {
        if from < first {
            return Err(Error::BeforeRetention {
                requested: from,
                first,
            });
        }
        if from > end {
            return Err(Error::PastEnd {
                requested: from,
                end,
            });
        }
        return Ok(from);
    }
    if let Some(since) = &args.since {
        let t = parse_time(since)?;
        return Ok(storage.offset_at_time(t)?);
    }
    Ok(first)
}

/// Writes the records of `topic` from `start` on, at most `limit` of them; returns how many.
pub fn dump_topic(
    topic: &Topic,
    start: u64,
    limit: Option<u64>,
    format: DumpFormat,
    out: &mut dyn Write,
) -> Result<u64> {
    let storage = topic.storage();
    let end = storage.end_offset();
    let limit = limit.unwrap_or(u64::MAX);
    let mut reader = LogReader::at(start);
    let mut batch = VecDeque::new();
    let mut written = 0u64;
    while written < limit && reader.offset() < end {
        let want = usize::try_from(limit - written).map_or(READ_COUNT, |n| n.min(READ_COUNT));
        batch.clear();
        if storage.read(&mut reader, READ_BYTES, want, &mut batch)? == 0 {
            break;
        }
        for m in &batch {
            write_record(out, m, format)?;
            written += 1;
        }
    }
    Ok(written)
}

/// Runs `nsq_log dump` on the data directory at `path`.
pub fn run(path: &Path, args: &DumpArgs, out: &mut dyn Write, diag: &mut dyn Write) -> Result<()> {
    let engine = open_data_dir(path)?;
    report_recovery(&engine, diag)?;
    let topic = engine
        .topic(&args.topic)
        .ok_or_else(|| Error::TopicNotFound(args.topic.clone()))?;
    let start = start_offset(&topic, args)?;
    dump_topic(&topic, start, args.count, args.format, out)?;
    // Read-only: dropping the engine releases the lock without persisting anything.
    drop(topic);
    drop(engine);
    Ok(())
}
