//! The TCP protocol V2 server: one task per connection running NSQ's state machine.

use super::auth::{AuthClient, AuthQuery, AuthState};
use super::clients::{ClientInfo, Identity};
use super::compression::{Compression, StreamDecoder, StreamEncoder};
use super::context::{Nsqd, PublishError};
use super::e2e;
use super::identify::{self, IdentifyRequest, Negotiated};
use super::tls::{ClientStream, TlsRequired};
use crate::protocol::{self, Command, ProtocolError};
use bytes::BytesMut;
use nsq_engine::{Channel, Delivery, Error as EngineError, MessageId};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

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

    /// Writes the FINs of the commands just processed to the channel's journal (one write per
    /// read from the socket), so a crash does not deliver them again.
    fn journal_finished(&self) {
        if let Some(sub) = &self.sub {
            if let Err(e) = sub.channel.write_finished() {
                tracing::warn!(topic = %sub.topic, error = %e, "journaling FINs failed; they are durable with the next cursor persist");
            }
        }
    }

    /// Whether a take would find something (after arming the wake-up, to close the race
    /// between "nothing to take" and "a publish arrived").
    fn pump_probe(&mut self) -> bool {
        self.sub
            .as_ref()
            .is_some_and(|s| s.channel.has_deliverable(self.nsqd.engine.now()))
    }

    /// Moves raw socket bytes into the plain input buffer (through decompression, if on).
    fn absorb(&mut self, raw: &[u8]) -> Result<(), CloseReason> {
        match &mut self.decoder {
            Some(d) => d
                .decode(raw, &mut self.input)
                .map_err(|e| format!("decompression failed: {e}")),
            None => {
                self.input.extend_from_slice(raw);
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), CloseReason> {
        if self.output.is_empty() {
            return Ok(());
        }
        let plain = self.output.split();
        let write = async {
            match &mut self.encoder {
                Some(e) => {
                    let mut wire = Vec::with_capacity(plain.len() / 2 + 64);
                    e.encode(&plain, &mut wire)
                        .map_err(|e| format!("compression failed: {e}"))?;
                    self.stream
                        .write_all(&wire)
                        .await
                        .map_err(|e| format!("write error: {e}"))?;
                }
                None => self
                    .stream
                    .write_all(&plain)
                    .await
                    .map_err(|e| format!("write error: {e}"))?,
            }
            // TLS holds records until flushed; plain TCP's flush does nothing.
            self.stream
                .flush()
                .await
                .map_err(|e| format!("write error: {e}"))
        };
        // A client that stops reading must not hold its connection (and our buffers) forever.
        let limit = self
            .settings
            .heartbeat
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_secs(1));
        match tokio::time::timeout(limit, write).await {
            Ok(result) => result,
            Err(_) => Err("write timed out (client not reading)".to_string()),
        }
    }

    /// Forgets in-flight entries whose deadline passed (the engine requeues them).
    fn expire_local(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let before = self.in_flight.len();
        if let Some(sub) = &mut self.sub {
            let resets = sub.channel.reset_count();
            if resets != sub.resets_seen {
                // Emptied or rewound: nothing of ours is in flight there any more.
                sub.resets_seen = resets;
                self.in_flight.clear();
            }
        }
        let now = Instant::now();
        self.in_flight.retain(|_, (deadline, _)| *deadline > now);
        if self.in_flight.len() != before {
            self.info
                .in_flight_count
                .store(self.in_flight.len() as i64, Ordering::Relaxed);
        }
    }

    /// Takes messages for this client and encodes them; returns how many went out.
    fn pump(&mut self) -> Result<usize, CloseReason> {
        let Some(sub) = &self.sub else { return Ok(0) };
        let room = (self.ready - self.in_flight.len() as i64).max(0) as usize;
        let want = room.min(self.take_limit);
        let mut deliveries: Vec<Delivery> = Vec::with_capacity(want);
        let now = self.nsqd.engine.now();
        let timeout = self.settings.msg_timeout;
        sub.channel
            .take(
                now,
                self.info.id,
                timeout.as_nanos() as i64,
                want,
                &mut deliveries,
            )
            .map_err(|e| format!("reading the channel failed: {e}"))?;
        let deadline = Instant::now() + timeout;
        let taken = deliveries.len();
        let bytes: usize = deliveries
            .iter()
            .map(|d| d.body.len() + protocol::MESSAGE_HEADER_LEN)
            .sum();
        if let Some(average) = bytes.checked_div(taken) {
            self.take_limit = (TAKE_BYTES / average.max(1)).clamp(1, TAKE_BATCH);
        }
        let mut sent = 0;
        for d in deliveries {
            if self.settings.sample_rate > 0
                && rand::random::<u32>() % 100 > self.settings.sample_rate as u32
            {
                // Not sampled: NSQ drops it for this client's channel.
                let _ = sub.channel.finish(self.info.id, &d.id);
                continue;
            }
            protocol::encode_message(
                &mut self.output,
                d.timestamp,
                d.attempts,
                d.id.as_bytes(),
                &d.body,
            );
            self.in_flight.insert(d.id, (deadline, d.timestamp));
            sent += 1;
        }
        self.info
            .message_count
            .fetch_add(sent as u64, Ordering::Relaxed);
        self.info
            .in_flight_count
            .store(self.in_flight.len() as i64, Ordering::Relaxed);
        Ok(taken)
    }

    async fn process_commands(&mut self) -> Result<(), CloseReason> {
        loop {
            let limits = protocol::Limits {
                max_msg_size: self.nsqd.opts.max_msg_size,
                max_body_size: self.nsqd.opts.max_body_size,
            };
            let command = match protocol::parse_command(&mut self.input, &limits) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    // Everything read is handled: hand this read's FIN latencies over.
                    if let Some(recorder) = self.sub.as_mut().and_then(|s| s.latency.as_mut()) {
                        recorder.flush();
                    }
                    return Ok(());
                }
                Err(e) => return self.fail(e),
            };
            if let Err(e) = self.execute(command).await? {
                self.fail(e)?;
            }
        }
    }

    /// Sends an error frame; fatal errors close the connection.
    fn fail(&mut self, e: ProtocolError) -> Result<(), CloseReason> {
        protocol::encode_error(&mut self.output, e.to_string().as_bytes());
        if e.is_fatal() {
            return Err(e.to_string());
        }
        Ok(())
    }

    fn respond(&mut self, data: &[u8]) {
        protocol::encode_response(&mut self.output, data);
    }

    /// Runs one command. The outer error closes the connection at once; the inner one is
    /// sent to the client as an error frame (and closes it when fatal).
    async fn execute(
        &mut self,
        command: Command,
    ) -> Result<Result<(), ProtocolError>, CloseReason> {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                "PROTOCOL(V2): [{}] [{}]",
                self.info.remote_address,
                command.describe()
            );
        }
        if !matches!(command, Command::Identify(_))
            && self.nsqd.opts.tls.required != TlsRequired::No
            && !self.stream.is_tls()
        {
            let verb = command.describe();
            let verb = verb.split(' ').next().unwrap_or_default();
            return Ok(Err(ProtocolError::fatal(
                "E_INVALID",
                &format!("cannot {verb} in current state (TLS required)"),
            )));
        }
        Ok(match command {
            Command::Nop => Ok(()),
            Command::Identify(body) => self.identify(&body).await,
            Command::Auth(secret) => self.authenticate(&secret).await,
            Command::Sub { topic, channel } => self.subscribe(&topic, &channel).await,
            Command::Rdy(count) => self.set_ready(count),
            Command::Fin(id) => self.finish(&id),
            Command::Req { id, timeout_ms } => self.requeue(&id, timeout_ms),
            Command::Touch(id) => self.touch(&id),
            Command::Cls => self.close_wait(),
            Command::Pub { topic, body } => self.publish(&topic, &[body], 0, "PUB").await,
            Command::Mpub { topic, bodies } => self.publish(&topic, &bodies, 0, "MPUB").await,
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => {
                let max = self.nsqd.opts.max_req_timeout.as_millis() as i64;
                if defer_ms < 0 || defer_ms > max {
                    Err(ProtocolError::fatal(
                        "E_INVALID",
                        &format!("DPUB timeout {defer_ms} out of range 0-{max}"),
                    ))
                } else {
                    let at = self.nsqd.engine.now() + defer_ms * 1_000_000;
                    self.publish(&topic, &[body], at, "DPUB").await
                }
            }
        })
    }

    /// CLS: no more deliveries; the client closes once it has answered what it holds. NSQ
    /// keeps the connection open (publishing, FIN/REQ/TOUCH still work), and so do we.
    fn close_wait(&mut self) -> Result<(), ProtocolError> {
        if self.sub.is_none() || self.closing {
            return Err(ProtocolError::fatal(
                "E_INVALID",
                "cannot CLS in current state",
            ));
        }
        self.closing = true;
        self.ready = 0;
        self.info.ready_count.store(0, Ordering::Relaxed);
        self.info.closing.store(true, Ordering::Relaxed);
        self.respond(b"CLOSE_WAIT");
        Ok(())
    }

    async fn identify(&mut self, body: &[u8]) -> Result<(), ProtocolError> {
        // NSQ allows IDENTIFY again until SUB; a second compression upgrade is refused since
        // it would wrap the stream twice.
        if self.sub.is_some() {
            return Err(ProtocolError::fatal(
                "E_INVALID",
                "cannot IDENTIFY in current state",
            ));
        }
        let request: IdentifyRequest = serde_json::from_slice(body).map_err(|_| {
            ProtocolError::fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
        })?;
        let negotiated = identify::negotiate(&request, &self.nsqd.opts)?;
        if self.encoder.is_some() && (negotiated.snappy || negotiated.deflate.is_some()) {
            return Err(ProtocolError::fatal(
                "E_IDENTIFY_FAILED",
                "IDENTIFY compression is already enabled",
            ));
        }
        // As in NSQ, TLS is negotiated only with feature negotiation and a certificate.
        let tls = request.feature_negotiation && request.tls_v1 && self.security.tls.is_some();
        if tls && self.stream.is_tls() {
            return Err(ProtocolError::fatal(
                "E_IDENTIFY_FAILED",
                "IDENTIFY TLS is already enabled",
            ));
        }
        *self
            .info
            .identity
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Identity {
            client_id: negotiated.client_id.clone(),
            hostname: negotiated.hostname.clone(),
            user_agent: negotiated.user_agent.clone(),
            deflate: negotiated.deflate.is_some(),
            snappy: negotiated.snappy,
            sample_rate: negotiated.sample_rate,
            msg_timeout_ms: negotiated.msg_timeout.as_millis() as i64,
        };
        if request.feature_negotiation {
            let mut response = identify::response(&negotiated, &self.nsqd.opts);
            response.tls_v1 = tls;
            response.auth_required = self.security.auth.is_some();
            let answer = serde_json::to_vec(&response).map_err(|e| {
                ProtocolError::fatal("E_IDENTIFY_FAILED", &format!("IDENTIFY failed {e}"))
            })?;
            self.respond(&answer);
        } else {
            self.respond(b"OK");
        }
        let compression = match (negotiated.snappy, negotiated.deflate) {
            (true, _) => Some(Compression::Snappy),
            (false, Some(level)) => Some(Compression::Deflate { level }),
            _ => None,
        };
        self.settings = negotiated;
        if tls {
            self.upgrade_tls().await?;
        }
        if let Some(kind) = compression {
            // The answer goes out uncompressed; from then on both directions are compressed,
            // and the server confirms with one more OK inside the compressed stream.
            if self.flush().await.is_err() {
                return Err(ProtocolError::fatal(
                    "E_IDENTIFY_FAILED",
                    "IDENTIFY failed to flush",
                ));
            }
            let mut decoder = StreamDecoder::new(&kind);
            let pending = self.input.split();
            self.encoder = Some(StreamEncoder::new(&kind));
            let mut plain = BytesMut::new();
            decoder.decode(&pending, &mut plain).map_err(|e| {
                ProtocolError::fatal("E_IDENTIFY_FAILED", &format!("IDENTIFY failed {e}"))
            })?;
            self.input = plain;
            self.decoder = Some(decoder);
            self.respond(b"OK");
        }
        Ok(())
    }

    /// NSQ's order: the IDENTIFY answer in plain text, the handshake, then `OK` over TLS
    /// (compression, if negotiated too, starts after that `OK`).
    async fn upgrade_tls(&mut self) -> Result<(), ProtocolError> {
        let failed = |e: &dyn std::fmt::Display| {
            ProtocolError::fatal("E_IDENTIFY_FAILED", &format!("IDENTIFY failed {e}"))
        };
        if !self.input.is_empty() {
            // Bytes sent before the handshake cannot be part of it.
            return Err(failed(&"data arrived before the TLS handshake"));
        }
        if let Err(e) = self.flush().await {
            return Err(failed(&e));
        }
        let Some(acceptor) = self.security.tls.clone() else {
            return Err(failed(&"TLS is not configured"));
        };
        tracing::info!(
            "PROTOCOL(V2): [{}] upgrading connection to TLS",
            self.info.remote_address
        );
        match self.stream.upgrade(&acceptor).await {
            Ok(facts) => {
                *self.info.tls.write().unwrap_or_else(|e| e.into_inner()) = Some(facts);
                self.respond(b"OK");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    "PROTOCOL(V2): [{}] TLS handshake failed: {e}",
                    self.info.remote_address
                );
                Err(failed(&e))
            }
        }
    }

    /// AUTH, with NSQ's checks in NSQ's order.
    async fn authenticate(&mut self, secret: &[u8]) -> Result<(), ProtocolError> {
        if self.sub.is_some() || self.closing {
            return Err(ProtocolError::fatal(
                "E_INVALID",
                "cannot AUTH in current state",
            ));
        }
        if self
            .auth
            .as_ref()
            .is_some_and(|(s, _)| !s.authorizations.is_empty())
        {
            return Err(ProtocolError::fatal("E_INVALID", "AUTH already set"));
        }
        if self.security.auth.is_none() {
            return Err(ProtocolError::fatal("E_AUTH_DISABLED", "AUTH disabled"));
        }
        let secret = String::from_utf8_lossy(secret).into_owned();
        let state = self.query_auth(&secret).await?;
        let granted = !state.authorizations.is_empty();
        let answer = serde_json::json!({
            "identity": state.identity,
            "identity_url": state.identity_url,
            "permission_count": state.authorizations.len(),
        });
        self.auth = Some((state, secret));
        if !granted {
            return Err(ProtocolError::fatal(
                "E_UNAUTHORIZED",
                "AUTH no authorizations found",
            ));
        }
        self.respond(answer.to_string().as_bytes());
        Ok(())
    }

    /// Asks the auth server about `secret` for this connection and records the answer for
    /// `/stats`. Why it failed goes to the log only, as in NSQ (it may describe the server).
    async fn query_auth(&mut self, secret: &str) -> Result<AuthState, ProtocolError> {
        let Some(client) = self.security.auth.clone() else {
            return Err(ProtocolError::fatal("E_AUTH_DISABLED", "AUTH disabled"));
        };
        let remote_ip = self
            .info
            .remote_address
            .parse::<std::net::SocketAddr>()
            .map_or_else(|_| String::new(), |a| a.ip().to_string());
        let common_name = self
            .info
            .tls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|t| t.common_name.clone())
            .unwrap_or_default();
        let query = AuthQuery {
            remote_ip,
            tls: self.stream.is_tls(),
            secret: secret.to_string(),
            common_name,
        };
        match client.query(&query).await {
            Ok(state) => {
                *self.info.auth.write().unwrap_or_else(|e| e.into_inner()) = Some((
                    !state.authorizations.is_empty(),
                    state.identity.clone(),
                    state.identity_url.clone(),
                ));
                Ok(state)
            }
            Err(e) => {
                tracing::warn!(
                    "PROTOCOL(V2): [{}] AUTH failed {e}",
                    self.info.remote_address
                );
                Err(ProtocolError::fatal("E_AUTH_FAILED", "AUTH failed"))
            }
        }
    }

    /// NSQ's `CheckAuth` for PUB/MPUB/DPUB (`channel` empty) and SUB: AUTH must have come,
    /// an expired answer is asked for again, and the grants must cover the names.
    async fn check_auth(
        &mut self,
        verb: &str,
        topic: &str,
        channel: &str,
    ) -> Result<(), ProtocolError> {
        if self.security.auth.is_none() {
            return Ok(());
        }
        let (expired, secret) = match &self.auth {
            Some((state, secret)) if !state.authorizations.is_empty() => {
                (state.is_expired(), secret.clone())
            }
            _ => {
                return Err(ProtocolError::fatal(
                    "E_AUTH_FIRST",
                    &format!("AUTH required before {verb}"),
                ))
            }
        };
        if expired {
            let state = self.query_auth(&secret).await?;
            self.auth = Some((state, secret));
        }
        let allowed = self
            .auth
            .as_ref()
            .is_some_and(|(state, _)| state.allows(topic, channel));
        if !allowed {
            return Err(ProtocolError::fatal(
                "E_UNAUTHORIZED",
                &format!("AUTH failed for {verb} on {topic:?} {channel:?}"),
            ));
        }
        Ok(())
    }

    async fn subscribe(&mut self, topic: &str, channel: &str) -> Result<(), ProtocolError> {
        if self.sub.is_some() || self.closing {
            return Err(ProtocolError::fatal(
                "E_INVALID",
                "cannot SUB in current state",
            ));
        }
        let max_consumers = self.nsqd.opts.max_channel_consumers;
        if max_consumers > 0
            && self.nsqd.clients.subscribed_to(topic, channel).len() as i64 >= max_consumers
        {
            return Err(ProtocolError::fatal(
                "E_SUB_FAILED",
                &format!(
                    "SUB failed consumers for {topic}:{channel} exceeds limit of {max_consumers}"
                ),
            ));
        }
        if !protocol::is_valid_name(topic) {
            return Err(ProtocolError::fatal(
                "E_BAD_TOPIC",
                &format!("SUB topic name {topic:?} is not valid"),
            ));
        }
        if !protocol::is_valid_name(channel) {
            return Err(ProtocolError::fatal(
                "E_BAD_CHANNEL",
                &format!("SUB channel name {channel:?} is not valid"),
            ));
        }
        self.check_auth("SUB", topic, channel).await?;
        let created =
            self.nsqd
                .engine
                .create_channel(topic, channel, nsq_engine::ChannelStart::Default);
        let channel_handle = match created {
            Ok(c) => c,
            Err(e) => {
                return Err(ProtocolError::fatal(
                    "E_SUB_FAILED",
                    &format!("SUB failed {e}"),
                ))
            }
        };
        *self
            .info
            .subscription
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some((topic.to_string(), channel.to_string()));
        self.sub = Some(Subscription {
            topic: topic.to_string(),
            resets_seen: channel_handle.reset_count(),
            channel: channel_handle,
            notify: self.nsqd.notifier(topic),
            latency: self
                .nsqd
                .e2e
                .as_ref()
                .map(|e| e2e::Recorder::new(e.channel(topic, channel))),
        });
        self.respond(b"OK");
        Ok(())
    }

    fn set_ready(&mut self, count: i64) -> Result<(), ProtocolError> {
        if self.closing {
            return Ok(());
        }
        if self.sub.is_none() {
            return Err(ProtocolError::fatal(
                "E_INVALID",
                "cannot RDY in current state",
            ));
        }
        let max = self.nsqd.opts.max_rdy_count;
        if count < 0 || count > max {
            return Err(ProtocolError::fatal(
                "E_INVALID",
                &format!("RDY count {count} out of range 0-{max}"),
            ));
        }
        self.ready = count;
        self.info.ready_count.store(count, Ordering::Relaxed);
        Ok(())
    }

    fn subscribed_channel(&self, verb: &str) -> Result<Arc<Channel>, ProtocolError> {
        self.sub.as_ref().map(|s| s.channel.clone()).ok_or_else(|| {
            ProtocolError::fatal("E_INVALID", &format!("cannot {verb} in current state"))
        })
    }

    /// Drops `id` from the in-flight view; returns its publish time if it was there.
    fn forget(&mut self, id: &MessageId) -> Option<i64> {
        let published = self.in_flight.remove(id).map(|(_, ts)| ts);
        self.info
            .in_flight_count
            .store(self.in_flight.len() as i64, Ordering::Relaxed);
        published
    }

    fn finish(&mut self, id: &MessageId) -> Result<(), ProtocolError> {
        let channel = self.subscribed_channel("FIN")?;
        let result = channel.finish(self.info.id, id);
        let published = self.forget(id);
        match result {
            Ok(()) => {
                self.info.finish_count.fetch_add(1, Ordering::Relaxed);
                let latency = self.sub.as_mut().and_then(|s| s.latency.as_mut());
                if let (Some(recorder), Some(published)) = (latency, published) {
                    recorder.finished(self.nsqd.engine.now(), published);
                }
                Ok(())
            }
            Err(e) => Err(ProtocolError::non_fatal(
                "E_FIN_FAILED",
                &format!("FIN {id} failed {}", flight_reason(&e)),
            )),
        }
    }

    fn requeue(&mut self, id: &MessageId, timeout_ms: i64) -> Result<(), ProtocolError> {
        let channel = self.subscribed_channel("REQ")?;
        // NSQ clamps the delay to [0, --max-req-timeout].
        let max = self.nsqd.opts.max_req_timeout.as_millis() as i64;
        let delay_ms = timeout_ms.clamp(0, max);
        let result = channel.requeue(
            self.info.id,
            id,
            self.nsqd.engine.now(),
            delay_ms * 1_000_000,
        );
        self.forget(id);
        match result {
            Ok(()) => {
                self.info.requeue_count.fetch_add(1, Ordering::Relaxed);
                if delay_ms == 0 {
                    self.nsqd
                        .wake(self.sub.as_ref().map_or("", |s| s.topic.as_str()));
                }
                Ok(())
            }
            Err(e) => Err(ProtocolError::non_fatal(
                "E_REQ_FAILED",
                &format!("REQ {id} failed {}", flight_reason(&e)),
            )),
        }
    }

    fn touch(&mut self, id: &MessageId) -> Result<(), ProtocolError> {
        let channel = self.subscribed_channel("TOUCH")?;
        let timeout = self.settings.msg_timeout;
        match channel.touch(
            self.info.id,
            id,
            self.nsqd.engine.now(),
            timeout.as_nanos() as i64,
        ) {
            Ok(()) => {
                if let Some((deadline, _)) = self.in_flight.get_mut(id) {
                    *deadline = Instant::now() + timeout;
                }
                Ok(())
            }
            Err(e) => Err(ProtocolError::non_fatal(
                "E_TOUCH_FAILED",
                &format!("TOUCH {id} failed {}", flight_reason(&e)),
            )),
        }
    }

    async fn publish(
        &mut self,
        topic: &str,
        bodies: &[bytes::Bytes],
        deliver_at: i64,
        verb: &str,
    ) -> Result<(), ProtocolError> {
        if !protocol::is_valid_name(topic) {
            return Err(ProtocolError::fatal(
                "E_BAD_TOPIC",
                &format!("{verb} topic name {topic:?} is not valid"),
            ));
        }
        self.check_auth(verb, topic, "").await?;
        match self.nsqd.publish(topic, bodies, deliver_at).await {
            Ok(_) => {
                self.info.published(topic, bodies.len() as u64);
                self.respond(b"OK");
                Ok(())
            }
            Err(PublishError::BadTopic(_)) => Err(ProtocolError::fatal(
                "E_BAD_TOPIC",
                &format!("{verb} topic name {topic:?} is not valid"),
            )),
            Err(e) => Err(ProtocolError::fatal(
                &format!("E_{verb}_FAILED"),
                &format!("{verb} failed {e}"),
            )),
        }
    }
}

/// A ticker for heartbeats; its first tick is one interval from now.
fn heartbeat_interval(heartbeat: Option<Duration>) -> tokio::time::Interval {
    let period = heartbeat.unwrap_or(Duration::from_secs(3600));
    tokio::time::interval_at(tokio::time::Instant::now() + period, period)
}

fn flight_reason(e: &EngineError) -> &'static str {
    match e {
        EngineError::NotOwner(_) => "client does not own message",
        _ => "ID not in flight",
    }
}
