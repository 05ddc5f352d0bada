//! The state one nsqd process shares between its TCP connections, its HTTP API and its
//! housekeeping: the engine, the options, the connected clients, and per-topic wake-ups.

use super::clients::ClientRegistry;
use super::e2e::E2eTracker;
use super::options::NsqdOptions;
use nsq_engine::{Appended, Engine, Error as EngineError, Topic};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The topic name is not valid.
    #[error("invalid topic name {0:?}")]
    BadTopic(String),
    /// nsqd is shutting down.
    #[error("exiting")]
    Exiting,
    /// The engine could not append (disk full, failed fsync, ...).
    #[error("{0}")]
    Engine(#[from] EngineError),
}

/// Shared nsqd state.
#[derive(Debug)]
pub struct Nsqd {
    /// The storage engine.
    pub engine: Arc<Engine>,
    /// Resolved options.
    pub opts: NsqdOptions,
    /// Lookupd addresses (changeable at runtime through `/config`).
    pub lookupd_addresses: RwLock<Vec<String>>,
    /// Process start, Unix seconds.
    pub start_time: i64,
    /// Connected TCP clients.
    pub clients: ClientRegistry,
    /// End-to-end latency windows, with `--e2e-processing-latency-percentile`.
    pub e2e: Option<E2eTracker>,
    notifiers: Mutex<HashMap<String, Arc<Notify>>>,
    exiting: AtomicBool,
    /// Last publish failure, reported by `/ping` and `/stats` until a publish succeeds.
    health: RwLock<Option<String>>,
}

impl Nsqd {
    /// New shared state over an open engine.
    pub fn new(engine: Arc<Engine>, opts: NsqdOptions) -> Self {
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let e2e = opts.e2e.clone().map(E2eTracker::new);
        Nsqd {
            engine,
            lookupd_addresses: RwLock::new(opts.lookupd_tcp_addresses.clone()),
            opts,
            start_time,
            clients: ClientRegistry::default(),
            e2e,
            notifiers: Mutex::new(HashMap::new()),
            exiting: AtomicBool::new(false),
            health: RwLock::new(None),
        }
    }

    /// The wake-up a topic's subscribers wait on for new or newly ready messages.
    pub fn notifier(&self, topic: &str) -> Arc<Notify> {
        let mut map = self.notifiers.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(topic.to_string()).or_default().clone()
    }

    /// Wakes every subscriber of `topic`.
    pub fn wake(&self, topic: &str) {
        let notify = self
            .notifiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .cloned();
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }

    /// Wakes every subscriber of every topic (after timeouts, unpause, rewind).
    pub fn wake_all(&self) {
        let all: Vec<Arc<Notify>> = self
            .notifiers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for n in all {
            n.notify_waiters();
        }
    }

    /// Marks nsqd as shutting down: publishes are refused with `EXITING`.
    pub fn set_exiting(&self) {
        self.exiting.store(true, Ordering::SeqCst);
    }

    /// Whether nsqd is shutting down.
    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::SeqCst)
    }

    /// `None` when healthy, else the last publish failure.
    pub fn health(&self) -> Option<String> {
        self.health
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_health(&self, problem: Option<String>) {
        // Called on every publish: a shared read decides, the write lock only on a change.
        if *self.health.read().unwrap_or_else(|e| e.into_inner()) == problem {
            return;
        }
        *self.health.write().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    /// Returns the topic, creating it if needed.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, PublishError> {
        match self.engine.create_topic(name) {
            Ok(t) => Ok(t),
            Err(EngineError::InvalidName(n)) => Err(PublishError::BadTopic(n)),
            Err(e) => Err(PublishError::Engine(e)),
        }
    }

    /// Publishes a batch to `topic` (created if needed) and wakes its subscribers. Returns once
    /// the batch is in the log (and fsynced, with `--sync-every 1`).
    pub async fn publish<B: AsRef<[u8]>>(
        &self,
        topic: &str,
        bodies: &[B],
        deliver_at: i64,
    ) -> Result<Appended, PublishError> {
        if self.is_exiting() {
            return Err(PublishError::Exiting);
        }
        let t = self.topic(topic)?;
        // An fsync blocks for a while: keep it off the async workers' backs.
        let result = if self.opts.sync_every == 1 {
            tokio::task::block_in_place(|| t.publish(bodies, deliver_at))
        } else {
            t.publish(bodies, deliver_at)
        };
        match result {
            Ok(appended) => {
                self.set_health(None);
                self.wake(topic);
                Ok(appended)
            }
            Err(e) => {
                tracing::error!(topic, error = %e, "publish failed");
                self.set_health(Some(e.to_string()));
                Err(PublishError::Engine(e))
            }
        }
    }
}
