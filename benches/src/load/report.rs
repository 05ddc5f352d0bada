//! What a run measured, and the table a person reads.

use std::fmt;
use std::time::Duration;

/// The figures of one run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Wall time of the measured phase.
    pub elapsed: Duration,
    /// Messages acknowledged by nsqd.
    pub published: u64,
    /// Messages received (and FIN'd) by the consumers.
    pub consumed: u64,
    /// Body size.
    pub size: usize,
    /// Publish round trips (one per PUB or MPUB), sorted, for percentiles.
    pub ack_latencies: Vec<Duration>,
}

impl Report {
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile(&self, p: f64) -> Option<Duration> {
        if self.ack_latencies.is_empty() {
            return None;
        }
        let i = ((self.ack_latencies.len() - 1) as f64 * p).round() as usize;
        self.ack_latencies.get(i).copied()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |n: u64| self.rate(n) * self.size as f64 / 1e6;
        writeln!(
            f,
            "{:<10} {:>12} {:>14} {:>10}",
            "", "messages", "msgs/s", "MB/s"
        )?;
        writeln!(
            f,
            "{:<10} {:>12} {:>14.0} {:>10.1}",
            "published",
            self.published,
            self.rate(self.published),
            mb(self.published)
        )?;
        writeln!(
            f,
            "{:<10} {:>12} {:>14.0} {:>10.1}",
            "consumed",
            self.consumed,
            self.rate(self.consumed),
            mb(self.consumed)
        )?;
        if let (Some(p50), Some(p99), Some(max)) = (
            self.percentile(0.5),
            self.percentile(0.99),
            self.ack_latencies.last(),
        ) {
            writeln!(
                f,
                "publish acknowledgement latency: p50 {p50:?}  p99 {p99:?}  max {max:?}"
            )?;
        }
        write!(f, "over {:.2?}", self.elapsed)
    }
}
