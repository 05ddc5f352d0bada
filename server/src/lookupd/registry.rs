//! nsqlookupd's registration database: which producers (nsqd instances) have which topics and
//! channels, when each was last heard from, and which are tombstoned for a topic.
//!
//! Mirrors NSQ's `RegistrationDB`: a registration is `(category, key, subkey)` with category
//! `client` (every identified nsqd), `topic` (key = topic) or `channel` (key = topic, subkey =
//! channel). A registration can exist with no producers (created over HTTP, or left behind
//! when its producers went away), which is why `/topics` can list a topic `/lookup` has no
//! producers for.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a registration is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Every identified producer, key and subkey empty.
    Client,
    /// A topic: key = topic name.
    Topic,
    /// A channel: key = topic name, subkey = channel name.
    Channel,
}

impl Category {
    /// NSQ's name for it (as `/debug` shows).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Client => "client",
            Category::Topic => "topic",
            Category::Channel => "channel",
        }
    }
}

/// One registration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Registration {
    /// What it is about.
    pub category: Category,
    /// The topic (empty for clients).
    pub key: String,
    /// The channel (empty unless a channel).
    pub subkey: String,
}

impl Registration {
    /// The `client` registration.
    pub fn client() -> Self {
        Registration {
            category: Category::Client,
            key: String::new(),
            subkey: String::new(),
        }
    }

    /// A topic registration.
    pub fn topic(topic: &str) -> Self {
        Registration {
            category: Category::Topic,
            key: topic.to_string(),
            subkey: String::new(),
        }
    }

    /// A channel registration.
    pub fn channel(topic: &str, channel: &str) -> Self {
        Registration {
            category: Category::Channel,
            key: topic.to_string(),
            subkey: channel.to_string(),
        }
    }

    fn matches(&self, category: Category, key: &str, subkey: &str) -> bool {
        self.category == category
            && (key == "*" || self.key == key)
            && (subkey == "*" || self.subkey == subkey)
    }
}

/// What an nsqd said about itself in IDENTIFY, plus where it connected from.
#[derive(Debug, Serialize)]
pub struct PeerInfo {
    /// Unique per connection: the remote address.
    #[serde(skip)]
    pub id: String,
    /// The connection's remote address.
    pub remote_address: String,
    /// The nsqd's host name.
    pub hostname: String,
    /// The address consumers should connect to.
    pub broadcast_address: String,
    /// The nsqd's TCP port.
    pub tcp_port: u16,
    /// The nsqd's HTTP port.
    pub http_port: u16,
    /// The nsqd's version.
    pub version: String,
    /// Unix nanoseconds of the last IDENTIFY or PING.
    #[serde(skip)]
    pub last_update: AtomicI64,
}

impl PeerInfo {
    /// Records that the peer was heard from now.
    pub fn touch(&self) {
        self.last_update.store(unix_nanos(), Ordering::Relaxed);
    }

    /// Whether the peer was heard from within `timeout`.
    pub fn is_active(&self, timeout: Duration) -> bool {
        let idle = unix_nanos().saturating_sub(self.last_update.load(Ordering::Relaxed));
        u128::try_from(idle).unwrap_or(0) <= timeout.as_nanos()
    }
}

/// Unix time in nanoseconds.
pub fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// A producer of one registration.
#[derive(Debug, Clone)]
pub struct Producer {
    /// Who.
    pub peer: Arc<PeerInfo>,
    /// Unix nanoseconds when it was tombstoned for this registration, if it was.
    pub tombstoned_at: Option<i64>,
}

impl Producer {
    /// Whether a tombstone is in force (set less than `lifetime` ago).
    pub fn is_tombstoned(&self, lifetime: Duration) -> bool {
        self.tombstoned_at.is_some_and(|at| {
            let age = unix_nanos().saturating_sub(at);
            u128::try_from(age).unwrap_or(0) < lifetime.as_nanos()
        })
    }
}

/// The database. Not synchronised itself: the server keeps it behind a lock.
#[derive(Debug, Default)]
pub struct Registry {
    map: BTreeMap<Registration, HashMap<String, Producer>>,
}

impl Registry {
    /// Makes sure a registration exists (with or without producers).
    pub fn add_registration(&mut self, r: Registration) {
        self.map.entry(r).or_default();
    }

    /// Adds a producer to a registration (creating it); false if it was already there.
    pub fn add_producer(&mut self, r: Registration, peer: &Arc<PeerInfo>) -> bool {
        let producers = self.map.entry(r).or_default();
        if producers.contains_key(&peer.id) {
            return false;
        }
        producers.insert(
            peer.id.clone(),
            Producer {
                peer: peer.clone(),
                tombstoned_at: None,
            },
        );
        true
    }

    /// Removes a producer from a registration: (whether it was there, producers left).
    pub fn remove_producer(&mut self, r: &Registration, id: &str) -> (bool, usize) {
        match self.map.get_mut(r) {
            Some(producers) => {
                let removed = producers.remove(id).is_some();
                (removed, producers.len())
            }
            None => (false, 0),
        }
    }

    /// Removes a registration and its producers.
    pub fn remove_registration(&mut self, r: &Registration) {
        self.map.remove(r);
    }

    /// Registrations matching, `*` matching anything in key or subkey.
    pub fn find_registrations(
        &self,
        category: Category,
        key: &str,
        subkey: &str,
    ) -> Vec<Registration> {
        self.map
            .keys()
            .filter(|r| r.matches(category, key, subkey))
            .cloned()
            .collect()
    }

    /// Producers of the matching registrations, each peer once.
    pub fn find_producers(&self, category: Category, key: &str, subkey: &str) -> Vec<Producer> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (r, producers) in &self.map {
            if !r.matches(category, key, subkey) {
                continue;
            }
            let mut sorted: Vec<&Producer> = producers.values().collect();
            sorted.sort_by(|a, b| a.peer.id.cmp(&b.peer.id));
            for p in sorted {
                if seen.insert(p.peer.id.clone()) {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    /// Every registration a peer is a producer of.
    pub fn lookup_registrations(&self, id: &str) -> Vec<Registration> {
        self.map
            .iter()
            .filter(|(_, producers)| producers.contains_key(id))
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Tombstones, for `topic`, every producer whose `broadcast_address:http_port` is `node`.
    pub fn tombstone(&mut self, topic: &str, node: &str) -> usize {
        let Some(producers) = self.map.get_mut(&Registration::topic(topic)) else {
            return 0;
        };
        let now = unix_nanos();
        let mut count = 0;
        for p in producers.values_mut() {
            if format!("{}:{}", p.peer.broadcast_address, p.peer.http_port) == node {
                p.tombstoned_at = Some(now);
                count += 1;
            }
        }
        count
    }

    /// Every registration with its producers, for `/debug`.
    pub fn all(&self) -> impl Iterator<Item = (&Registration, &HashMap<String, Producer>)> {
        self.map.iter()
    }
}

/// Producers heard from within `inactive` and not tombstoned within `tombstone_lifetime`.
pub fn filter_active(
    producers: Vec<Producer>,
    inactive: Duration,
    tombstone_lifetime: Duration,
) -> Vec<Producer> {
    producers
        .into_iter()
        .filter(|p| p.peer.is_active(inactive) && !p.is_tombstoned(tombstone_lifetime))
        .collect()
}

/// Distinct keys (topic names) of registrations, sorted.
pub fn keys(registrations: &[Registration]) -> Vec<String> {
    let set: BTreeSet<&str> = registrations.iter().map(|r| r.key.as_str()).collect();
    set.into_iter().map(String::from).collect()
}

/// Distinct subkeys (channel names) of registrations, sorted.
pub fn subkeys(registrations: &[Registration]) -> Vec<String> {
    let set: BTreeSet<&str> = registrations.iter().map(|r| r.subkey.as_str()).collect();
    set.into_iter().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str) -> Arc<PeerInfo> {
        let p = PeerInfo {
            id: id.into(),
            remote_address: id.into(),
            hostname: "h".into(),
            broadcast_address: "b".into(),
            tcp_port: 4150,
            http_port: 4151,
            version: "1.3.0".into(),
            last_update: AtomicI64::new(0),
        };
        p.touch();
        Arc::new(p)
    }

    #[test]
    fn producers_come_and_go() {
        let mut db = Registry::default();
        let a = peer("a");
        let b = peer("b");
        assert!(db.add_producer(Registration::topic("t"), &a));
        assert!(!db.add_producer(Registration::topic("t"), &a));
        db.add_producer(Registration::channel("t", "c"), &b);
        db.add_producer(Registration::topic("t"), &b);
        assert_eq!(db.find_producers(Category::Topic, "t", "").len(), 2);
        assert_eq!(
            subkeys(&db.find_registrations(Category::Channel, "t", "*")),
            vec!["c"]
        );
        assert_eq!(
            db.remove_producer(&Registration::topic("t"), "a"),
            (true, 1)
        );
        assert_eq!(db.lookup_registrations("b").len(), 2);
        // Registrations outlive their producers.
        db.remove_producer(&Registration::topic("t"), "b");
        assert_eq!(
            keys(&db.find_registrations(Category::Topic, "*", "")),
            vec!["t"]
        );
    }

    #[test]
    fn tombstones_expire() {
        let mut db = Registry::default();
        db.add_producer(Registration::topic("t"), &peer("a"));
        assert_eq!(db.tombstone("t", "b:4151"), 1);
        let all = db.find_producers(Category::Topic, "t", "");
        let long = Duration::from_secs(60);
        assert!(filter_active(all.clone(), long, long).is_empty());
        assert_eq!(filter_active(all, long, Duration::ZERO).len(), 1);
    }
}
