//! One consumer connection's life: connect, IDENTIFY, SUB, then read frames (messages to
//! handlers, heartbeats answered) until it breaks or closes; direct ones reconnect.

use super::connection::{connect, expect_response, write_loop};
use super::consumer::{Event, Shared, Source};
use super::error::{Error, Result};
use super::message::{InFlight, Message};
use bytes::BytesMut;
use nsq_protocol::{Command, Frame};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Runs connections to `addr` until the consumer stops (or, for a discovered nsqd, until
/// the first one ends). `first` gets the result of the first connect.
pub(crate) async fn run_connection(
    shared: Arc<Shared>,
    addr: String,
    mut first: Option<oneshot::Sender<Result<()>>>,
) {
    let source = entry_source(&shared, &addr);
    let mut stop = shared.stop.subscribe();
    loop {
        let result = session(&shared, &addr, &mut first).await;
        if let Some(first) = first.take() {
            // The first connect failed: the caller gets the error and nothing is retried.
            let _ = first.send(result);
            break;
        }
        if let Err(e) = result {
            if !shared.stopping() {
                tracing::warn!("[{}/{}] {addr}: {e}", shared.topic, shared.channel);
            }
        }
        if let Some(entry) = lock(&shared).get_mut(&addr) {
            entry.tx = None;
            entry.rdy = 0;
        }
        let _ = shared.events.send(Event::Changed);
        if source != Source::Direct || shared.stopping() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.config.reconnect_interval) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        tracing::info!("[{}/{}] {addr}: reconnecting", shared.topic, shared.channel);
    }
    lock(&shared).remove(&addr);
    let _ = shared.events.send(Event::Changed);
}

fn lock(
    shared: &Shared,
) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, super::consumer::Entry>> {
    shared.conns.lock().unwrap_or_else(|e| e.into_inner())
}

fn entry_source(shared: &Shared, addr: &str) -> Source {
    lock(shared)
        .get(addr)
        .map(|e| e.source)
        .unwrap_or(Source::Direct)
}

/// One connection from connect to close. Reports success of the setup through `first`.
async fn session(
    shared: &Arc<Shared>,
    addr: &str,
    first: &mut Option<oneshot::Sender<Result<()>>>,
) -> Result<()> {
    let config = &shared.config;
    let mut conn = connect(addr, config).await?;
    let mut out = BytesMut::new();
    Command::Sub {
        topic: shared.topic.clone(),
        channel: shared.channel.clone(),
    }
    .encode(&mut out);
    conn.writer.send(&out).await?;
    expect_response(&mut conn.reader).await?;
    tracing::info!("[{}/{}] {addr}: subscribed", shared.topic, shared.channel);

    let (tx, rx) = mpsc::unbounded_channel();
    let writing = tokio::spawn(write_loop(conn.writer, rx));
    let in_flight = Arc::new(InFlight::default());
    if let Some(entry) = lock(shared).get_mut(addr) {
        entry.tx = Some(tx.clone());
        entry.in_flight = Some(in_flight.clone());
        entry.max_rdy = conn.negotiated.max_rdy_count;
        entry.rdy = 0;
    }
    if let Some(first) = first.take() {
        let _ = first.send(Ok(()));
    }
    let mut closing = shared.stopping();
    if closing {
        let _ = tx.send(Command::Cls);
    }
    let _ = shared.events.send(Event::Changed);

    let nsqd: Arc<str> = Arc::from(addr);
    let touch_every = config
        .touch_slow_handlers
        .then(|| conn.negotiated.msg_timeout / 2)
        .filter(|d| !d.is_zero());
    let result = loop {
        if closing && in_flight.count.load(Ordering::SeqCst) == 0 {
            break Ok(());
        }
        let frame = tokio::select! {
            frame = tokio::time::timeout(config.read_timeout(), conn.reader.next()) => {
                frame.unwrap_or_else(|_| Err(Error::Timeout(format!("{addr}: no heartbeat"))))
            }
            _ = in_flight.drained.notified(), if closing => continue,
        };
        match frame {
            Ok(Frame::Message {
                timestamp,
                attempts,
                id,
                body,
            }) => {
                let message = Message::new(
                    (timestamp, attempts, id, body),
                    nsqd.clone(),
                    tx.clone(),
                    in_flight.clone(),
                    shared.clone(),
                );
                if config.max_attempts > 0 && attempts > config.max_attempts {
                    message.give_up();
                } else {
                    let _ = shared.dispatch.send((message, touch_every));
                }
            }
            Ok(Frame::Response(data)) => match &data[..] {
                b"_heartbeat_" => {
                    let _ = tx.send(Command::Nop);
                }
                b"CLOSE_WAIT" => closing = true,
                _ => {}
            },
            Ok(Frame::Error(data)) => {
                // FIN/REQ/TOUCH failures (say, after a timeout) leave the connection open.
                tracing::warn!(
                    "[{}/{}] {addr}: {}",
                    shared.topic,
                    shared.channel,
                    String::from_utf8_lossy(&data)
                );
            }
            Err(Error::Closed(_)) if closing => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    if let Some(entry) = lock(shared).get_mut(addr) {
        entry.tx = None;
    }
    drop(tx);
    // Handlers still holding the queue may answer late; the writer ends when they are done.
    let _ = tokio::time::timeout(Duration::from_secs(1), writing).await;
    result
}

/// Runs the handler in its own task (so a panic is a failure, not a lost message), sends
/// TOUCH while it runs long, then answers unless the handler took that over.
pub(crate) async fn handle(shared: Arc<Shared>, message: Message, touch_every: Option<Duration>) {
    let mut work = tokio::spawn((shared.handler)(message.clone()));
    let result = match touch_every {
        None => (&mut work).await,
        Some(period) => {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tokio::select! {
                    result = &mut work => break result,
                    _ = ticker.tick() => message.touch(),
                }
            }
        }
    };
    if !message.auto_response() || message.has_responded() {
        return;
    }
    match result {
        Ok(Ok(())) => message.finish(),
        Ok(Err(e)) => {
            tracing::warn!(
                "[{}/{}] handler failed for msg {} (attempt {}): {e}",
                shared.topic,
                shared.channel,
                message.id_str(),
                message.attempts
            );
            message.requeue(None);
        }
        Err(e) => {
            tracing::warn!(
                "[{}/{}] handler panicked: {e}",
                shared.topic,
                shared.channel
            );
            message.requeue(None);
        }
    }
}
