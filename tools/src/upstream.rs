//! How `nsq_to_http` and `nsq_to_nsq` pick a destination for each message (`--mode`), with
//! go-hostpool's rules for hosts that fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `--mode`: which destination gets a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each destination in turn.
    RoundRobin,
    /// In turn among the healthy destinations; a failing one rests (go-hostpool).
    /// NSQ's `epsilon-greedy` is accepted as this too (it does not weigh response times).
    HostPool,
    /// Every destination, one after another (`nsq_to_http` only; deprecated in NSQ).
    Multicast,
}

impl Mode {
    /// Parses NSQ's mode names; `multicast` only where `allow_multicast`.
    pub fn parse(name: &str, allow_multicast: bool) -> Result<Mode, String> {
        match name {
            "round-robin" => Ok(Mode::RoundRobin),
            "hostpool" | "epsilon-greedy" => Ok(Mode::HostPool),
            "multicast" if allow_multicast => Ok(Mode::Multicast),
            _ => {
                let extra = if allow_multicast { ", multicast" } else { "" };
                Err(format!(
                    "invalid --mode {name:?} (round-robin, hostpool, epsilon-greedy{extra})"
                ))
            }
        }
    }
}

/// go-hostpool's delays: a failed host rests 30 s, doubling on each failed retry, up to 15 min.
const INITIAL_RETRY_DELAY: Duration = Duration::from_secs(30);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(900);

#[derive(Debug, Clone)]
struct Host {
    dead: bool,
    retry_delay: Duration,
    next_retry: Instant,
}

/// Picks destinations by index for a [`Mode`] and learns which ones fail.
#[derive(Debug)]
pub struct Picker {
    mode: Mode,
    count: usize,
    counter: AtomicUsize,
    pool: Mutex<(usize, Vec<Host>)>,
}

impl Picker {
    /// A picker over `count` destinations (at least one).
    pub fn new(mode: Mode, count: usize) -> Picker {
        let now = Instant::now();
        let host = Host {
            dead: false,
            retry_delay: INITIAL_RETRY_DELAY,
            next_retry: now,
        };
        Picker {
            mode,
            count: count.max(1),
            counter: AtomicUsize::new(0),
            pool: Mutex::new((0, vec![host; count.max(1)])),
        }
    }

    /// The destinations for the next message, in the order to try them.
    pub fn pick(&self) -> Vec<usize> {
        match self.mode {
            Mode::Multicast => (0..self.count).collect(),
            Mode::RoundRobin => vec![self.counter.fetch_add(1, Ordering::Relaxed) % self.count],
            Mode::HostPool => vec![self.pick_live(Instant::now())],
        }
    }

    /// Reports how a request to destination `index` went (host pool mode learns from it).
    pub fn mark(&self, index: usize, ok: bool) {
        if self.mode != Mode::HostPool {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let Some(host) = pool.1.get_mut(index) else {
            return;
        };
        if ok {
            host.dead = false;
        } else if !host.dead {
            host.dead = true;
            host.retry_delay = INITIAL_RETRY_DELAY;
            host.next_retry = Instant::now() + INITIAL_RETRY_DELAY;
        }
    }

    /// go-hostpool's round robin over live hosts: a dead host whose rest is over gets one
    /// try (and a longer rest if it fails again); when all are dead, all are revived.
    fn pick_live(&self, now: Instant) -> usize {
        let mut guard = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let (next, hosts) = &mut *guard;
        let count = hosts.len();
        for i in 0..count {
            let index = (i + *next) % count;
            let host = &mut hosts[index];
            if !host.dead {
                *next = index + 1;
                return index;
            }
            if host.next_retry <= now {
                host.retry_delay = (host.retry_delay * 2).min(MAX_RETRY_DELAY);
                host.next_retry = now + host.retry_delay;
                *next = index + 1;
                return index;
            }
        }
        for host in hosts.iter_mut() {
            host.dead = false;
        }
        *next = 1;
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_nsq_names_them() {
        assert_eq!(Mode::parse("hostpool", false), Ok(Mode::HostPool));
        assert_eq!(Mode::parse("epsilon-greedy", false), Ok(Mode::HostPool));
        assert_eq!(Mode::parse("round-robin", false), Ok(Mode::RoundRobin));
        assert_eq!(Mode::parse("multicast", true), Ok(Mode::Multicast));
        assert!(Mode::parse("multicast", false).is_err());
        assert!(Mode::parse("bogus", true).is_err());
    }

    #[test]
    fn round_robin_and_multicast() {
        let rr = Picker::new(Mode::RoundRobin, 3);
        let picks: Vec<usize> = (0..6).flat_map(|_| rr.pick()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(Picker::new(Mode::Multicast, 3).pick(), [0, 1, 2]);
    }

    #[test]
    fn host_pool_rests_a_failed_host_and_revives_all_when_all_failed() {
        let pool = Picker::new(Mode::HostPool, 2);
        assert_eq!(pool.pick(), [0]);
        pool.mark(0, false);
        assert_eq!(pool.pick(), [1]);
        assert_eq!(pool.pick(), [1]);
        pool.mark(1, false);
        // Both resting: both revived, starting over at the first.
        assert_eq!(pool.pick(), [0]);
        assert_eq!(pool.pick(), [1]);
        pool.mark(1, true);
        assert_eq!(pool.pick(), [0]);
    }
}
