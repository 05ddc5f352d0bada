//! The TCP protocol V2 server: one task per connection running NSQ's state machine.

use super::auth::{AuthClient, AuthState};
use super::clients::ClientInfo;
use super::compression::{StreamDecoder, StreamEncoder};
use super::context::Nsqd;
use super::e2e;
use super::identify::{self, Negotiated};
use super::tls::ClientStream;
use crate::protocol;
use bytes::BytesMut;
use nsq_engine::{Channel, Error as EngineError, MessageId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

mod commands;
mod delivery;
mod publish;
mod session;
mod wire;

/// How often a subscriber re-checks for deferred or requeued messages that became ready.
const READY_POLL: Duration = Duration::from_millis(100);
/// The socket read buffer of a new connection.
const READ_BUFFER_MIN: usize = 1024;
/// The socket read buffer of a busy connection.
const READ_BUFFER_MAX: usize = 64 * 1024;
/// Messages taken from the channel per engine call.
const TAKE_BATCH: usize = 256;
/// Roughly how many bytes one take may put into the output buffer. Taken messages are
/// encoded before they are written, so a client that stops reading would otherwise hold
/// `TAKE_BATCH` messages of up to `--max-msg-size` each until its write times out.
const TAKE_BYTES: usize = 256 * 1024;

/// What guards the TCP protocol besides its own state machine.
pub struct Security {
    /// Set when a certificate is configured: IDENTIFY `tls_v1` upgrades with it.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Set with `--auth-http-address`: clients must AUTH, and PUB/SUB are checked.
    pub auth: Option<AuthClient>,
}

/// Accepts connections until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    nsqd: Arc<Nsqd>,
    security: Arc<Security>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let nsqd = nsqd.clone();
                    let shutdown = shutdown.clone();
                    let security = security.clone();
                    tokio::spawn(async move {
                        let info = nsqd.clients.add(peer.to_string());
                        let (id, client) = (info.id, info.clone());
                        tracing::info!(client = %peer, "TCP: new client");
                        match Connection::new(nsqd.clone(), info, stream, security, shutdown).run().await {
                            Ok(()) => tracing::info!(client = %peer, "TCP: client closed"),
                            Err(reason) => tracing::info!(client = %peer, %reason, "TCP: client closed"),
                        }
                        nsqd.clients.remove(id);
                        let subscription = client.subscription.read().unwrap_or_else(|e| e.into_inner()).clone();
                        if let Some((topic, channel)) = subscription {
                            drop_ephemeral_if_unused(&nsqd, &topic, &channel);
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TCP: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// NSQ deletes an `#ephemeral` channel when its last client leaves, and an `#ephemeral`
/// topic when its last channel goes.
fn drop_ephemeral_if_unused(nsqd: &Nsqd, topic: &str, channel: &str) {
    let engine = &nsqd.engine;
    if nsq_engine::name::is_ephemeral(channel)
        && nsqd.clients.subscribed_to(topic, channel).is_empty()
    {
        match engine.delete_channel(topic, channel) {
            Ok(()) => tracing::info!(
                "TOPIC({topic}): deleted ephemeral channel {channel}, its last client left"
            ),
            Err(EngineError::ChannelNotFound(_) | EngineError::TopicNotFound(_)) => {}
            Err(e) => tracing::warn!("TOPIC({topic}): deleting ephemeral channel {channel}: {e}"),
        }
    }
    let empty_ephemeral_topic = nsq_engine::name::is_ephemeral(topic)
        && engine.topic(topic).is_some_and(|t| t.channels().is_empty());
    if empty_ephemeral_topic {
        match engine.delete_topic(topic) {
            Ok(()) => {
                tracing::info!("TOPIC({topic}): deleted ephemeral topic, its last channel went")
            }
            Err(EngineError::TopicNotFound(_)) => {}
            Err(e) => tracing::warn!("TOPIC({topic}): deleting ephemeral topic: {e}"),
        }
    }
}

/// A subscription: the channel and the wake-up of its topic.
struct Subscription {
    topic: String,
    channel: Arc<Channel>,
    notify: Arc<Notify>,
    /// The channel's [`Channel::reset_count`] when this connection last looked.
    resets_seen: u64,
    /// FIN latencies waiting to be handed to the channel's window (with e2e percentiles on).
    latency: Option<e2e::Recorder>,
}

/// One client connection.
struct Connection {
    nsqd: Arc<Nsqd>,
    info: Arc<ClientInfo>,
    stream: ClientStream,
    security: Arc<Security>,
    shutdown: watch::Receiver<bool>,
    /// Plain protocol bytes waiting to be parsed.
    input: BytesMut,
    /// Plain protocol bytes waiting to be written.
    output: BytesMut,
    decoder: Option<StreamDecoder>,
    encoder: Option<StreamEncoder>,
    settings: Negotiated,
    sub: Option<Subscription>,
    /// What AUTH granted (NSQ's `AuthState`), with the secret to ask again on expiry.
    auth: Option<(AuthState, String)>,
    ready: i64,
    closing: bool,
    /// Our view of what this client holds: id -> (deadline, publish time in Unix ns); engine
    /// timeouts happen at the same deadline.
    in_flight: HashMap<MessageId, (Instant, i64)>,
    last_heard: Instant,
    /// How many messages the next take asks for: sized from the last take's frames so that
    /// one take stays near `TAKE_BYTES`; starts at 1, before any size is known.
    take_limit: usize,
}

/// Why a connection ended, for the log.
type CloseReason = String;

impl Connection {
    fn new(
        nsqd: Arc<Nsqd>,
        info: Arc<ClientInfo>,
        stream: TcpStream,
        security: Arc<Security>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let settings = identify::defaults(&nsqd.opts);
        Connection {
            nsqd,
            info,
            stream: ClientStream::Plain(stream),
            security,
            shutdown,
            // Grown on demand: an idle connection holds no buffers.
            input: BytesMut::new(),
            output: BytesMut::new(),
            decoder: None,
            encoder: None,
            settings,
            sub: None,
            auth: None,
            ready: 0,
            closing: false,
            in_flight: HashMap::new(),
            last_heard: Instant::now(),
            take_limit: 1,
        }
    }

    async fn run(mut self) -> Result<(), CloseReason> {
        let mut magic = [0u8; 4];
        let read =
            tokio::time::timeout(Duration::from_secs(30), self.stream.read_exact(&mut magic)).await;
        match read {
            Ok(Ok(_)) if &magic == protocol::MAGIC_V2 => {}
            Ok(Ok(_)) => {
                protocol::encode_error(&mut self.output, b"E_BAD_PROTOCOL");
                let _ = self.flush().await;
                return Err(format!("bad protocol magic {magic:?}"));
            }
            _ => return Err("no protocol magic".to_string()),
        }
        let result = self.serve().await;
        if let Err(reason) = &result {
            if !self.output.is_empty() {
                let _ = self.flush().await;
            }
            return Err(reason.clone());
        }
        result
    }

    /// Whether the channel delivers. A paused topic does not stop it: as in NSQ, its channels
    /// go on delivering what they had (the engine keeps what came since from them).
    fn channel_open(&self) -> bool {
        self.sub
            .as_ref()
            .is_some_and(|s| !s.channel.is_paused() && !s.channel.is_deleted())
    }

    fn can_receive(&self) -> bool {
        !self.closing && self.ready > self.in_flight.len() as i64 && self.channel_open()
    }

    async fn serve(&mut self) -> Result<(), CloseReason> {
        // Starts small so thousands of idle connections cost little; doubles whenever a read
        // fills it, up to READ_BUFFER_MAX, once a connection carries traffic.
        let mut raw = vec![0u8; READ_BUFFER_MIN];
        let mut heartbeat = self.settings.heartbeat;
        let mut heartbeat_timer = heartbeat_interval(heartbeat);
        loop {
            if heartbeat != self.settings.heartbeat {
                // IDENTIFY changed the interval.
                heartbeat = self.settings.heartbeat;
                heartbeat_timer = heartbeat_interval(heartbeat);
            }
            self.expire_local();
            // Deliver what RDY allows; leave the loop's wait for when nothing more can go now.
            let mut delivered = 0;
            if self.can_receive() {
                delivered = self.pump()?;
            }
            if self.output.len() >= self.settings.output_buffer_size.max(1)
                || (!self.output.is_empty() && delivered == 0)
            {
                self.flush().await?;
            }
            if delivered > 0 {
                continue;
            }
            let notify = self.sub.as_ref().map(|s| s.notify.clone());
            let waiting = self.can_receive();
            let notified = async {
                match &notify {
                    Some(n) if waiting => n.notified().await,
                    _ => std::future::pending().await,
                }
            };
            let mut notified = std::pin::pin!(notified);
            if waiting && self.pump_probe() {
                continue;
            }
            tokio::select! {
                read = self.stream.read(&mut raw) => {
                    let n = read.map_err(|e| format!("read error: {e}"))?;
                    if n == 0 {
                        // A command cut short by the client's half-close: NSQ names what
                        // it could not read before closing.
                        if let Some(e) = protocol::truncated_error(&self.input) {
                            return self.fail(e);
                        }
                        return Ok(());
                    }
                    self.last_heard = Instant::now();
                    self.absorb(&raw[..n])?;
                    if n == raw.len() && raw.len() < READ_BUFFER_MAX {
                        raw.resize(raw.len() * 2, 0);
                    }
                    // Journal this read's FINs even when a fatal command in it closes
                    // the connection: they reached nsqd.
                    let processed = self.process_commands().await;
                    self.journal_finished();
                    processed?;
                }
                _ = &mut notified => {}
                _ = tokio::time::sleep(READY_POLL), if self.sub.is_some() => {}
                _ = heartbeat_timer.tick(), if heartbeat.is_some() => {
                    let interval = heartbeat.unwrap_or_default();
                    if self.last_heard.elapsed() > interval * 2 {
                        return Err(format!("missed heartbeats for {:?}", self.last_heard.elapsed()));
                    }
                    protocol::encode_response(&mut self.output, b"_heartbeat_");
                    self.flush().await?;
                }
                _ = self.shutdown.changed() => {
                    self.flush().await?;
                    return Ok(());
                }
            }
        }
    }
}

/// A ticker for heartbeats; its first tick is one interval from now.
fn heartbeat_interval(heartbeat: Option<Duration>) -> tokio::time::Interval {
    let period = heartbeat.unwrap_or(Duration::from_secs(3600));
    tokio::time::interval_at(tokio::time::Instant::now() + period, period)
}
