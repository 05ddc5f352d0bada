//! `--status-every`: request timings logged as NSQ's tools log them (bitly/timer_metrics):
//! `[aggregate]: finished 250 - 99th: 3.10ms - 95th: 2.20ms - avg: 1.05ms`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A window of the last `status_every` request durations, logged each time it fills anew.
#[derive(Debug)]
pub struct TimerMetrics {
    prefix: String,
    status_every: usize,
    window: Mutex<(usize, Vec<Duration>)>,
}

impl TimerMetrics {
    /// Logs every `status_every` requests (0: never) with `prefix`.
    pub fn new(status_every: usize, prefix: &str) -> TimerMetrics {
        TimerMetrics {
            prefix: prefix.to_string(),
            status_every,
            window: Mutex::new((0, Vec::with_capacity(status_every))),
        }
    }

    /// Records a request that started at `start`; returns the status line when one is due
    /// (and logs it).
    pub fn status(&self, start: Instant) -> Option<String> {
        if self.status_every == 0 {
            return None;
        }
        let duration = start.elapsed();
        let line = {
            let mut guard = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let (position, timings) = &mut *guard;
            if timings.len() < self.status_every {
                timings.push(duration);
            } else {
                timings[*position] = duration;
            }
            *position = (*position + 1) % self.status_every;
            if *position != 0 {
                return None;
            }
            summary(&self.prefix, timings)
        };
        tracing::info!("{line}");
        Some(line)
    }
}

fn summary(prefix: &str, timings: &[Duration]) -> String {
    let mut sorted = timings.to_vec();
    sorted.sort();
    let total: Duration = sorted.iter().sum();
    let avg = total / (sorted.len().max(1) as u32);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{prefix} finished {} - 99th: {:.02}ms - 95th: {:.02}ms - avg: {:.02}ms",
        sorted.len(),
        ms(percentile(99.0, &sorted)),
        ms(percentile(95.0, &sorted)),
        ms(avg)
    )
}

/// timer_metrics' percentile index: `ceil(p/100 * n + 0.5)`, capped at the last.
fn percentile(percent: f64, sorted: &[Duration]) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((percent / 100.0) * sorted.len() as f64 + 0.5).ceil() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_every_status_every_requests() {
        let metrics = TimerMetrics::new(3, "[aggregate]:");
        let start = Instant::now();
        assert!(metrics.status(start).is_none());
        assert!(metrics.status(start).is_none());
        let line = metrics.status(start).expect("third request logs");
        assert!(
            line.starts_with("[aggregate]: finished 3 - 99th: "),
            "{line}"
        );
        assert!(line.ends_with("ms"), "{line}");
        assert!(metrics.status(start).is_none());
        assert!(TimerMetrics::new(0, "x").status(start).is_none());
    }

    #[test]
    fn percentiles_pick_as_timer_metrics_does() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(95.0, &sorted), Duration::from_millis(97));
        assert_eq!(percentile(99.0, &sorted), Duration::from_millis(100));
    }
}
