//! The connected TCP clients, as `/stats` shows them.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
}

/// The IDENTIFY facts `/stats` reports.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    pub deflate: bool,
    pub snappy: bool,
    pub sample_rate: i32,
    pub msg_timeout_ms: i64,
}

/// One client in `/stats` JSON (NSQ's field names).
#[derive(Debug, Serialize)]
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
    pub tls: bool,
    pub tls_cipher_suite: &'static str,
    pub tls_version: &'static str,
    pub tls_negotiated_protocol: &'static str,
    pub tls_negotiated_protocol_is_mutual: bool,
    pub pub_counts: Vec<serde_json::Value>,
}

impl ClientInfo {
    /// The client as `/stats` shows it.
    pub fn stats(&self) -> ClientStats {
        let identity = self
            .identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let subscribed = self
            .subscription
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        ClientStats {
            client_id: identity.client_id,
            hostname: identity.hostname,
            version: "V2",
            remote_address: self.remote_address.clone(),
            // NSQ's stateSubscribed = 3, stateConnected = 1.
            state: if subscribed { 3 } else { 1 },
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
            tls: false,
            tls_cipher_suite: "",
            tls_version: "",
            tls_negotiated_protocol: "",
            tls_negotiated_protocol_is_mutual: false,
            pub_counts: Vec::new(),
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
        let info = Arc::new(ClientInfo {
            id,
            remote_address,
            connect_ts,
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
