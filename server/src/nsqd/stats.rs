//! `/stats`: NSQ's JSON shape and its text rendering, from the engine's numbers.

use super::clients::ClientStats;
use super::context::Nsqd;
use serde::Serialize;
use std::fmt::Write;

/// NSQ's (empty) end-to-end latency block; we do not track percentiles yet.
#[derive(Debug, Serialize)]
pub struct Latency {
    count: u64,
    percentiles: Option<Vec<serde_json::Value>>,
}

const NO_LATENCY: fn() -> Latency = || Latency {
    count: 0,
    percentiles: None,
};

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
    pub e2e_processing_latency: Latency,
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
    pub e2e_processing_latency: Latency,
}

/// Process memory figures (NSQ reports Go heap numbers; we report the process's).
#[derive(Debug, Serialize)]
pub struct Memory {
    pub rss_bytes: u64,
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
    pub version: &'static str,
    pub health: String,
    pub start_time: i64,
    pub topics: Vec<TopicStatsJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    pub producers: Option<Vec<serde_json::Value>>,
}

/// What `/stats` was asked for.
#[derive(Debug, Default)]
pub struct StatsQuery {
    pub topic: Option<String>,
    pub channel: Option<String>,
    pub include_clients: bool,
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
            channels.push(ChannelStatsJson {
                channel_name: channel.name().to_string(),
                depth: s.depth,
                backend_depth: s.depth,
                in_flight_count: s.in_flight,
                deferred_count: s.deferred,
                message_count: tstats.end_offset.saturating_sub(s.start_offset),
                requeue_count: s.requeue_count,
                timeout_count: s.timeout_count,
                client_count: subscribed.len(),
                clients: query
                    .include_clients
                    .then(|| subscribed.iter().map(|c| c.stats()).collect()),
                paused: channel.is_paused(),
                e2e_processing_latency: NO_LATENCY(),
            });
        }
        topics.push(TopicStatsJson {
            topic_name: topic.name().to_string(),
            channels,
            depth: tstats.backlog,
            backend_depth: tstats.backlog,
            message_count: tstats.message_count,
            message_bytes: tstats.message_bytes,
            paused: topic.is_paused(),
            e2e_processing_latency: NO_LATENCY(),
        });
    }
    Stats {
        version: super::VERSION,
        health: nsqd
            .health()
            .map_or_else(|| "OK".to_string(), |e| format!("NOK - {e}")),
        start_time: nsqd.start_time,
        topics,
        memory: query.include_mem.then(|| Memory {
            rss_bytes: rss_bytes(),
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
        producers: None,
    }
}

/// NSQ's `format=text` rendering.
pub fn render_text(stats: &Stats, uptime_secs: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "nsqd v{} (nsq-rs)", stats.version);
    let _ = writeln!(out, "uptime {uptime_secs}s\n");
    let _ = writeln!(out, "Health: {}\n", stats.health);
    if let Some(m) = &stats.memory {
        let _ = writeln!(
            out,
            "Memory:\n   rss_bytes                \t{}\n",
            m.rss_bytes
        );
    }
    if stats.topics.is_empty() {
        let _ = writeln!(out, "Topics: None");
    } else {
        let _ = writeln!(out, "Topics:");
    }
    for t in &stats.topics {
        let _ = writeln!(
            out,
            "   [{:<15}] depth: {:<5} be-depth: {:<5} msgs: {:<8} e2e%: ",
            t.topic_name, t.depth, t.backend_depth, t.message_count
        );
        for c in &t.channels {
            let _ = writeln!(
                out,
                "      [{:<25}] depth: {:<5} be-depth: {:<5} inflt: {:<4} def: {:<4} re-q: {:<5} timeout: {:<5} msgs: {:<8} e2e%: ",
                c.channel_name, c.depth, c.backend_depth, c.in_flight_count, c.deferred_count, c.requeue_count, c.timeout_count, c.message_count
            );
            for client in c.clients.iter().flatten() {
                let _ = writeln!(
                    out,
                    "        [V2 {:<21}] state: {} inflt: {:<4} rdy: {:<4} fin: {:<8} re-q: {:<8} msgs: {:<8} connected: {}s",
                    client.client_id, client.state, client.in_flight_count, client.ready_count, client.finish_count, client.requeue_count, client.message_count, client.connect_ts
                );
            }
        }
    }
    let _ = writeln!(out, "\nProducers: None");
    out
}
