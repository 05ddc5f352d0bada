//! What a run measured, and the table a person reads.

use super::histogram::Histogram;
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
    /// Connections opened and closed (`connect` mode).
    pub connections: u64,
    /// Body size.
    pub size: usize,
    /// Publish round trips (one per PUB or MPUB); in `connect` mode, connection setups.
    pub ack_latency: Histogram,
    /// Receive time minus publish timestamp, per message consumed.
    pub end_to_end: Histogram,
}

impl Report {
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn latency_line(f: &mut fmt::Formatter<'_>, what: &str, h: &Histogram) -> fmt::Result {
    let (Some(p50), Some(p99), Some(p999)) =
        (h.percentile(0.5), h.percentile(0.99), h.percentile(0.999))
    else {
        return Ok(());
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    writeln!(
        f,
        "{what:<26} p50 {:>9.3} ms  p99 {:>9.3} ms  p99.9 {:>9.3} ms  max {:>9.3} ms",
        ms(p50),
        ms(p99),
        ms(p999),
        ms(h.max())
    )
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
        if self.connections > 0 {
            writeln!(
                f,
                "{:<10} {:>12} {:>14.0}   (connections/s)",
                "connected",
                self.connections,
                self.rate(self.connections)
            )?;
            latency_line(f, "connection setup", &self.ack_latency)?;
            return write!(f, "over {:.2?}", self.elapsed);
        }
        latency_line(f, "publish ack latency", &self.ack_latency)?;
        latency_line(f, "end-to-end latency", &self.end_to_end)?;
        write!(f, "over {:.2?}", self.elapsed)
    }
}
