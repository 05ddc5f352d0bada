//! nsqlookupd's TCP protocol V1, spoken by nsqd: `IDENTIFY`, `REGISTER`, `UNREGISTER`, `PING`.
//! Every reply is `[u32 size][data]` (no frame type); every error is fatal to the connection,
//! as in NSQ. When a connection ends, its producer leaves every registration.

use super::registry::{unix_nanos, PeerInfo, Registration};
use super::Lookupd;
use crate::protocol::{self, MAGIC_V1};
use bytes::BytesMut;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Accepts nsqd connections until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    lookupd: Arc<Lookupd>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let lookupd = lookupd.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        tracing::info!(client = %peer, "TCP: new client");
                        let mut conn = Connection { lookupd, peer, peer_info: None };
                        if let Err(reason) = conn.run(stream, shutdown).await {
                            tracing::info!(client = %peer, %reason, "TCP: client closed");
                        }
                        conn.unregister_everything();
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

/// An error to send before closing: `E_CODE description`.
struct Fatal(String);

fn fatal(code: &str, description: &str) -> Fatal {
    Fatal(format!("{code} {description}"))
}

/// IDENTIFY's JSON, as nsqd sends it.
#[derive(Debug, Deserialize)]
struct Identify {
    #[serde(default)]
    broadcast_address: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    tcp_port: u16,
    #[serde(default)]
    http_port: u16,
    #[serde(default)]
    version: String,
}

struct Connection {
    lookupd: Arc<Lookupd>,
    peer: SocketAddr,
    peer_info: Option<Arc<PeerInfo>>,
}

/// Writes one V1 reply.
async fn respond(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(4 + data.len());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    stream.write_all(&out).await
}

impl Connection {
    async fn run(
        &mut self,
        mut stream: TcpStream,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), String> {
        let mut magic = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut magic)).await {
            Ok(Ok(_)) if &magic == MAGIC_V1 => {}
            Ok(Ok(_)) => {
                let _ = respond(&mut stream, b"E_BAD_PROTOCOL").await;
                return Err(format!(
                    "bad protocol magic {:?}",
                    String::from_utf8_lossy(&magic)
                ));
            }
            _ => return Err("no protocol magic".into()),
        }
        let mut input = BytesMut::with_capacity(4096);
        loop {
            loop {
                match self.next_command(&mut input) {
                    Ok(Some(reply)) => respond(&mut stream, &reply)
                        .await
                        .map_err(|e| e.to_string())?,
                    Ok(None) => break,
                    Err(Fatal(text)) => {
                        let _ = respond(&mut stream, text.as_bytes()).await;
                        return Err(text);
                    }
                }
            }
            tokio::select! {
                read = stream.read_buf(&mut input) => match read {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read error: {e}")),
                },
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// Runs the next complete command in `input`: its reply, or `None` if incomplete.
    fn next_command(&mut self, input: &mut BytesMut) -> Result<Option<Vec<u8>>, Fatal> {
        let Some(request) = protocol::parse_lookup_request(input).map_err(Fatal)? else {
            return Ok(None);
        };
        let params: Vec<&str> = request.words.iter().map(String::as_str).collect();
        match (params[0], request.body) {
            ("IDENTIFY", Some(body)) => self.identify(&body).map(Some),
            ("PING", _) => {
                if let Some(p) = &self.peer_info {
                    p.touch();
                }
                Ok(Some(b"OK".to_vec()))
            }
            ("REGISTER", _) => self.register(&params[1..]).map(Some),
            ("UNREGISTER", _) => self.unregister(&params[1..]).map(Some),
            (other, _) => Err(fatal("E_INVALID", &format!("invalid command {other}"))),
        }
    }

    fn identify(&mut self, body: &[u8]) -> Result<Vec<u8>, Fatal> {
        if self.peer_info.is_some() {
            return Err(fatal("E_INVALID", "cannot IDENTIFY again"));
        }
        let id: Identify = serde_json::from_slice(body)
            .map_err(|_| fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body"))?;
        if id.broadcast_address.is_empty()
            || id.tcp_port == 0
            || id.http_port == 0
            || id.version.is_empty()
        {
            return Err(fatal("E_BAD_BODY", "IDENTIFY missing fields"));
        }
        let info = Arc::new(PeerInfo {
            id: self.peer.to_string(),
            remote_address: self.peer.to_string(),
            hostname: id.hostname,
            broadcast_address: id.broadcast_address,
            tcp_port: id.tcp_port,
            http_port: id.http_port,
            version: id.version,
            last_update: AtomicI64::new(unix_nanos()),
        });
        tracing::info!(
            client = %self.peer,
            "CLIENT: IDENTIFY address:{} TCP:{} HTTP:{} version:{}",
            info.broadcast_address, info.tcp_port, info.http_port, info.version
        );
        self.lookupd
            .registry()
            .add_producer(Registration::client(), &info);
        self.peer_info = Some(info);
        let reply = serde_json::json!({
            "tcp_port": self.lookupd.tcp_port,
            "http_port": self.lookupd.http_port,
            "version": super::VERSION,
            "broadcast_address": self.lookupd.opts.broadcast_address,
            "hostname": crate::nsqd::options::hostname(),
        });
        Ok(reply.to_string().into_bytes())
    }

    fn topic_channel(
        &self,
        verb: &str,
        params: &[&str],
    ) -> Result<(Arc<PeerInfo>, String, String), Fatal> {
        let Some(peer) = self.peer_info.clone() else {
            return Err(fatal("E_INVALID", "client must IDENTIFY"));
        };
        let Some(topic) = params.first().filter(|t| !t.is_empty()) else {
            return Err(fatal(
                "E_INVALID",
                &format!("{verb} insufficient number of params"),
            ));
        };
        let channel = params.get(1).copied().unwrap_or("");
        if !protocol::is_valid_name(topic) {
            return Err(fatal(
                "E_BAD_TOPIC",
                &format!("{verb} topic name '{topic}' is not valid"),
            ));
        }
        if !channel.is_empty() && !protocol::is_valid_name(channel) {
            return Err(fatal(
                "E_BAD_CHANNEL",
                &format!("{verb} channel name '{channel}' is not valid"),
            ));
        }
        Ok((peer, topic.to_string(), channel.to_string()))
    }

    fn register(&mut self, params: &[&str]) -> Result<Vec<u8>, Fatal> {
        let (peer, topic, channel) = self.topic_channel("REGISTER", params)?;
        let mut db = self.lookupd.registry();
        if !channel.is_empty() && db.add_producer(Registration::channel(&topic, &channel), &peer) {
            tracing::info!(client = %self.peer, "DB: added channel {topic}:{channel}");
        }
        if db.add_producer(Registration::topic(&topic), &peer) {
            tracing::info!(client = %self.peer, "DB: added topic {topic}");
        }
        Ok(b"OK".to_vec())
    }

    fn unregister(&mut self, params: &[&str]) -> Result<Vec<u8>, Fatal> {
        let (peer, topic, channel) = self.topic_channel("UNREGISTER", params)?;
        let mut db = self.lookupd.registry();
        if !channel.is_empty() {
            let key = Registration::channel(&topic, &channel);
            let (_, left) = db.remove_producer(&key, &peer.id);
            // An ephemeral channel disappears with its last producer.
            if left == 0 && crate::protocol::is_ephemeral(&channel) {
                db.remove_registration(&key);
            }
        } else {
            // A topic unregistration takes the producer's channels of it too.
            for r in db.find_registrations(super::registry::Category::Channel, &topic, "*") {
                db.remove_producer(&r, &peer.id);
            }
            let key = Registration::topic(&topic);
            let (_, left) = db.remove_producer(&key, &peer.id);
            if left == 0 && crate::protocol::is_ephemeral(&topic) {
                db.remove_registration(&key);
            }
        }
        Ok(b"OK".to_vec())
    }

    fn unregister_everything(&mut self) {
        let Some(peer) = self.peer_info.take() else {
            return;
        };
        let mut db = self.lookupd.registry();
        for r in db.lookup_registrations(&peer.id) {
            db.remove_producer(&r, &peer.id);
        }
        tracing::info!(client = %self.peer, "DB: removed producer from every registration");
    }
}
