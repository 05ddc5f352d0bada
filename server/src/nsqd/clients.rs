//! The connected TCP clients, as `/stats` shows them.

use super::tls::TlsFacts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// What a connection tells the registry about itself; updated by the connection's task.
#[derive(Debug, Default)]
pub struct ClientInfo {
    /// Server-assigned id (also the engine's in-flight owner).
    pub id: u64,
    /// `ip:port` of the peer.
    pub remote_address: String,
    /// Unix seconds when the client connected.
    pub connect_ts: i64,
    /// Identity from IDENTIFY.
    pub identity: RwLock<Identity>,
    /// `topic/channel` once subscribed.
    pub subscription: RwLock<Option<(String, String)>>,
    /// Current RDY.
    pub ready_count: AtomicI64,
    /// Messages in flight to this client.
    pub in_flight_count: AtomicI64,
    /// Messages sent.
    pub message_count: AtomicU64,
    /// FINs.
    pub finish_count: AtomicU64,
    /// REQs.
    pub requeue_count: AtomicU64,
    /// Set by CLS.
    pub closing: AtomicBool,
    /// Messages published, per topic.
    pub pub_counts: Mutex<BTreeMap<String, u64>>,
    /// The TLS session, once IDENTIFY upgraded the connection.
    pub tls: RwLock<Option<TlsFacts>>,
    /// After AUTH: (has authorizations, identity, identity URL).
    pub auth: RwLock<Option<(bool, String, String)>>,
}

/// The IDENTIFY facts `/stats` reports.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    /// `client_id` (NSQ's default before IDENTIFY: the peer's host).
    pub client_id: String,
    /// `hostname` (same default).
    pub hostname: String,
    /// `user_agent`.
    pub user_agent: String,
    /// Deflate negotiated.
    pub deflate: bool,
    /// Snappy negotiated.
    pub snappy: bool,
    /// `sample_rate`.
    pub sample_rate: i32,
    /// Negotiated message timeout.
    pub msg_timeout_ms: i64,
}

/// One topic a client published to, in `/stats` `pub_counts`.
#[derive(Debug, Clone, Serialize)]
pub struct PubCount {
    /// The topic.
    pub topic: String,
    /// Messages published to it by this client.
    pub count: u64,
}

/// One client in `/stats` JSON (NSQ's field names and order).
#[derive(Debug, Serialize)]
#[allow(missing_docs)]
pub struct ClientStats {
    pub client_id: String,
    pub hostname: String,
    pub version: &'static str,
    pub remote_address: String,
    pub state: i32,
    pub ready_count: i64,
    pub in_flight_count: i64,
    pub message_count: u64,
    pub finish_count: u64,
    pub requeue_count: u64,
    pub connect_ts: i64,
    pub sample_rate: i32,
    pub deflate: bool,
    pub snappy: bool,
    pub user_agent: String,
    /// AUTH granted something (absent when not, as NSQ's `omitempty`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub authed: bool,
    /// The auth server's identity for the client (absent when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity: String,
    /// The auth server's identity URL (absent when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth_identity_url: String,
    /// Absent when empty, as NSQ's `omitempty`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pub_counts: Vec<PubCount>,
    pub tls: bool,
    pub tls_cipher_suite: String,
    pub tls_version: String,
    pub tls_negotiated_protocol: String,
    pub tls_negotiated_protocol_is_mutual: bool,
}

impl ClientInfo {
    /// Counts a successful publish of `count` messages to `topic`.
    pub fn published(&self, topic: &str, count: u64) {
        let mut counts = self.pub_counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(topic.to_string()).or_default() += count;
    }

    /// Whether this client has published to `topic` (any topic when `None`).
    pub fn has_published(&self, topic: Option<&str>) -> bool {
        let counts = self.pub_counts.lock().unwrap_or_else(|e| e.into_inner());
        match topic {
            Some(t) => counts.contains_key(t),
            None => !counts.is_empty(),
        }
    }

    /// Whether the client is subscribed to a channel.
    pub fn is_subscribed(&self) -> bool {
        self.subscription
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The client as `/stats` shows it; `pub_topic` limits `pub_counts` to one topic.
    pub fn stats(&self, pub_topic: Option<&str>) -> ClientStats {
        let identity = self
            .identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // NSQ's states: init 0, subscribed 3, closing 4.
        let state = if self.closing.load(Ordering::Relaxed) {
            4
        } else if self.is_subscribed() {
            3
        } else {
            0
        };
        let pub_counts = self
            .pub_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(t, _)| pub_topic.is_none_or(|p| p == t.as_str()))
            .map(|(topic, &count)| PubCount {
                topic: topic.clone(),
                count,
            })
            .collect();
        let tls = self.tls.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (authed, auth_identity, auth_identity_url) = self
            .auth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        ClientStats {
            client_id: identity.client_id,
            hostname: identity.hostname,
            version: "V2",
            remote_address: self.remote_address.clone(),
            state,
            ready_count: self.ready_count.load(Ordering::Relaxed),
            in_flight_count: self.in_flight_count.load(Ordering::Relaxed),
            message_count: self.message_count.load(Ordering::Relaxed),
            finish_count: self.finish_count.load(Ordering::Relaxed),
            requeue_count: self.requeue_count.load(Ordering::Relaxed),
            connect_ts: self.connect_ts,
            sample_rate: identity.sample_rate,
            deflate: identity.deflate,
            snappy: identity.snappy,
            user_agent: identity.user_agent,
            authed,
            auth_identity,
            auth_identity_url,
            pub_counts,
            tls: tls.is_some(),
            tls_cipher_suite: tls
                .as_ref()
                .map(|t| t.cipher_suite.clone())
                .unwrap_or_default(),
            tls_version: tls.as_ref().map(|t| t.version.clone()).unwrap_or_default(),
            tls_negotiated_protocol: tls
                .as_ref()
                .map(|t| t.negotiated_protocol.clone())
                .unwrap_or_default(),
            // Go reports it always true for a TLS session (the field is deprecated there).
            tls_negotiated_protocol_is_mutual: tls.is_some(),
        }
    }
}

/// All connected clients.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
}

impl ClientRegistry {
    /// Registers a new connection and returns its info handle.
    pub fn add(&self, remote_address: String) -> Arc<ClientInfo> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let connect_ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        // NSQ names a client by its peer's host until IDENTIFY says otherwise.
        let host = remote_address
            .parse::<std::net::SocketAddr>()
            .map_or_else(|_| remote_address.clone(), |a| a.ip().to_string());
        let info = Arc::new(ClientInfo {
            id,
            remote_address,
            connect_ts,
            identity: RwLock::new(Identity {
                client_id: host.clone(),
                hostname: host,
                ..Identity::default()
            }),
            ..ClientInfo::default()
        });
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, info.clone());
        info
    }

    /// Forgets a closed connection.
    pub fn remove(&self, id: u64) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Every connected client.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Clients subscribed to `topic`/`channel`.
    pub fn subscribed_to(&self, topic: &str, channel: &str) -> Vec<Arc<ClientInfo>> {
        self.all()
            .into_iter()
            .filter(|c| {
                c.subscription
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(|(t, ch)| t == topic && ch == channel)
            })
            .collect()
    }
}
