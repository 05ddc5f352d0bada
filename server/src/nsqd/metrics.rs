//! Prometheus `/metrics` (NSQ has none): the `/stats` numbers per topic and channel plus
//! what only our log has (retained range and bytes, channel lag, recovery events), in the
//! OpenMetrics text format through the official `prometheus-client` crate.
//!
//! Every scrape builds a fresh registry from one `/stats` snapshot, so a deleted topic's
//! series disappear with it and nothing is updated on the message path.

use super::context::Nsqd;
use super::e2e::LatencyJson;
use super::stats::{self, StatsQuery};
use nsq_engine::HistogramSnapshot;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const EPHEMERAL: &str = "#ephemeral";

/// A series' labels.
pub(crate) type Labels = Vec<(String, String)>;
/// Float gauges by label set.
pub(crate) type GaugeFamily = Family<Labels, Gauge<f64, AtomicU64>>;
type CounterFamily = Family<Labels, Counter>;

/// Histograms whose buckets were counted elsewhere (the engine's atomics), one per label set;
/// `prometheus_client`'s own `Histogram` can only be fed observations.
#[derive(Debug, Default)]
struct HistogramSeries(Vec<(Labels, HistogramSnapshot)>);

impl EncodeMetric for HistogramSeries {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, h) in &self.0 {
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A family registered under `name`, returned for filling in.
pub(crate) fn gauge(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
) -> GaugeFamily {
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

/// Owned label pairs.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sets the series `labels` of `family` to `value`.
pub(crate) fn set(family: &GaugeFamily, labels: &Labels, value: f64) {
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
    let topic_appended = counter(
        &mut r,
        "topic_appended",
        "Bytes written to the topic's segment files (records and headers) since start",
        Some(Unit::Bytes),
    );
    let topic_segments = gauge(
        &mut r,
        "topic_segments",
        "Segment files the topic's log holds",
        None,
    );
    let topic_fsyncs = counter(
        &mut r,
        "topic_fsyncs",
        "Fsyncs that made messages durable since start",
        None,
    );
    let topic_fsynced = counter(
        &mut r,
        "topic_fsynced_messages",
        "Messages made durable by those fsyncs (divided by nsq_topic_fsyncs_total: messages per fsync)",
        None,
    );
    let mut fsync_latency = HistogramSeries::default();
    let mut fsync_batch = HistogramSeries::default();
    for t in snapshot.topics.as_deref().unwrap_or_default() {
        if exclude_ephemeral && t.topic_name.ends_with(EPHEMERAL) {
            continue;
        }
        let tl = labels(&[("topic", &t.topic_name)]);
        if let Some(log) = nsqd
            .engine
            .topic(&t.topic_name)
            .and_then(|t| t.log_metrics())
        {
            count(&topic_appended, &tl, log.bytes_appended);
            set(&topic_segments, &tl, log.segments as f64);
            count(&topic_fsyncs, &tl, log.syncs.fsyncs);
            count(&topic_fsynced, &tl, log.syncs.messages);
            fsync_latency.0.push((tl.clone(), log.syncs.latency));
            fsync_batch.0.push((tl.clone(), log.syncs.batch));
        }
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
    r.register_with_unit(
        "topic_fsync_duration",
        "How long each fsync of the topic's log took",
        Unit::Seconds,
        fsync_latency,
    );
    r.register(
        "topic_fsync_batch_messages",
        "Messages each fsync made durable (group commit)",
        fsync_batch,
    );
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
