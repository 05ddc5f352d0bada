//! A fixed-size latency histogram: 64 linear sub-buckets per power of two of nanoseconds, so
//! any percentile is within about 1.6 % of the truth whatever the number of samples.

use std::time::Duration;

const SUB: usize = 64;
const POWERS: usize = 64;

/// Counts of durations.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; SUB * POWERS],
            total: 0,
            max: 0,
        }
    }
}

fn bucket(nanos: u64) -> usize {
    if nanos < SUB as u64 {
        return nanos as usize;
    }
    let power = 63 - nanos.leading_zeros() as usize; // >= 6
    let shift = power - 6;
    let sub = ((nanos >> shift) as usize) - SUB; // 0..64
    (power - 5) * SUB + sub
}

fn lower_bound(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let power = index / SUB + 5;
    let sub = (index % SUB + SUB) as u64;
    sub << (power - 6)
}

impl Histogram {
    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = bucket(nanos).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The `p` quantile (0..=1), `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(lower_bound(i).min(self.max)));
            }
        }
        Some(Duration::from_nanos(self.max))
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_close() {
        let mut h = Histogram::default();
        for micros in 1..=10_000u64 {
            h.record(Duration::from_micros(micros));
        }
        for (p, want) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.999, 9_990.0)] {
            let got = h.percentile(p).expect("samples").as_secs_f64() * 1e6;
            assert!((got - want).abs() / want < 0.02, "p{p}: {got} vs {want}");
        }
        assert_eq!(h.max(), Duration::from_micros(10_000));
        assert_eq!(h.len(), 10_000);
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for n in (0..1_000_000u64).step_by(7) {
            let b = bucket(n);
            assert!(b >= last);
            assert!(lower_bound(b) <= n);
            last = b;
        }
    }
}
