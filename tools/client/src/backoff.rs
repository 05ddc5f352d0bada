//! How a consumer spreads `max_in_flight` over its connections (RDY), and go-nsq's
//! exponential backoff across the whole consumer while handlers fail: every failure raises
//! the level and pauses all connections (RDY 0) for `backoff_duration(level)`; then one
//! connection gets RDY 1 as a test; each success lowers the level (pausing again, shorter,
//! while it is above 0); at level 0 every connection is back to its full share.

use super::config::Config;
use std::time::Instant;

/// Where the consumer is in its backoff cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffState {
    /// Handlers succeed: full RDY everywhere.
    Normal,
    /// Paused until this instant: RDY 0 everywhere; outcomes arriving now are ignored.
    Paused(Instant),
    /// After a pause: one connection has RDY 1 to test whether handlers succeed again.
    Testing,
}

/// The backoff level and state machine plus RDY planning; pure, driven by the consumer.
#[derive(Debug)]
pub struct RdyPlanner {
    level: u32,
    state: BackoffState,
    rotation: usize,
}

impl Default for RdyPlanner {
    fn default() -> Self {
        RdyPlanner {
            level: 0,
            state: BackoffState::Normal,
            rotation: 0,
        }
    }
}

impl RdyPlanner {
    /// The current state.
    pub fn state(&self) -> BackoffState {
        self.state
    }

    /// Consecutive failures not yet paid back by successes.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// A handler succeeded (FIN). Returns whether RDY must be recomputed.
    pub fn on_success(&mut self, now: Instant, config: &Config) -> bool {
        if matches!(self.state, BackoffState::Paused(_)) || self.level == 0 {
            return false;
        }
        self.level -= 1;
        self.state = if self.level == 0 {
            BackoffState::Normal
        } else {
            BackoffState::Paused(now + config.backoff_duration(self.level))
        };
        true
    }

    /// A handler failed (REQ with backoff). Returns whether a new pause started.
    pub fn on_failure(&mut self, now: Instant, config: &Config) -> bool {
        if matches!(self.state, BackoffState::Paused(_)) || config.max_backoff_duration.is_zero() {
            return false;
        }
        // Stop raising once the pause is at its maximum, so recovery takes bounded steps.
        if config.backoff_duration(self.level + 1) > config.backoff_duration(self.level)
            || self.level == 0
        {
            self.level += 1;
        }
        self.state = BackoffState::Paused(now + config.backoff_duration(self.level));
        true
    }

    /// When the current pause ends, if paused.
    pub fn pause_deadline(&self) -> Option<Instant> {
        match self.state {
            BackoffState::Paused(until) => Some(until),
            _ => None,
        }
    }

    /// Ends a pause that is over: one connection will test with RDY 1.
    pub fn on_timer(&mut self, now: Instant) -> bool {
        match self.state {
            BackoffState::Paused(until) if until <= now => {
                self.state = BackoffState::Testing;
                self.rotation = self.rotation.wrapping_add(1);
                true
            }
            _ => false,
        }
    }

    /// Moves the RDY 1 slots on when there are fewer slots than connections.
    pub fn rotate(&mut self) {
        self.rotation = self.rotation.wrapping_add(1);
    }

    /// RDY for each of `limits.len()` connections (each capped by its `max_rdy_count`).
    /// `max_in_flight` 0 pauses them all.
    pub fn plan(&self, max_in_flight: u32, limits: &[i64]) -> Vec<i64> {
        let n = limits.len();
        let mut rdy = vec![0i64; n];
        if n == 0 || max_in_flight == 0 {
            return rdy;
        }
        match self.state {
            BackoffState::Paused(_) => {}
            BackoffState::Testing => rdy[self.rotation % n] = 1,
            BackoffState::Normal => {
                let total = i64::from(max_in_flight);
                if total >= n as i64 {
                    let (share, extra) = (total / n as i64, (total % n as i64) as usize);
                    for (i, r) in rdy.iter_mut().enumerate() {
                        *r = share + i64::from(i < extra);
                    }
                } else {
                    // Fewer slots than connections: RDY 1 on a window that rotates.
                    for k in 0..total as usize {
                        rdy[(self.rotation + k) % n] = 1;
                    }
                }
            }
        }
        for (r, &limit) in rdy.iter_mut().zip(limits) {
            *r = (*r).min(limit);
        }
        rdy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> Config {
        Config {
            backoff_multiplier: Duration::from_millis(100),
            max_backoff_duration: Duration::from_millis(400),
            ..Config::default()
        }
    }

    #[test]
    fn spreads_max_in_flight() {
        let p = RdyPlanner::default();
        assert_eq!(p.plan(10, &[2500, 2500, 2500]), vec![4, 3, 3]);
        assert_eq!(p.plan(10, &[2500, 2]), vec![5, 2]);
        assert_eq!(p.plan(1, &[2500, 2500, 2500]).iter().sum::<i64>(), 1);
        assert!(p.plan(5, &[]).is_empty());
        assert_eq!(p.plan(0, &[9, 9]), vec![0, 0]);
    }

    #[test]
    fn rotation_moves_single_slot() {
        let mut p = RdyPlanner::default();
        let first = p.plan(1, &[9, 9]);
        p.rotate();
        let second = p.plan(1, &[9, 9]);
        assert_ne!(first, second);
    }

    #[test]
    fn backoff_cycle() {
        let c = config();
        let t0 = Instant::now();
        let mut p = RdyPlanner::default();
        assert!(p.on_failure(t0, &c));
        assert_eq!(p.level(), 1);
        assert_eq!(p.plan(4, &[9, 9]), vec![0, 0]);
        // Outcomes during a pause are ignored.
        assert!(!p.on_failure(t0, &c));
        assert!(!p.on_success(t0, &c));
        assert!(!p.on_timer(t0));
        assert!(p.on_timer(t0 + Duration::from_millis(100)));
        assert_eq!(p.plan(4, &[9, 9]).iter().sum::<i64>(), 1);
        // The test fails: longer pause.
        assert!(p.on_failure(t0, &c));
        assert_eq!(p.level(), 2);
        assert_eq!(p.pause_deadline(), Some(t0 + Duration::from_millis(200)));
        p.on_timer(t0 + Duration::from_secs(1));
        // Two successes bring it back to normal, with a shorter pause between.
        assert!(p.on_success(t0, &c));
        assert_eq!(
            p.state(),
            BackoffState::Paused(t0 + Duration::from_millis(100))
        );
        p.on_timer(t0 + Duration::from_secs(1));
        assert!(p.on_success(t0, &c));
        assert_eq!(p.state(), BackoffState::Normal);
        assert_eq!(p.plan(4, &[9, 9]), vec![2, 2]);
    }

    #[test]
    fn level_stops_at_max_pause() {
        let c = config();
        let t0 = Instant::now();
        let mut p = RdyPlanner::default();
        for _ in 0..10 {
            p.on_failure(t0, &c);
            p.on_timer(t0 + Duration::from_secs(10));
        }
        assert_eq!(p.level(), 3);
    }
}
