//! `--statsd-address`: every `--statsd-interval`, push the `/stats` numbers to a statsd
//! daemon over UDP under NSQ's names and types (counters of the change since the last push
//! for `message_count`, `message_bytes`, `requeue_count`, `timeout_count`; gauges for the
//! rest), several newline-terminated metrics per datagram up to `--statsd-udp-packet-size`.

use super::context::Nsqd;
use super::options::StatsdOptions;
use super::stats::{self, Stats, StatsQuery, TopicStatsJson};
use cadence::{BufferedUdpMetricSink, Counted, Gauged, MetricError, StatsdClient};
use std::net::UdpSocket;
use std::sync::Arc;
use tokio::sync::watch;

const EPHEMERAL: &str = "#ephemeral";

/// NSQ's key for a host: `host:port` with `.` and `:` as `_`.
pub fn host_key(host: &str, port: u16) -> String {
    let joined = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    joined.replace(['.', ':'], "_")
}

/// The prefix with `%s` replaced by the host key of the broadcast address and HTTP port.
pub fn expand_prefix(prefix: &str, broadcast_address: &str, http_port: u16) -> String {
    prefix.replace("%s", &host_key(broadcast_address, http_port))
}

/// The numbers of the previous push, for the counters' deltas.
#[derive(Debug, Default)]
struct Previous {
    stats: Option<Stats>,
}

impl Previous {
    fn topic(&self, name: &str) -> Option<&TopicStatsJson> {
        self.stats
            .as_ref()
            .and_then(|s| s.topics.as_deref())
            .and_then(|ts| ts.iter().find(|t| t.topic_name == name))
    }
}

/// The change of a counter since the last push (a counter that went down, after a channel
/// was emptied or re-created, counts from zero, as NSQ's unsigned subtraction cannot).
fn delta(now: u64, before: u64) -> i64 {
    i64::try_from(now.checked_sub(before).unwrap_or(now)).unwrap_or(i64::MAX)
}

/// Writes one push's metrics to `client`, in NSQ's order.
fn write_metrics(
    client: &StatsdClient,
    stats: &Stats,
    previous: &Previous,
    opts: &StatsdOptions,
) -> Result<(), MetricError> {
    for topic in stats.topics.as_deref().unwrap_or_default() {
        if opts.exclude_ephemeral && topic.topic_name.ends_with(EPHEMERAL) {
            continue;
        }
        let last = previous.topic(&topic.topic_name);
        let t = format!("topic.{}", topic.topic_name);
        client.count(
            &format!("{t}.message_count"),
            delta(topic.message_count, last.map_or(0, |l| l.message_count)),
        )?;
        client.count(
            &format!("{t}.message_bytes"),
            delta(topic.message_bytes, last.map_or(0, |l| l.message_bytes)),
        )?;
        client.gauge(&format!("{t}.depth"), topic.depth)?;
        client.gauge(&format!("{t}.backend_depth"), topic.backend_depth)?;
        for p in topic.e2e_processing_latency.percentiles.iter().flatten() {
            client.gauge(
                &format!("{t}.e2e_processing_latency_{:.0}", p.quantile * 100.0),
                p.value,
            )?;
        }
        for channel in &topic.channels {
            if opts.exclude_ephemeral && channel.channel_name.ends_with(EPHEMERAL) {
                continue;
            }
            let last = last.and_then(|l| {
                l.channels
                    .iter()
                    .find(|c| c.channel_name == channel.channel_name)
            });
            let c = format!("{t}.channel.{}", channel.channel_name);
            client.count(
                &format!("{c}.message_count"),
                delta(channel.message_count, last.map_or(0, |l| l.message_count)),
            )?;
            client.gauge(&format!("{c}.depth"), channel.depth)?;
            client.gauge(&format!("{c}.backend_depth"), channel.backend_depth)?;
            client.gauge(&format!("{c}.in_flight_count"), channel.in_flight_count)?;
            client.gauge(&format!("{c}.deferred_count"), channel.deferred_count)?;
            client.count(
                &format!("{c}.requeue_count"),
                delta(channel.requeue_count, last.map_or(0, |l| l.requeue_count)),
            )?;
            client.count(
                &format!("{c}.timeout_count"),
                delta(channel.timeout_count, last.map_or(0, |l| l.timeout_count)),
            )?;
            client.gauge(&format!("{c}.clients"), channel.client_count as u64)?;
            for p in channel.e2e_processing_latency.percentiles.iter().flatten() {
                client.gauge(
                    &format!("{c}.e2e_processing_latency_{:.0}", p.quantile * 100.0),
                    p.value,
                )?;
            }
        }
    }
    if opts.mem_stats {
        // The `/stats` memory block: our resident set size as the heap in use, Go-only
        // figures as 0 (see stats::Memory).
        let mem = [
            ("heap_objects", 0),
            ("heap_idle_bytes", 0),
            ("heap_in_use_bytes", stats::rss_bytes()),
            ("heap_released_bytes", 0),
            ("gc_pause_usec_100", 0),
            ("gc_pause_usec_99", 0),
            ("gc_pause_usec_95", 0),
            ("next_gc_bytes", 0),
        ];
        for (name, value) in mem {
            client.gauge(&format!("mem.{name}"), value)?;
        }
        client.count("mem.gc_runs", 0)?;
    }
    Ok(())
}

/// One push: a fresh socket per push as NSQ dials per interval, so a statsd daemon that
/// moves (DNS) is followed.
fn push(
    nsqd: &Nsqd,
    opts: &StatsdOptions,
    prefix: &str,
    previous: &mut Previous,
) -> Result<(), MetricError> {
    let socket = UdpSocket::bind(if opts.address.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })?;
    let sink =
        BufferedUdpMetricSink::with_capacity(opts.address.as_str(), socket, opts.udp_packet_size)?;
    let client = StatsdClient::from_sink(prefix, sink);
    let stats = stats::collect(nsqd, &StatsQuery::default());
    let written = write_metrics(&client, &stats, previous, opts);
    // Counters are deltas: remember what was sent even if a datagram failed.
    previous.stats = Some(stats);
    written?;
    client.flush()
}

/// Pushes every interval until `stop`.
pub async fn run(
    nsqd: Arc<Nsqd>,
    opts: StatsdOptions,
    prefix: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + opts.interval, opts.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous = Previous::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        tracing::info!("STATSD: pushing stats to {}", opts.address);
        // Collecting reads message timestamps from the log: keep it off the async workers.
        let result = tokio::task::block_in_place(|| push(&nsqd, &opts, &prefix, &mut previous));
        if let Err(e) = result {
            tracing::error!("STATSD: failed to push to {} - {e}", opts.address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_like_nsq() {
        assert_eq!(
            expand_prefix("nsq.%s", "127.0.0.1", 4151),
            "nsq.127_0_0_1_4151"
        );
        assert_eq!(expand_prefix("x", "host", 1), "x");
        assert_eq!(host_key("::1", 4151), "[__1]_4151");
    }

    #[test]
    fn counters_are_deltas() {
        assert_eq!(delta(7, 5), 2);
        assert_eq!(delta(3, 5), 3, "a counter that restarted counts from zero");
    }
}
