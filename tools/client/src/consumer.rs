//! `Consumer`: subscribes to a topic/channel on every nsqd it is given or discovers, runs a
//! handler per message, and keeps RDY, backoff and discovery going in background tasks.

use super::backoff::RdyPlanner;
use super::config::Config;
use super::error::{Error, Result};
use super::http::HttpClient;
use super::lookup::lookup_producers;
use super::message::{InFlight, Message, Outcome};
use super::session::{handle, run_connection};
use nsq_protocol::{is_valid_name, Command};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// What a handler returns: `Ok` finishes the message, `Err` requeues it and backs off.
pub type HandlerResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

type BoxedHandler =
    Arc<dyn Fn(Message) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync>;

/// Counters of a consumer since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Messages delivered (redeliveries included).
    pub received: u64,
    /// FINs sent (given-up messages included).
    pub finished: u64,
    /// REQs sent.
    pub requeued: u64,
    /// Messages finished unhandled after `max_attempts`.
    pub given_up: u64,
    /// Backoff pauses entered.
    pub backoffs: u64,
    /// Open connections.
    pub connections: usize,
}

/// Where a connection's address came from: direct ones are reconnected, discovered ones
/// live as long as lookupd lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Direct,
    Lookupd,
}

pub(crate) enum Event {
    Changed,
    Outcome(Outcome),
    Stop,
}

/// A message for the handler workers, with its TOUCH period.
pub(crate) type Dispatched = (Message, Option<Duration>);

/// One nsqd the consumer is connected (or connecting) to.
pub(crate) struct Entry {
    pub(crate) source: Source,
    /// The command queue once subscribed.
    pub(crate) tx: Option<mpsc::UnboundedSender<Command>>,
    pub(crate) max_rdy: i64,
    pub(crate) rdy: i64,
    /// Unanswered messages on the current connection.
    pub(crate) in_flight: Option<Arc<InFlight>>,
    /// Lookupd no longer lists it: closing.
    pub(crate) dropped: bool,
}

/// State shared by the consumer's tasks and its messages.
pub(crate) struct Shared {
    pub(crate) topic: String,
    pub(crate) channel: String,
    pub(crate) config: Config,
    pub(crate) handler: BoxedHandler,
    pub(crate) conns: Mutex<BTreeMap<String, Entry>>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    /// Messages for the handler workers, with their TOUCH period.
    pub(crate) dispatch: mpsc::UnboundedSender<Dispatched>,
    pub(crate) stop: watch::Sender<bool>,
    /// For lookupd polls: `dial_timeout` to connect, `http_timeout` per request.
    http: HttpClient,
    lookupds: Mutex<Vec<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    in_flight: AtomicUsize,
    /// `config.max_in_flight`, changeable at run time.
    max_in_flight: AtomicU32,
    received: AtomicU64,
    finished: AtomicU64,
    requeued: AtomicU64,
    given_up: AtomicU64,
    backoffs: AtomicU64,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub(crate) fn message_arrived(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message_given_up(&self) {
        self.given_up.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message_answered(&self, outcome: Outcome) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let counter = match outcome {
            Outcome::Success => &self.finished,
            _ => &self.requeued,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let _ = self.events.send(Event::Outcome(outcome));
    }

    /// Starts a connection task for `addr` unless one exists. With `first`, the first
    /// connect's result is reported there.
    pub(crate) fn ensure_connection(
        self: &Arc<Self>,
        addr: &str,
        source: Source,
        first: Option<oneshot::Sender<Result<()>>>,
    ) {
        if self.stopping() {
            return;
        }
        {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            if conns.contains_key(addr) {
                if let Some(first) = first {
                    let _ = first.send(Ok(()));
                }
                return;
            }
            conns.insert(
                addr.to_string(),
                Entry {
                    source,
                    tx: None,
                    max_rdy: 1,
                    rdy: 0,
                    in_flight: None,
                    dropped: false,
                },
            );
        }
        let task = tokio::spawn(run_connection(self.clone(), addr.to_string(), first));
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }
}

/// Consumes one topic/channel from any number of nsqd.
///
/// ```no_run
/// # async fn demo() -> Result<(), nsq_client::Error> {
/// use nsq_client::{Config, Consumer, Message};
/// let config = Config { max_in_flight: 10, ..Config::default() };
/// let consumer = Consumer::new("events", "archive", config, |msg: Message| async move {
///     println!("{}", String::from_utf8_lossy(&msg.body));
///     Ok(())
/// })?;
/// consumer.connect_to_lookupd("127.0.0.1:4161").await?;
/// // ... later:
/// consumer.stop().await;
/// # Ok(()) }
/// ```
pub struct Consumer {
    shared: Arc<Shared>,
    controller: Mutex<Option<JoinHandle<()>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Consumer {
    /// A consumer of `topic`/`channel` calling `handler` for each message (concurrently, up
    /// to `max_in_flight`). Must be called inside a tokio runtime. Connects to nothing yet.
    pub fn new<F, Fut>(topic: &str, channel: &str, config: Config, handler: F) -> Result<Consumer>
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        for name in [topic, channel] {
            if !is_valid_name(name) {
                return Err(Error::InvalidName(name.to_string()));
            }
        }
        let (events, events_rx) = mpsc::unbounded_channel();
        let (dispatch, dispatch_rx) = mpsc::unbounded_channel();
        let handler: BoxedHandler = Arc::new(move |m| Box::pin(handler(m)));
        let max_in_flight = config.max_in_flight;
        let http = HttpClient::new(config.dial_timeout, config.http_timeout)?;
        let shared = Arc::new(Shared {
            topic: topic.to_string(),
            channel: channel.to_string(),
            config,
            handler,
            conns: Mutex::new(BTreeMap::new()),
            events,
            dispatch,
            stop: watch::channel(false).0,
            http,
            lookupds: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicU32::new(max_in_flight),
            received: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            given_up: AtomicU64::new(0),
            backoffs: AtomicU64::new(0),
        });
        let controller = tokio::spawn(control_rdy(shared.clone(), events_rx));
        let queue = Arc::new(tokio::sync::Mutex::new(dispatch_rx));
        let workers = (0..shared.config.handler_concurrency.max(1))
            .map(|_| tokio::spawn(work(shared.clone(), queue.clone())))
            .collect();
        Ok(Consumer {
            shared,
            controller: Mutex::new(Some(controller)),
            workers,
        })
    }

    /// Connects to the nsqd at `addr` (TCP `host:port`) and subscribes. Fails if the first
    /// attempt does; after that, a lost connection is retried every `reconnect_interval`.
    pub async fn connect_to_nsqd(&self, addr: &str) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .ensure_connection(addr, Source::Direct, Some(tx));
        rx.await.unwrap_or(Err(Error::Stopped))
    }

    /// Adds a lookupd (HTTP `host:port`, or an `http://`/`https://` URL) and queries it at once; from then on every lookupd
    /// is polled each `lookupd_poll_interval` (plus jitter). Fails if this first query does.
    pub async fn connect_to_lookupd(&self, addr: &str) -> Result<()> {
        let producers = lookup_producers(&self.shared.http, addr, &self.shared.topic).await?;
        let first = {
            let mut lookupds = self
                .shared
                .lookupds
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !lookupds.iter().any(|a| a == addr) {
                lookupds.push(addr.to_string());
            }
            lookupds.len() == 1
        };
        for producer in producers {
            self.shared
                .ensure_connection(&producer, Source::Lookupd, None);
        }
        if first {
            let task = tokio::spawn(poll_lookupd(self.shared.clone()));
            self.shared
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(task);
        }
        Ok(())
    }

    /// Changes `max_in_flight` (go-nsq's `ChangeMaxInFlight`); 0 pauses every connection
    /// (RDY 0) until it is raised again.
    pub fn set_max_in_flight(&self, max_in_flight: u32) {
        self.shared
            .max_in_flight
            .store(max_in_flight, Ordering::SeqCst);
        let _ = self.shared.events.send(Event::Changed);
    }

    /// Counters so far.
    pub fn stats(&self) -> ConsumerStats {
        let s = &self.shared;
        ConsumerStats {
            received: s.received.load(Ordering::Relaxed),
            finished: s.finished.load(Ordering::Relaxed),
            requeued: s.requeued.load(Ordering::Relaxed),
            given_up: s.given_up.load(Ordering::Relaxed),
            backoffs: s.backoffs.load(Ordering::Relaxed),
            connections: self.connections().len(),
        }
    }

    /// The nsqd addresses with an open, subscribed connection.
    pub fn connections(&self) -> Vec<String> {
        let conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns
            .iter()
            .filter(|(_, e)| e.tx.is_some())
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Whether some connection holds (nearly) as many unanswered messages as its RDY allows,
    /// so nsqd will send it no more until some are answered (go-nsq's `IsStarved`). A
    /// handler that answers in batches answers now.
    pub fn is_starved(&self) -> bool {
        let conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.values().any(|e| match (&e.tx, &e.in_flight) {
            (Some(_), Some(in_flight)) if e.rdy > 0 => {
                let count = in_flight.count.load(Ordering::SeqCst) as i64;
                count * 100 >= e.rdy * 85
            }
            _ => false,
        })
    }

    /// Messages handed to the handler and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Stops cleanly: CLS on every connection (nsqd sends no more), waits for the messages
    /// in flight to be answered, then closes. Safe to call more than once.
    pub async fn stop(&self) {
        let shared = &self.shared;
        shared.stop.send_replace(true);
        {
            let conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
            for entry in conns.values() {
                if let Some(tx) = &entry.tx {
                    let _ = tx.send(Command::Cls);
                }
            }
        }
        loop {
            let tasks: Vec<_> = {
                let mut tasks = shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
                tasks.drain(..).collect()
            };
            if tasks.is_empty() {
                break;
            }
            for task in tasks {
                let _ = task.await;
            }
        }
        for worker in &self.workers {
            worker.abort();
        }
        let _ = shared.events.send(Event::Stop);
        let controller = self
            .controller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(controller) = controller {
            let _ = controller.await;
        }
    }
}

impl Drop for Consumer {
    /// Dropping without `stop` aborts the background tasks (nsqd redelivers what was in flight).
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
        let _ = self.shared.events.send(Event::Stop);
        for task in self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// A handler worker: takes the next message (in arrival order) and handles it.
async fn work(
    shared: Arc<Shared>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Dispatched>>>,
) {
    loop {
        let next = queue.lock().await.recv().await;
        let Some((message, touch_every)) = next else {
            return;
        };
        handle(shared.clone(), message, touch_every).await;
    }
}

/// Owns the backoff state and sends RDY whenever the plan changes.
async fn control_rdy(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Event>) {
    let config = &shared.config;
    let mut planner = RdyPlanner::default();
    let mut tick = tokio::time::interval(config.rdy_redistribute_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = planner.pause_deadline();
        let pause = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.recv() => match event {
                None | Some(Event::Stop) => return,
                Some(Event::Changed) => {}
                Some(Event::Outcome(Outcome::Success)) => {
                    planner.on_success(Instant::now(), config);
                }
                Some(Event::Outcome(Outcome::Failure)) => {
                    if planner.on_failure(Instant::now(), config) {
                        shared.backoffs.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "[{}/{}] backing off for {:?} (level {})",
                            shared.topic, shared.channel,
                            config.backoff_duration(planner.level()), planner.level()
                        );
                    }
                }
                Some(Event::Outcome(Outcome::Neutral)) => {}
            },
            _ = pause => {
                planner.on_timer(Instant::now());
            }
            _ = tick.tick() => planner.rotate(),
        }
        if !shared.stopping() {
            apply_rdy(&shared, &planner);
        }
    }
}

fn apply_rdy(shared: &Shared, planner: &RdyPlanner) {
    let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
    let live: Vec<&mut Entry> = conns
        .values_mut()
        .filter(|e| e.tx.is_some() && !e.dropped)
        .collect();
    let limits: Vec<i64> = live.iter().map(|e| e.max_rdy).collect();
    let plan = planner.plan(shared.max_in_flight.load(Ordering::SeqCst), &limits);
    for (entry, rdy) in live.into_iter().zip(plan) {
        if entry.rdy != rdy {
            if let Some(tx) = &entry.tx {
                let _ = tx.send(Command::Rdy(rdy));
            }
            entry.rdy = rdy;
        }
    }
}

/// Polls every lookupd each interval (plus jitter): connects to producers that appeared,
/// closes connections to discovered producers that are no longer listed.
async fn poll_lookupd(shared: Arc<Shared>) {
    let mut stop = shared.stop.subscribe();
    loop {
        let config = &shared.config;
        let jitter = rand::thread_rng().gen_range(0.0..=config.lookupd_poll_jitter.max(0.0));
        let wait = config.lookupd_poll_interval.mul_f64(1.0 + jitter);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let lookupds = shared
            .lookupds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut listed = BTreeSet::new();
        let mut answered = false;
        for addr in &lookupds {
            match lookup_producers(&shared.http, addr, &shared.topic).await {
                Ok(producers) => {
                    answered = true;
                    listed.extend(producers);
                }
                Err(e) => tracing::warn!("[{}] lookupd {addr}: {e}", shared.topic),
            }
        }
        // No answer at all says nothing about the producers: keep what we have.
        if !answered {
            continue;
        }
        for producer in &listed {
            shared.ensure_connection(producer, Source::Lookupd, None);
        }
        let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        for (addr, entry) in conns.iter_mut() {
            if entry.source == Source::Lookupd && !entry.dropped && !listed.contains(addr) {
                tracing::info!(
                    "[{}] {addr} is no longer listed by lookupd: closing",
                    shared.topic
                );
                entry.dropped = true;
                if let Some(tx) = &entry.tx {
                    let _ = tx.send(Command::Cls);
                }
            }
        }
    }
}
