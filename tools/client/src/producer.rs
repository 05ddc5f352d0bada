//! `Producer`: publishes to one nsqd and waits for each `OK`, so a returned `Ok` means nsqd
//! has the message (on our nsqd: written to its log).

use super::config::Config;
use super::connection::{connect, write_loop, FrameReader, FrameWriter};
use super::error::{Error, Result};
use bytes::Bytes;
use nsq_protocol::{is_valid_name, Command, Frame};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};

type Request = (Command, oneshot::Sender<Result<()>>);

/// Publishes messages to one nsqd over TCP.
///
/// Requests from clones of one `&Producer` share a connection and are pipelined. A broken
/// connection fails the requests waiting on it; the next request connects again.
///
/// ```no_run
/// # async fn demo() -> Result<(), nsq_client::Error> {
/// use nsq_client::{Config, Producer};
/// let producer = Producer::new("127.0.0.1:4150", Config::default());
/// producer.publish("events", b"hello".to_vec()).await?;
/// producer.multi_publish("events", vec![b"a".to_vec(), b"b".to_vec()]).await?;
/// # Ok(()) }
/// ```
pub struct Producer {
    addr: String,
    config: Config,
    conn: Mutex<Option<mpsc::UnboundedSender<Request>>>,
}

impl Producer {
    /// A producer for the nsqd at `addr` (`host:port`); connects on first use.
    pub fn new(addr: &str, config: Config) -> Producer {
        Producer {
            addr: addr.to_string(),
            config,
            conn: Mutex::new(None),
        }
    }

    /// The nsqd this producer publishes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connects now (if not connected), so that an unreachable nsqd is reported early.
    pub async fn connect(&self) -> Result<()> {
        self.sender().await.map(|_| ())
    }

    /// `PUB`: one message.
    pub async fn publish(&self, topic: &str, body: impl Into<Bytes>) -> Result<()> {
        check_topic(topic)?;
        self.request(Command::Pub {
            topic: topic.to_string(),
            body: body.into(),
        })
        .await
    }

    /// `MPUB`: several messages, stored all or none.
    pub async fn multi_publish<B: Into<Bytes>>(&self, topic: &str, bodies: Vec<B>) -> Result<()> {
        check_topic(topic)?;
        let bodies: Vec<Bytes> = bodies.into_iter().map(Into::into).collect();
        if bodies.is_empty() {
            return Ok(());
        }
        self.request(Command::Mpub {
            topic: topic.to_string(),
            bodies,
        })
        .await
    }

    /// `DPUB`: one message, delivered no sooner than `delay` from now.
    pub async fn deferred_publish(
        &self,
        topic: &str,
        delay: Duration,
        body: impl Into<Bytes>,
    ) -> Result<()> {
        check_topic(topic)?;
        self.request(Command::Dpub {
            topic: topic.to_string(),
            defer_ms: delay.as_millis() as i64,
            body: body.into(),
        })
        .await
    }

    /// Closes the connection (requests already sent still get their answers).
    pub async fn stop(&self) {
        self.conn.lock().await.take();
    }

    async fn request(&self, command: Command) -> Result<()> {
        let tx = self.sender().await?;
        let (done, answer) = oneshot::channel();
        tx.send((command, done))
            .map_err(|_| Error::Closed(self.addr.clone()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Error::Closed(self.addr.clone())))
    }

    /// The live connection's request queue, connecting first when there is none.
    async fn sender(&self) -> Result<mpsc::UnboundedSender<Request>> {
        let mut slot = self.conn.lock().await;
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let conn = connect(&self.addr, &self.config).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(
            self.config.read_timeout(),
            conn.reader,
            conn.writer,
            rx,
        ));
        *slot = Some(tx.clone());
        Ok(tx)
    }
}

fn check_topic(topic: &str) -> Result<()> {
    if is_valid_name(topic) {
        Ok(())
    } else {
        Err(Error::InvalidName(topic.to_string()))
    }
}

/// Sends requests in order and matches each answer to the oldest waiting request (nsqd
/// answers in order); heartbeats get a NOP. Ends when the connection breaks or the producer
/// drops it, failing whatever still waits.
async fn run(
    read_timeout: Duration,
    mut reader: FrameReader,
    writer: FrameWriter,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let (out, out_rx) = mpsc::unbounded_channel();
    let writing = tokio::spawn(write_loop(writer, out_rx));
    let mut waiting: VecDeque<oneshot::Sender<Result<()>>> = VecDeque::new();
    let mut open = true;
    let reader_addr = reader.addr().to_string();
    let failure = loop {
        tokio::select! {
            request = requests.recv(), if open => match request {
                Some((command, done)) => {
                    waiting.push_back(done);
                    let _ = out.send(command);
                }
                // Dropped by the producer: finish what was sent, then close.
                None if waiting.is_empty() => break None,
                None => open = false,
            },
            frame = tokio::time::timeout(read_timeout, reader.next()) => match frame
                .unwrap_or_else(|_| Err(Error::Timeout(format!("{reader_addr}: no heartbeat"))))
            {
                Ok(Frame::Response(data)) if &data[..] == b"_heartbeat_" => {
                    let _ = out.send(Command::Nop);
                }
                Ok(Frame::Response(_)) => {
                    if let Some(done) = waiting.pop_front() {
                        let _ = done.send(Ok(()));
                    }
                    if !open && waiting.is_empty() {
                        break None;
                    }
                }
                Ok(Frame::Error(data)) => {
                    // nsqd closes the connection after any publish error: refuse new requests
                    // first, so the caller's next one connects afresh.
                    requests.close();
                    if let Some(done) = waiting.pop_front() {
                        let _ = done.send(Err(Error::from_frame(&data)));
                    }
                    break Some(Error::Closed(reader_addr.clone()));
                }
                Ok(Frame::Message { .. }) => {}
                Err(e) => break Some(e),
            },
        }
    };
    requests.close();
    while let Ok((_, done)) = requests.try_recv() {
        waiting.push_back(done);
    }
    for done in waiting.drain(..) {
        let error = match &failure {
            Some(Error::Io { addr, source }) => Error::Io {
                addr: addr.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Some(Error::Closed(addr)) => Error::Closed(addr.clone()),
            _ => Error::Stopped,
        };
        let _ = done.send(Err(error));
    }
    drop(out);
    let _ = writing.await;
}
