//! `/stats`: NSQ's JSON shape and its text rendering, from the engine's numbers.

use super::clients::ClientStats;
use super::context::Nsqd;
use super::e2e::LatencyJson;
use serde::Serialize;
use std::fmt::Write;

/// One channel in `/stats`.
#[derive(Debug, Serialize)]
pub struct ChannelStatsJson {
    pub channel_name: String,
    pub depth: u64,
    pub backend_depth: u64,
    pub in_flight_count: u64,
    pub deferred_count: u64,
    pub message_count: u64,
    pub requeue_count: u64,
    pub timeout_count: u64,
    pub client_count: usize,
    pub clients: Option<Vec<ClientStats>>,
    pub paused: bool,
    pub e2e_processing_latency: LatencyJson,
    /// Ours (NSQ has no replay): where the channel is in its topic's log.
    pub position: Position,
}

/// A channel's place in the log (ours; clients that do not know it ignore it).
#[derive(Debug, Serialize)]
pub struct Position {
    /// Every offset below this is finished.
    pub floor: u64,
    /// The next offset the channel reads from the log.
    pub next: u64,
    /// Messages not yet finished: end of the log minus the floor.
    pub lag_messages: u64,
    /// Age in seconds of the oldest unfinished message (0 when there is none).
    pub lag_seconds: f64,
}

/// What a topic's log retains (ours; the range a channel can be rewound into).
#[derive(Debug, Serialize)]
pub struct Retained {
    /// Oldest retained offset.
    pub first_offset: u64,
    /// One past the newest offset.
    pub end_offset: u64,
    /// Publish time of the oldest retained message, Unix ns (0 when none).
    pub first_timestamp: i64,
    /// Publish time of the newest message, Unix ns (0 when none).
    pub last_timestamp: i64,
    /// Bytes of log on disk.
    pub bytes: u64,
    /// Fsyncs that made messages durable since nsqd started (`fsynced_messages / fsyncs` is
    /// the group commit's messages per fsync).
    pub fsyncs: u64,
    /// Messages those fsyncs made durable.
    pub fsynced_messages: u64,
}

/// One topic in `/stats`.
#[derive(Debug, Serialize)]
pub struct TopicStatsJson {
    pub topic_name: String,
    pub channels: Vec<ChannelStatsJson>,
    pub depth: u64,
    pub backend_depth: u64,
    pub message_count: u64,
    pub message_bytes: u64,
    pub paused: bool,
    pub e2e_processing_latency: LatencyJson,
    /// Ours: the retained range of the log.
    pub retained: Retained,
}

/// Publish time of the message at `offset`, if it is readable.
fn timestamp_at(topic: &nsq_engine::Topic, offset: u64) -> Option<i64> {
    topic
        .storage()
        .read_one(offset)
        .ok()
        .flatten()
        .map(|m| m.timestamp)
}

/// Process memory figures under NSQ's (Go heap) names: `heap_in_use_bytes` is our resident
/// set size, the Go-only figures are 0.
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct Memory {
    pub heap_objects: u64,
    pub heap_idle_bytes: u64,
    pub heap_in_use_bytes: u64,
    pub heap_released_bytes: u64,
    pub gc_pause_usec_100: u64,
    pub gc_pause_usec_99: u64,
    pub gc_pause_usec_95: u64,
    pub next_gc_bytes: u64,
    pub gc_total_runs: u64,
}

/// The whole `/stats` document.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// NSQ version we report.
    pub version: &'static str,
    /// `OK` or `NOK - reason`.
    pub health: String,
    /// Unix seconds.
    pub start_time: i64,
    /// `null` when a `topic` filter names no topic, as NSQ answers.
    pub topics: Option<Vec<TopicStatsJson>>,
    /// Only with `include_mem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Clients that published (only with `include_clients`, else `null`).
    pub producers: Option<Vec<ClientStats>>,
}

/// What `/stats` was asked for.
#[derive(Debug, Default)]
pub struct StatsQuery {
    /// Only this topic.
    pub topic: Option<String>,
    /// Only this channel (topics without it are left out).
    pub channel: Option<String>,
    /// Per-client lists and producers.
    pub include_clients: bool,
    /// The memory block.
    pub include_mem: bool,
}

/// Resident set size of this process, from /proc.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Collects the stats.
pub fn collect(nsqd: &Nsqd, query: &StatsQuery) -> Stats {
    let now = nsqd.engine.now();
    let mut topics = Vec::new();
    for topic in nsqd.engine.topics() {
        if query.topic.as_deref().is_some_and(|t| t != topic.name()) {
            continue;
        }
        let tstats = topic.stats().unwrap_or_default();
        let mut channels = Vec::new();
        for channel in topic.channels() {
            if query
                .channel
                .as_deref()
                .is_some_and(|c| c != channel.name())
            {
                continue;
            }
            let s = channel.stats(now);
            let subscribed = nsqd.clients.subscribed_to(topic.name(), channel.name());
            let pub_topic = Some(topic.name());
            channels.push(ChannelStatsJson {
                channel_name: channel.name().to_string(),
                depth: s.depth,
                backend_depth: s.depth,
                in_flight_count: s.in_flight,
                deferred_count: s.deferred,
                message_count: s.readable_end.saturating_sub(s.start_offset),
                requeue_count: s.requeue_count,
                timeout_count: s.timeout_count,
                client_count: subscribed.len(),
                clients: query
                    .include_clients
                    .then(|| subscribed.iter().map(|c| c.stats(pub_topic)).collect()),
                paused: channel.is_paused(),
                e2e_processing_latency: nsqd
                    .e2e
                    .as_ref()
                    .map(|e| e.channel_result(topic.name(), channel.name()))
                    .unwrap_or_default(),
                position: Position {
                    floor: s.floor,
                    next: s.next,
                    lag_messages: tstats.end_offset.saturating_sub(s.floor),
                    lag_seconds: if s.floor < tstats.end_offset {
                        timestamp_at(&topic, s.floor)
                            .map_or(0.0, |t| now.saturating_sub(t).max(0) as f64 / 1e9)
                    } else {
                        0.0
                    },
                },
            });
        }
        // NSQ leaves out topics without the asked-for channel.
        if query.channel.is_some() && channels.is_empty() {
            continue;
        }
        topics.push(TopicStatsJson {
            topic_name: topic.name().to_string(),
            channels,
            depth: tstats.backlog,
            backend_depth: tstats.backlog,
            message_count: tstats.message_count,
            message_bytes: tstats.message_bytes,
            paused: topic.is_paused(),
            e2e_processing_latency: nsqd
                .e2e
                .as_ref()
                .map(|e| {
                    let names: Vec<String> = topic
                        .channels()
                        .iter()
                        .map(|c| c.name().to_string())
                        .collect();
                    e.topic_result(topic.name(), names.iter().map(String::as_str))
                })
                .unwrap_or_default(),
            retained: Retained {
                first_offset: tstats.first_offset,
                end_offset: tstats.end_offset,
                first_timestamp: tstats.first_timestamp,
                last_timestamp: tstats
                    .end_offset
                    .checked_sub(1)
                    .filter(|&last| last >= tstats.first_offset)
                    .and_then(|last| timestamp_at(&topic, last))
                    .unwrap_or(0),
                bytes: tstats.bytes,
                fsyncs: tstats.fsyncs,
                fsynced_messages: tstats.fsynced_messages,
            },
        });
    }
    let topic_missing = query
        .topic
        .as_deref()
        .is_some_and(|t| nsqd.engine.topic(t).is_none());
    let producers = query.include_clients.then(|| {
        let topic = query.topic.as_deref();
        nsqd.clients
            .all()
            .iter()
            .filter(|c| !c.is_subscribed() && c.has_published(topic))
            .map(|c| c.stats(topic))
            .collect::<Vec<_>>()
    });
    Stats {
        version: super::VERSION,
        health: nsqd
            .health()
            .map_or_else(|| "OK".to_string(), |e| format!("NOK - {e}")),
        start_time: nsqd.start_time,
        topics: (!topic_missing).then_some(topics),
        memory: query.include_mem.then(|| Memory {
            heap_objects: 0,
            heap_idle_bytes: 0,
            heap_in_use_bytes: rss_bytes(),
            heap_released_bytes: 0,
            gc_pause_usec_100: 0,
            gc_pause_usec_99: 0,
            gc_pause_usec_95: 0,
            next_gc_bytes: 0,
            gc_total_runs: 0,
        }),
        // NSQ's empty list is `null`.
        producers: producers.filter(|p| !p.is_empty()),
    }
}

/// Go's `time.Duration` text for whole and fractional seconds (`1h2m3.5s`, `250ms`, `0s`).
pub fn go_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        // Sub-second values use the largest unit that keeps an integer part, as Go does.
        let (unit, scale) = match nanos {
            n if n < 1_000 => return format!("{n}ns"),
            n if n < 1_000_000 => ("µs", 1_000u128),
            _ => ("ms", 1_000_000u128),
        };
        return format!("{}{unit}", trim_fraction(nanos, scale));
    }
    let secs = d.as_secs();
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let s = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// `value / scale` with its fraction, trailing zeros dropped.
fn trim_fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = scale.to_string().len() - 1;
    let text = format!("{frac:0digits$}");
    format!("{whole}.{}", text.trim_end_matches('0'))
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (Go's RFC 3339 for a UTC time).
pub fn rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let rem = unix_secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// NSQ's `[V2 host:port user_agent]` client label.
fn client_label(c: &ClientStats) -> String {
    let port = c.remote_address.rsplit(':').next().unwrap_or("");
    let mut label = format!("{}:{port}", c.hostname);
    if !c.user_agent.is_empty() {
        label.push(' ');
        label.push_str(&c.user_agent);
    }
    label
}

/// The text format's line prefix: NSQ marks a paused topic or channel with `*P`.
fn paused_mark(paused: bool) -> &'static str {
    if paused {
        "*P "
    } else {
        "   "
    }
}

/// NSQ's `format=text` rendering; `uptime` since start, `now_secs` the current Unix time.
pub fn render_text(stats: &Stats, uptime: std::time::Duration, now_secs: i64) -> String {
    let mut out = String::new();
    let connected = |c: &ClientStats| {
        go_duration(std::time::Duration::from_secs(
            (now_secs - c.connect_ts).max(0) as u64,
        ))
    };
    // NSQ's first line is its --version line.
    let _ = writeln!(out, "{}", crate::version::version_line("nsqd"));
    let _ = writeln!(out, "start_time {}", rfc3339(stats.start_time));
    let _ = writeln!(out, "uptime {}\n", go_duration(uptime));
    let _ = writeln!(out, "Health: {}\n", stats.health);
    if let Some(m) = &stats.memory {
        let _ = writeln!(out, "Memory:");
        for (name, value) in [
            ("heap_objects", m.heap_objects),
            ("heap_idle_bytes", m.heap_idle_bytes),
            ("heap_in_use_bytes", m.heap_in_use_bytes),
            ("heap_released_bytes", m.heap_released_bytes),
            ("gc_pause_usec_100", m.gc_pause_usec_100),
            ("gc_pause_usec_99", m.gc_pause_usec_99),
            ("gc_pause_usec_95", m.gc_pause_usec_95),
            ("next_gc_bytes", m.next_gc_bytes),
            ("gc_total_runs", m.gc_total_runs),
        ] {
            let _ = writeln!(out, "   {name:<25}\t{value}");
        }
        let _ = writeln!(out);
    }
    let topics = stats.topics.as_deref().unwrap_or_default();
    if topics.is_empty() {
        let _ = writeln!(out, "Topics: None");
    } else {
        let _ = writeln!(out, "Topics:");
    }
    for t in topics {
        let _ = writeln!(
            out,
            "{}[{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: {}",
            paused_mark(t.paused),
            t.topic_name,
            t.depth,
            t.backend_depth,
            t.message_count,
            t.e2e_processing_latency.text()
        );
        for c in &t.channels {
            let _ = writeln!(
                out,
                "   {}[{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8} e2e%: {}",
                paused_mark(c.paused), c.channel_name, c.depth, c.backend_depth, c.in_flight_count, c.deferred_count, c.requeue_count, c.timeout_count, c.message_count, c.e2e_processing_latency.text()
            );
            for client in c.clients.iter().flatten() {
                let _ = writeln!(
                    out,
                    "        [V2 {:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8} connected: {}",
                    client_label(client), client.state, client.in_flight_count, client.ready_count, client.finish_count, client.requeue_count, client.message_count, connected(client)
                );
            }
        }
    }
    match stats.producers.as_deref() {
        Some(producers) if !producers.is_empty() => {
            let _ = writeln!(out, "\nProducers:");
            for p in producers {
                let topics: Vec<String> = p
                    .pub_counts
                    .iter()
                    .map(|c| format!("{}={}", c.topic, c.count))
                    .collect();
                let msgs: u64 = p.pub_counts.iter().map(|c| c.count).sum();
                let _ = writeln!(
                    out,
                    "   [V2 {:<21}] msgs: {:<8} topics: {} connected: {}",
                    client_label(p),
                    msgs,
                    topics.join(" "),
                    connected(p)
                );
            }
        }
        _ => {
            let _ = writeln!(out, "\nProducers: None");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(62)), "1m2s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(
            go_duration(Duration::from_nanos(1_034_379_870)),
            "1.03437987s"
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_598_928), "2026-11-25T09:28:48Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
