//! Group commit under a strict sync policy: one writer thread per topic log takes every batch
//! that queued while its previous write and fsync ran, writes them with one write, fsyncs
//! once, and then completes each batch's appender. Appenders never block a thread of their
//! own while they wait: they hand over a [`Completion`] (an async caller wraps a oneshot
//! sender in it), which keeps the engine's API free of any async runtime.

use super::LogCore;
use crate::error::{Error, Result};
use crate::log::Appended;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Called once with the result of an append: `Ok` only after the batch's bytes (and, under a
/// strict sync policy, their fsync) are done.
pub type Completion = Box<dyn FnOnce(Result<Appended>) + Send>;

/// A group stops taking more batches once it holds this many body bytes, so one write stays
/// a reasonable size however deep the queue is.
const MAX_GROUP_BYTES: usize = 4 << 20;

/// One queued batch: its bodies (copied into one buffer), when to deliver it, and whom to
/// tell. Dropped without being completed (the writer stopped), it fails its appender.
pub(super) struct Request {
    data: Vec<u8>,
    ends: Vec<usize>,
    pub deliver_at: i64,
    pub now: i64,
    done: Option<Completion>,
    topic: Arc<str>,
}

impl Request {
    fn new<B: AsRef<[u8]>>(
        topic: Arc<str>,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
        done: Completion,
    ) -> Self {
        let total = bodies.iter().map(|b| b.as_ref().len()).sum();
        let mut data = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(bodies.len());
        for body in bodies {
            data.extend_from_slice(body.as_ref());
            ends.push(data.len());
        }
        Request {
            data,
            ends,
            deliver_at,
            now,
            done: Some(done),
            topic,
        }
    }

    /// The batch's bodies, in order.
    pub fn bodies(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        (0..self.ends.len()).map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.data[start..self.ends[i]]
        })
    }

    /// The appender to complete (once).
    pub fn take_done(&mut self) -> Option<Completion> {
        self.done.take()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(Error::WriterStopped(self.topic.to_string())));
        }
    }
}

/// The running writer thread of one log.
#[derive(Debug)]
struct Running {
    topic: Arc<str>,
    queue: mpsc::Sender<Request>,
    thread: JoinHandle<()>,
}

/// A log's writer thread, started on the first strict append and stopped (after finishing
/// everything queued) when the log is dropped.
#[derive(Debug, Default)]
pub(super) struct GroupWriter {
    running: Mutex<Option<Running>>,
}

impl GroupWriter {
    /// Queues a batch for the writer thread of `core`, starting the thread if needed.
    pub fn send<B: AsRef<[u8]>>(
        &self,
        core: &Arc<LogCore>,
        bodies: &[B],
        deliver_at: i64,
        now: i64,
        done: Completion,
    ) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_none() {
            let (queue, requests) = mpsc::channel();
            let worker = core.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("nsq-log-{}", core.topic))
                .spawn(move || write_groups(&worker, &requests));
            match spawned {
                Ok(thread) => {
                    *running = Some(Running {
                        topic: Arc::from(core.topic.as_str()),
                        queue,
                        thread,
                    })
                }
                Err(e) => {
                    tracing::error!(topic = %core.topic, error = %e, "cannot start the log writer");
                    return done(Err(Error::WriterStopped(core.topic.clone())));
                }
            }
        }
        if let Some(r) = running.as_ref() {
            let request = Request::new(r.topic.clone(), bodies, deliver_at, now, done);
            // A send fails only if the thread is gone; the returned request then fails its appender.
            let _ = r.queue.send(request);
        }
    }

    /// Stops the writer thread after it has handled everything queued.
    pub fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(Running { queue, thread, .. }) = running {
            drop(queue);
            if thread.join().is_err() {
                tracing::error!("a log writer thread panicked");
            }
        }
    }
}

/// The writer thread: waits for a batch, gathers whatever else is queued (up to
/// [`MAX_GROUP_BYTES`]), commits it as one group, and repeats until the log is dropped.
/// Between groups it prepares segment space ahead (strict policy; see `prepare_ahead`).
fn write_groups(core: &LogCore, requests: &mpsc::Receiver<Request>) {
    let mut group = Vec::new();
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(request) => request,
            None => match requests.recv() {
                Ok(request) => request,
                Err(_) => return,
            },
        };
        let mut bytes = first.data.len();
        group.push(first);
        while bytes < MAX_GROUP_BYTES {
            match requests.try_recv() {
                Ok(more) => {
                    bytes += more.data.len();
                    group.push(more);
                }
                Err(_) => break,
            }
        }
        core.commit_group(&mut group);
        match requests.try_recv() {
            Ok(request) => {
                if core.config.sync.is_strict() {
                    core.prepare_ahead(false);
                }
                next = Some(request)
            }
            Err(mpsc::TryRecvError::Empty) => {
                if core.config.sync.is_strict() {
                    core.prepare_ahead(true);
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => return,
        }
    }
}
