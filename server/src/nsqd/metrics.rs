//! Prometheus `/metrics` (NSQ has none): the `/stats` numbers per topic and channel plus
//! what only our log has (retained range and bytes, channel lag, recovery events), in the
//! OpenMetrics text format through the official `prometheus-client` crate.
//!
//! Every scrape builds a fresh registry from one `/stats` snapshot, so a deleted topic's
//! series disappear with it and nothing is updated on the message path.

use super::context::Nsqd;
use super::e2e::LatencyJson;
use super::stats::{self, StatsQuery};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const EPHEMERAL: &str = "#ephemeral";

type Labels = Vec<(String, String)>;
type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
type CounterFamily = Family<Labels, Counter>;

/// A family registered under `name`, returned for filling in.
fn gauge(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> GaugeFamily {
    let family = GaugeFamily::default();
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family.clone()),
        None => registry.register(name, help, family.clone()),
    }
    family
}

fn counter(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> CounterFamily {
    let family = CounterFamily::default();
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family.clone()),
        None => registry.register(name, help, family.clone()),
    }
    family
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn set(family: &GaugeFamily, labels: &Labels, value: f64) {
    family.get_or_create(labels).set(value);
}

fn count(family: &CounterFamily, labels: &Labels, value: u64) {
    family.get_or_create(labels).inc_by(value);
}

/// The e2e quantiles of one topic or channel, in seconds, one series per quantile.
fn latency(family: &GaugeFamily, base: &Labels, latency: &LatencyJson) {
    for p in latency.percentiles.iter().flatten() {
        let mut l = base.clone();
        l.push(("quantile".to_string(), p.quantile.to_string()));
        set(family, &l, p.value as f64 / 1e9);
    }
}

/// The whole `/metrics` answer; `exclude_ephemeral` leaves `#ephemeral` topics and channels out.
pub fn render(nsqd: &Nsqd, exclude_ephemeral: bool) -> Result<String, std::fmt::Error> {
    let snapshot = stats::collect(nsqd, &StatsQuery::default());
    let mut r = Registry::with_prefix("nsq");
    let topic_depth = gauge(
        &mut r,
        "topic_depth",
        "Messages waiting in the topic (no channel yet)",
        None,
    );
    let topic_messages = counter(
        &mut r,
        "topic_messages",
        "Messages published since start",
        None,
    );
    let topic_message_bytes = counter(
        &mut r,
        "topic_message",
        "Body bytes published since start",
        Some(Unit::Bytes),
    );
    let topic_paused = gauge(&mut r, "topic_paused", "1 when the topic is paused", None);
    let topic_retained = gauge(
        &mut r,
        "topic_retained",
        "Bytes of log the topic holds on disk",
        Some(Unit::Bytes),
    );
    let topic_first = gauge(
        &mut r,
        "topic_first_offset",
        "Oldest retained offset of the topic's log",
        None,
    );
    let topic_end = gauge(
        &mut r,
        "topic_end_offset",
        "One past the newest offset of the topic's log",
        None,
    );
    let topic_latency = gauge(
        &mut r,
        "topic_e2e_processing_latency",
        "Quantiles of FIN time minus publish time over the window, all channels",
        Some(Unit::Seconds),
    );
    let channel_depth = gauge(&mut r, "channel_depth", "Messages ready for delivery", None);
    let channel_in_flight = gauge(
        &mut r,
        "channel_in_flight",
        "Messages delivered and not yet finished",
        None,
    );
    let channel_deferred = gauge(
        &mut r,
        "channel_deferred",
        "Messages deferred (DPUB, REQ with delay)",
        None,
    );
    let channel_messages = counter(
        &mut r,
        "channel_messages",
        "Messages the channel received since it started",
        None,
    );
    let channel_requeues = counter(&mut r, "channel_requeues", "REQ commands since start", None);
    let channel_timeouts = counter(
        &mut r,
        "channel_timeouts",
        "In-flight messages timed out since start",
        None,
    );
    let channel_clients = gauge(&mut r, "channel_clients", "Subscribed clients", None);
    let channel_paused = gauge(
        &mut r,
        "channel_paused",
        "1 when the channel is paused",
        None,
    );
    let channel_lag = gauge(
        &mut r,
        "channel_lag_messages",
        "Messages not yet finished: end of the log minus the channel's floor",
        None,
    );
    let channel_lag_seconds = gauge(
        &mut r,
        "channel_lag",
        "Age of the oldest unfinished message",
        Some(Unit::Seconds),
    );
    let channel_latency = gauge(
        &mut r,
        "channel_e2e_processing_latency",
        "Quantiles of FIN time minus publish time over the window",
        Some(Unit::Seconds),
    );
    for t in snapshot.topics.as_deref().unwrap_or_default() {
        if exclude_ephemeral && t.topic_name.ends_with(EPHEMERAL) {
            continue;
        }
        let tl = labels(&[("topic", &t.topic_name)]);
        set(&topic_depth, &tl, t.depth as f64);
        count(&topic_messages, &tl, t.message_count);
        count(&topic_message_bytes, &tl, t.message_bytes);
        set(&topic_paused, &tl, f64::from(u8::from(t.paused)));
        set(&topic_retained, &tl, t.retained.bytes as f64);
        set(&topic_first, &tl, t.retained.first_offset as f64);
        set(&topic_end, &tl, t.retained.end_offset as f64);
        latency(&topic_latency, &tl, &t.e2e_processing_latency);
        for c in &t.channels {
            if exclude_ephemeral && c.channel_name.ends_with(EPHEMERAL) {
                continue;
            }
            let cl = labels(&[("topic", &t.topic_name), ("channel", &c.channel_name)]);
            set(&channel_depth, &cl, c.depth as f64);
            set(&channel_in_flight, &cl, c.in_flight_count as f64);
            set(&channel_deferred, &cl, c.deferred_count as f64);
            count(&channel_messages, &cl, c.message_count);
            count(&channel_requeues, &cl, c.requeue_count);
            count(&channel_timeouts, &cl, c.timeout_count);
            set(&channel_clients, &cl, c.client_count as f64);
            set(&channel_paused, &cl, f64::from(u8::from(c.paused)));
            set(&channel_lag, &cl, c.position.lag_messages as f64);
            set(&channel_lag_seconds, &cl, c.position.lag_seconds);
            latency(&channel_latency, &cl, &c.e2e_processing_latency);
        }
    }
    let none = Labels::new();
    let clients = nsqd.clients.all();
    let connections = gauge(&mut r, "connections", "Open TCP client connections", None);
    set(&connections, &none, clients.len() as f64);
    let producers = gauge(
        &mut r,
        "producers",
        "Connected clients that published and are not subscribed",
        None,
    );
    let publishing = clients
        .iter()
        .filter(|c| !c.is_subscribed() && c.has_published(None))
        .count();
    set(&producers, &none, publishing as f64);
    let recovery = counter(
        &mut r,
        "recovery_events",
        "Repairs made when the data directory was opened",
        None,
    );
    count(&recovery, &none, nsqd.engine.recovery_events().len() as u64);
    let topics = gauge(&mut r, "topics", "Topics", None);
    set(
        &topics,
        &none,
        snapshot.topics.as_deref().map_or(0, <[_]>::len) as f64,
    );
    let healthy = gauge(
        &mut r,
        "healthy",
        "1 while publishes succeed (see /ping)",
        None,
    );
    set(
        &healthy,
        &none,
        f64::from(u8::from(nsqd.health().is_none())),
    );
    let rss = gauge(
        &mut r,
        "resident_memory",
        "Resident set size of the process",
        Some(Unit::Bytes),
    );
    set(&rss, &none, stats::rss_bytes() as f64);
    let start = gauge(
        &mut r,
        "start_time",
        "Process start, Unix time",
        Some(Unit::Seconds),
    );
    set(&start, &none, nsqd.start_time as f64);
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}
