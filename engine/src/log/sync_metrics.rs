//! What a log's fsyncs cost and cover: counts plus two fixed-bucket histograms (fsync
//! latency, messages made durable per fsync). Everything is an atomic, observed once per
//! fsync, so the append path takes no lock for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the fsync latency buckets, in seconds (an implicit `+Inf` follows).
pub const FSYNC_SECONDS_BOUNDS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Upper bounds of the messages-per-fsync buckets (an implicit `+Inf` follows).
pub const FSYNC_MESSAGES_BOUNDS: [f64; 14] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 16384.0,
];

/// A histogram's state at one moment: per-bucket (not cumulative) counts, the last one
/// being `+Inf`, as Prometheus text encoders take them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations in this bucket only)`; the last bound is `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// A fixed-bucket histogram of atomics. The sum is kept in integer units (`unit` per value)
/// so it can be an atomic add too.
#[derive(Debug)]
struct AtomicHistogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_units: AtomicU64,
    units_per_value: f64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64], units_per_value: f64) -> Self {
        AtomicHistogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_units: AtomicU64::new(0),
            units_per_value,
        }
    }

    fn observe(&self, value: f64, units: u64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&upper| value <= upper)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_units.fetch_add(units, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            sum: self.sum_units.load(Ordering::Relaxed) as f64 / self.units_per_value,
            buckets,
        }
    }
}

/// Fsync statistics of one log since it was opened.
#[derive(Debug)]
pub(super) struct SyncMetrics {
    fsyncs: AtomicU64,
    messages: AtomicU64,
    latency: AtomicHistogram,
    batch: AtomicHistogram,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        SyncMetrics {
            fsyncs: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            // Latency sums in nanoseconds, message sums in messages.
            latency: AtomicHistogram::new(&FSYNC_SECONDS_BOUNDS, 1e9),
            batch: AtomicHistogram::new(&FSYNC_MESSAGES_BOUNDS, 1.0),
        }
    }
}

impl SyncMetrics {
    /// Records one fsync that took `took` and made `messages` (at least one) durable.
    pub fn record(&self, took: Duration, messages: u64) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.latency.observe(took.as_secs_f64(), nanos);
        self.batch.observe(messages as f64, messages);
    }

    /// The counts and histograms as they are now.
    pub fn snapshot(&self) -> SyncCounts {
        SyncCounts {
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            latency: self.latency.snapshot(),
            batch: self.batch.snapshot(),
        }
    }
}

/// How many fsyncs a log made, how many messages they made durable, and how they were spread.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncCounts {
    /// Fsyncs of segment data that made at least one message durable.
    pub fsyncs: u64,
    /// Messages made durable by them.
    pub messages: u64,
    /// How long those fsyncs took, in seconds.
    pub latency: HistogramSnapshot,
    /// How many messages each of them made durable.
    pub batch: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets_and_sum_up() {
        let m = SyncMetrics::default();
        m.record(Duration::from_micros(40), 1);
        m.record(Duration::from_millis(3), 200);
        m.record(Duration::from_secs(2), 20_000);
        let s = m.snapshot();
        assert_eq!((s.fsyncs, s.messages), (3, 20_201));
        assert_eq!(s.latency.count, 3);
        assert_eq!(s.latency.buckets[0], (0.000_05, 1));
        assert_eq!(s.latency.buckets[6], (0.005, 1));
        assert_eq!(s.latency.buckets[14], (f64::INFINITY, 1));
        assert!((s.latency.sum - 2.003_04).abs() < 1e-9);
        assert_eq!(s.batch.buckets[0], (1.0, 1));
        assert_eq!(s.batch.buckets[8], (256.0, 1));
        assert_eq!(s.batch.buckets[14], (f64::INFINITY, 1));
        assert_eq!(s.batch.sum, 20_201.0);
    }
}
