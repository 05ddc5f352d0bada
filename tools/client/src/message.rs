//! A delivered message and the answers a handler can give for it (FIN, REQ, TOUCH).

use super::consumer::Shared;
use bytes::Bytes;
use nsq_protocol::Command;
use nsq_protocol::MessageId;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// A message delivered to a [`Consumer`](super::Consumer)'s handler.
///
/// By default the consumer answers for the handler: FIN when it returns `Ok`, REQ when it
/// returns `Err`. A handler that answers later (say, after an fsync) calls
/// [`disable_auto_response`](Message::disable_auto_response), keeps a clone, and calls
/// [`finish`](Message::finish) or [`requeue`](Message::requeue) when it knows. The first
/// answer wins; later ones are ignored.
#[derive(Clone)]
pub struct Message {
    /// NSQ's 16-byte message id (hex text).
    pub id: [u8; 16],
    /// The payload.
    pub body: Bytes,
    /// Delivery attempts, this one included.
    pub attempts: u16,
    /// When it was published, in nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// The nsqd it came from.
    pub nsqd_address: Arc<str>,
    state: Arc<State>,
}

/// Per-connection count of unanswered messages, so a closing connection knows when it is done.
#[derive(Default)]
pub(crate) struct InFlight {
    pub(crate) count: AtomicUsize,
    pub(crate) drained: Notify,
}

struct State {
    responded: AtomicBool,
    auto_response: AtomicBool,
    conn: mpsc::UnboundedSender<Command>,
    in_flight: Arc<InFlight>,
    shared: Arc<Shared>,
}

/// How an answer counts for the consumer's backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    Neutral,
}

impl Message {
    pub(crate) fn new(
        frame: (i64, u16, [u8; 16], Bytes),
        nsqd_address: Arc<str>,
        conn: mpsc::UnboundedSender<Command>,
        in_flight: Arc<InFlight>,
        shared: Arc<Shared>,
    ) -> Message {
        let (timestamp, attempts, id, body) = frame;
        in_flight.count.fetch_add(1, Ordering::SeqCst);
        shared.message_arrived();
        Message {
            id,
            body,
            attempts,
            timestamp,
            nsqd_address,
            state: Arc::new(State {
                responded: AtomicBool::new(false),
                auto_response: AtomicBool::new(true),
                conn,
                in_flight,
                shared,
            }),
        }
    }

    /// The id as text, as NSQ prints it.
    pub fn id_str(&self) -> String {
        String::from_utf8_lossy(&self.id).into_owned()
    }

    /// Tells the consumer not to answer for this message when the handler returns.
    pub fn disable_auto_response(&self) {
        self.state.auto_response.store(false, Ordering::SeqCst);
    }

    /// Whether the consumer will answer when the handler returns.
    pub fn auto_response(&self) -> bool {
        self.state.auto_response.load(Ordering::SeqCst)
    }

    /// Whether FIN or REQ has been sent.
    pub fn has_responded(&self) -> bool {
        self.state.responded.load(Ordering::SeqCst)
    }

    /// FIN: done with it.
    pub fn finish(&self) {
        self.respond(Command::Fin(MessageId(self.id)), Outcome::Success);
    }

    /// REQ with backoff: deliver it again after `delay` (`None`: the consumer's requeue delay
    /// for this attempt count), and slow the consumer down.
    pub fn requeue(&self, delay: Option<Duration>) {
        let delay = delay.unwrap_or_else(|| self.state.shared.config.requeue_delay(self.attempts));
        self.respond(self.req(delay), Outcome::Failure);
    }

    /// REQ without backoff: deliver it again after `delay`; the consumer keeps its pace.
    pub fn requeue_without_backoff(&self, delay: Duration) {
        self.respond(self.req(delay), Outcome::Neutral);
    }

    /// TOUCH: reset nsqd's timeout for this message (for handlers that run long).
    pub fn touch(&self) {
        if !self.has_responded() {
            let _ = self.state.conn.send(Command::Touch(MessageId(self.id)));
        }
    }

    /// Finishes without calling the handler after too many attempts, as go-nsq does.
    pub(crate) fn give_up(&self) {
        tracing::warn!(
            "msg {} attempted {} times, giving up",
            self.id_str(),
            self.attempts
        );
        self.state.shared.message_given_up();
        self.finish();
    }

    fn req(&self, delay: Duration) -> Command {
        Command::Req {
            id: MessageId(self.id),
            timeout_ms: delay.as_millis().min(i64::MAX as u128) as i64,
        }
    }

    fn respond(&self, command: Command, outcome: Outcome) {
        if self.state.responded.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.state.conn.send(command);
        if self.state.in_flight.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.state.in_flight.drained.notify_one();
        }
        self.state.shared.message_answered(outcome);
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id_str())
            .field("attempts", &self.attempts)
            .field("timestamp", &self.timestamp)
            .field("body_len", &self.body.len())
            .finish()
    }
}
