//! End-to-end processing latency (`--e2e-processing-latency-percentile`): per channel, the
//! quantiles of FIN time − publish time over a sliding window, as NSQ reports them in
//! `/stats` and statsd.
//!
//! Like NSQ, a window is two halves: samples go into the current half, queries merge both,
//! and every `window / 2` the older half is dropped. Each half is an HDR histogram, so memory
//! is bounded whatever the rate. Connections batch their samples ([`Recorder`]) and hand
//! them over once per read, so a FIN costs no extra lock.

use super::options::E2eOptions;
use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Highest latency told apart (a week, in ns); longer waits count as a week.
const MAX_TRACKED_NS: u64 = 7 * 24 * 3600 * 1_000_000_000;
/// Two significant digits: 1% resolution, a few tens of KiB per histogram.
const SIGNIFICANT_DIGITS: u8 = 2;
/// A connection hands over its samples at least this often under steady load.
const BATCH: usize = 256;

/// `e2e_processing_latency` in `/stats`: NSQ's `{count, percentiles}`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyJson {
    /// Samples in the window.
    pub count: u64,
    /// `null` when percentiles are off (or, at topic level, when there is no channel).
    pub percentiles: Option<Vec<Percentile>>,
}

/// One `{quantile, value}` pair; value in nanoseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentile {
    /// In (0, 1]; written like Go writes a float64 (`1`, `0.99`).
    #[serde(serialize_with = "go_float")]
    pub quantile: f64,
    /// Nanoseconds.
    pub value: u64,
}

/// Go's JSON encoding of a float64 prints integral values without a fraction.
fn go_float<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        s.serialize_i64(*value as i64)
    } else {
        s.serialize_f64(*value)
    }
}

impl LatencyJson {
    /// NSQ's `format=text` rendering: each value in its largest unit, one decimal.
    pub fn text(&self) -> String {
        self.percentiles
            .iter()
            .flatten()
            .map(|p| nanos_to_human(p.value as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// NSQ's `stringy.NanoSecondToHuman`.
fn nanos_to_human(v: f64) -> String {
    let (v, unit) = if v > 1e9 {
        (v / 1e9, "s")
    } else if v > 1e6 {
        (v / 1e6, "ms")
    } else if v > 1e3 {
        (v / 1e3, "us")
    } else {
        (v, "ns")
    };
    format!("{v:.1}{unit}")
}

fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; failing here would be a bug.
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, SIGNIFICANT_DIGITS)
        .expect("valid histogram bounds")
}

/// One channel's sliding window.
#[derive(Debug)]
struct Window {
    halves: [Histogram<u64>; 2],
    current: usize,
    moved_at: Instant,
}

impl Window {
    /// Drops halves older than the window.
    fn slide(&mut self, now: Instant, half: Duration) {
        let mut moves = 0;
        while now.duration_since(self.moved_at) >= half && moves < 2 {
            self.current ^= 1;
            self.halves[self.current].reset();
            self.moved_at += half;
            moves += 1;
        }
        if now.duration_since(self.moved_at) >= half {
            // Idle for more than a window: both halves are empty now; restart the clock.
            self.moved_at = now;
        }
    }
}

/// The latency window of one channel.
#[derive(Debug)]
pub struct ChannelLatency {
    half: Duration,
    window: Mutex<Window>,
}

impl ChannelLatency {
    fn new(window: Duration) -> Self {
        ChannelLatency {
            half: (window / 2).max(Duration::from_millis(1)),
            window: Mutex::new(Window {
                halves: [new_histogram(), new_histogram()],
                current: 0,
                moved_at: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds latencies in nanoseconds.
    pub fn record(&self, samples: &[u64]) {
        let mut w = self.lock();
        w.slide(Instant::now(), self.half);
        let current = w.current;
        for &ns in samples {
            w.halves[current].saturating_record(ns.clamp(1, MAX_TRACKED_NS));
        }
    }

    /// Adds this channel's window to `into`.
    fn merge_into(&self, into: &mut Histogram<u64>) {
        let mut w = self.lock();
        w.slide(Instant::now(), self.half);
        for half in &w.halves {
            // Same bounds on both sides, so adding cannot fail.
            let _ = into.add(half);
        }
    }
}

/// Every channel's latency window, created as channels are subscribed to.
#[derive(Debug)]
pub struct E2eTracker {
    opts: E2eOptions,
    channels: Mutex<HashMap<(String, String), Arc<ChannelLatency>>>,
}

impl E2eTracker {
    /// A tracker for the configured percentiles and window.
    pub fn new(opts: E2eOptions) -> Self {
        E2eTracker {
            opts,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The window of `topic/channel`, created empty if needed.
    pub fn channel(&self, topic: &str, channel: &str) -> Arc<ChannelLatency> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.entry((topic.to_string(), channel.to_string()))
            .or_insert_with(|| Arc::new(ChannelLatency::new(self.opts.window)))
            .clone()
    }

    /// Forgets channels that no longer exist (a re-created channel starts empty, as in NSQ).
    pub fn retain(&self, exists: impl Fn(&str, &str) -> bool) {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(t, c), _| exists(t, c));
    }

    fn result(&self, histogram: &Histogram<u64>) -> LatencyJson {
        LatencyJson {
            count: histogram.len(),
            percentiles: Some(
                self.opts
                    .percentiles
                    .iter()
                    .map(|&quantile| Percentile {
                        quantile,
                        value: if histogram.is_empty() {
                            0
                        } else {
                            histogram.value_at_quantile(quantile)
                        },
                    })
                    .collect(),
            ),
        }
    }

    /// The `/stats` block of one channel.
    pub fn channel_result(&self, topic: &str, channel: &str) -> LatencyJson {
        let mut merged = new_histogram();
        self.channel(topic, channel).merge_into(&mut merged);
        self.result(&merged)
    }

    /// The `/stats` block of a topic: its channels' windows together (`null` percentiles
    /// when it has no channel, as NSQ).
    pub fn topic_result<'a>(
        &self,
        topic: &str,
        channels: impl IntoIterator<Item = &'a str>,
    ) -> LatencyJson {
        let mut merged = new_histogram();
        let mut any = false;
        for channel in channels {
            any = true;
            self.channel(topic, channel).merge_into(&mut merged);
        }
        if !any {
            return LatencyJson::default();
        }
        self.result(&merged)
    }
}

/// A connection's pending samples for the channel it is subscribed to.
#[derive(Debug)]
pub struct Recorder {
    channel: Arc<ChannelLatency>,
    pending: Vec<u64>,
}

impl Recorder {
    /// Records for `channel`.
    pub fn new(channel: Arc<ChannelLatency>) -> Self {
        Recorder {
            channel,
            pending: Vec::with_capacity(BATCH),
        }
    }

    /// Notes one finished message; `now` and `published` in Unix ns.
    pub fn finished(&mut self, now: i64, published: i64) {
        self.pending
            .push(u64::try_from(now.saturating_sub(published)).unwrap_or(0));
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }

    /// Hands the pending samples to the channel.
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.channel.record(&self.pending);
            self.pending.clear();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(window: Duration) -> E2eTracker {
        E2eTracker::new(E2eOptions {
            percentiles: vec![1.0, 0.5],
            window,
        })
    }

    #[test]
    fn quantiles_of_recorded_latencies() {
        let t = tracker(Duration::from_secs(600));
        let mut r = Recorder::new(t.channel("t", "c"));
        for ms in 1..=100 {
            r.finished(ms * 1_000_000, 0);
        }
        drop(r);
        let res = t.channel_result("t", "c");
        assert_eq!(res.count, 100);
        let p = res.percentiles.expect("percentiles");
        let within = |v: u64, want: u64| v.abs_diff(want) * 100 <= want;
        assert!(within(p[0].value, 100_000_000), "max {}", p[0].value);
        assert!(within(p[1].value, 50_000_000), "median {}", p[1].value);
        let topic = t.topic_result("t", ["c", "other"]);
        assert_eq!(topic.count, 100, "topic merges its channels");
        assert_eq!(t.topic_result("t", []), LatencyJson::default());
    }

    #[test]
    fn old_samples_leave_the_window() {
        let t = tracker(Duration::from_millis(40));
        t.channel("t", "c").record(&[5]);
        assert_eq!(t.channel_result("t", "c").count, 1);
        std::thread::sleep(Duration::from_millis(90));
        assert_eq!(t.channel_result("t", "c").count, 0);
    }

    #[test]
    fn json_and_text_like_nsq() {
        let l = LatencyJson {
            count: 3,
            percentiles: Some(vec![
                Percentile {
                    quantile: 1.0,
                    value: 1_137_681_252,
                },
                Percentile {
                    quantile: 0.99,
                    value: 2_500,
                },
            ]),
        };
        assert_eq!(
            serde_json::to_string(&l).expect("json"),
            r#"{"count":3,"percentiles":[{"quantile":1,"value":1137681252},{"quantile":0.99,"value":2500}]}"#
        );
        assert_eq!(l.text(), "1.1s, 2.5us");
        assert_eq!(
            serde_json::to_string(&LatencyJson::default()).expect("json"),
            r#"{"count":0,"percentiles":null}"#
        );
    }
}
