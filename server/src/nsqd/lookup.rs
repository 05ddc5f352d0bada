//! nsqd's side of discovery: one task per nsqlookupd keeps a TCP V1 connection, identifies,
//! registers every topic and channel, follows topics and channels as they come and go, PINGs
//! every 15 s, and reconnects with backoff (re-registering everything) when the connection
//! drops. The set of lookupds can change at runtime (`/config/nsqlookupd_tcp_addresses`).
//!
//! Topology changes are pushed, not polled: the engine wakes every session as it creates or
//! deletes a topic or channel, so lookupd lists a new topic within milliseconds, as NSQ's
//! does (a consumer looking it up right after creating it must not get `TOPIC_NOT_FOUND` and
//! then wait out go-nsq's 60 s lookup interval).

use super::context::Nsqd;
use crate::protocol::{decode_lookup_reply, LookupCommand, MAGIC_V1};
use bytes::BytesMut;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// NSQ's interval between PINGs.
const PING_INTERVAL: Duration = Duration::from_secs(15);
/// How often the lookupd list (`/config`) is checked.
const POLL: Duration = Duration::from_millis(100);
/// How long a connect or a reply may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// First and last delay between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What nsqd tells lookupd about itself.
#[derive(Debug, Clone)]
pub struct Advertised {
    /// `--broadcast-address`.
    pub address: String,
    /// `--broadcast-tcp-port`, or the TCP port listened on.
    pub tcp_port: u16,
    /// `--broadcast-http-port`, or the HTTP port listened on.
    pub http_port: u16,
}

/// Keeps one registration task per configured lookupd until `shutdown` flips.
pub async fn run(nsqd: Arc<Nsqd>, advertised: Advertised, mut shutdown: watch::Receiver<bool>) {
    let (topology_tx, topology) = watch::channel(nsqd.engine.topology_generation());
    nsqd.engine.on_topology_change(move |generation| {
        topology_tx.send_replace(generation);
    });
    let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        let wanted: BTreeSet<String> = nsqd
            .lookupd_addresses
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        tasks.retain(|address, task| {
            let keep = wanted.contains(address);
            if !keep {
                tracing::info!("LOOKUP({address}): removed");
                task.abort();
            }
            keep
        });
        for address in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(address) {
                let address = slot.key().clone();
                tracing::info!("LOOKUP({address}): adding peer");
                slot.insert(tokio::spawn(peer(
                    nsqd.clone(),
                    address,
                    advertised.clone(),
                    topology.clone(),
                    shutdown.clone(),
                )));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => break,
        }
    }
    for (_, task) in tasks {
        let _ = task.await;
    }
}

/// One lookupd: connect, serve a session, back off, again. `topology` changes with the
/// engine's topology generation.
async fn peer(
    nsqd: Arc<Nsqd>,
    address: String,
    advertised: Advertised,
    mut topology: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut session = Session {
            nsqd: &nsqd,
            address: &address,
            stream: None,
            input: BytesMut::new(),
        };
        match session
            .run(&advertised, &mut backoff, &mut topology, &mut shutdown)
            .await
        {
            Ok(()) => return,
            Err(e) => tracing::warn!("LOOKUP({address}): {e}; reconnecting in {backoff:?}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// What is registered: topics without channels as `(topic, None)`, channels as `(topic, Some)`.
type Registered = BTreeSet<(String, Option<String>)>;

/// What should be registered, from the engine.
fn desired(nsqd: &Nsqd) -> Registered {
    let mut out = Registered::new();
    for topic in nsqd.engine.topics() {
        if topic.is_deleted() {
            continue;
        }
        let channels: Vec<String> = topic
            .channels()
            .iter()
            .filter(|c| !c.is_deleted())
            .map(|c| c.name().to_string())
            .collect();
        if channels.is_empty() {
            out.insert((topic.name().to_string(), None));
        }
        for channel in channels {
            out.insert((topic.name().to_string(), Some(channel)));
        }
    }
    out
}

/// The commands that move lookupd from `have` to `want`, in NSQ's terms: REGISTER topic
/// channel also registers the topic. A topic that goes is unregistered channel by channel,
/// then itself, as NSQ's nsqd does when it deletes a topic: only a channel's own UNREGISTER
/// makes lookupd drop an `#ephemeral` channel's registration.
fn changes(have: &Registered, want: &Registered) -> Vec<LookupCommand> {
    let topics = |set: &Registered| set.iter().map(|(t, _)| t.clone()).collect::<BTreeSet<_>>();
    let (had_topics, want_topics) = (topics(have), topics(want));
    let mut commands = Vec::new();
    for topic in had_topics.difference(&want_topics) {
        for (_, channel) in have.iter().filter(|(t, c)| t == topic && c.is_some()) {
            commands.push(LookupCommand::Unregister {
                topic: topic.clone(),
                channel: channel.clone(),
            });
        }
        commands.push(LookupCommand::Unregister {
            topic: topic.clone(),
            channel: None,
        });
    }
    for (topic, channel) in have.difference(want) {
        if let (Some(channel), true) = (channel, want_topics.contains(topic)) {
            commands.push(LookupCommand::Unregister {
                topic: topic.clone(),
                channel: Some(channel.clone()),
            });
        }
    }
    for (topic, channel) in want.difference(have) {
        let topic_known = had_topics.contains(topic);
        if channel.is_some() || !topic_known {
            commands.push(LookupCommand::Register {
                topic: topic.clone(),
                channel: channel.clone(),
            });
        }
    }
    commands
}

struct Session<'a> {
    nsqd: &'a Nsqd,
    address: &'a str,
    stream: Option<TcpStream>,
    input: BytesMut,
}

impl Session<'_> {
    async fn run(
        &mut self,
        advertised: &Advertised,
        backoff: &mut Duration,
        topology: &mut watch::Receiver<u64>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(self.address))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect failed: {e}"))?;
        let _ = stream.set_nodelay(true);
        self.stream = Some(stream);
        self.write(MAGIC_V1).await?;
        let identify = serde_json::json!({
            "version": super::VERSION,
            "tcp_port": advertised.tcp_port,
            "http_port": advertised.http_port,
            "hostname": super::options::hostname(),
            "broadcast_address": advertised.address,
        });
        let reply = self
            .command(LookupCommand::Identify(identify.to_string().into_bytes()))
            .await?;
        tracing::info!(
            "LOOKUPD({}): peer info {}",
            self.address,
            String::from_utf8_lossy(&reply)
        );
        *backoff = BACKOFF_MIN;
        let mut registered = Registered::new();
        let mut generation = None;
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        loop {
            // Marked seen before reading the topology, so a change made while the commands
            // below are sent wakes the next round.
            topology.borrow_and_update();
            let now = self.nsqd.engine.topology_generation();
            if generation != Some(now) {
                generation = Some(now);
                let want = desired(self.nsqd);
                for command in changes(&registered, &want) {
                    tracing::info!("LOOKUPD({}): {command}", self.address);
                    self.command(command).await?;
                }
                registered = want;
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err("not connected".into());
            };
            let mut probe = [0u8; 1];
            tokio::select! {
                changed = topology.changed() => {
                    if changed.is_err() {
                        return Ok(()); // nsqd is shutting its lookup task down
                    }
                }
                _ = ping.tick() => {
                    self.command(LookupCommand::Ping).await?;
                }
                // lookupd never speaks unasked: a readable socket means it closed (or broke).
                read = stream.peek(&mut probe) => {
                    return Err(match read {
                        Ok(0) => "lookupd closed the connection".to_string(),
                        Ok(_) => "unexpected data from lookupd".to_string(),
                        Err(e) => format!("read error: {e}"),
                    });
                }
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let stream = self.stream.as_mut().ok_or("not connected")?;
        tokio::time::timeout(IO_TIMEOUT, stream.write_all(bytes))
            .await
            .map_err(|_| "write timed out".to_string())?
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Sends a command and waits for its reply; an `E_*` reply is an error.
    async fn command(&mut self, command: LookupCommand) -> Result<Vec<u8>, String> {
        let mut buf = BytesMut::new();
        command.encode(&mut buf);
        self.write(&buf).await?;
        let stream = self.stream.as_mut().ok_or("not connected")?;
        let reply = tokio::time::timeout(IO_TIMEOUT, async {
            loop {
                match decode_lookup_reply(&mut self.input, 1 << 20) {
                    Ok(Some(reply)) => return Ok(reply),
                    Ok(None) => {}
                    Err(size) => return Err(format!("reply of {size} bytes is too large")),
                }
                match stream.read_buf(&mut self.input).await {
                    Ok(0) => return Err("lookupd closed the connection".to_string()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("read failed: {e}")),
                }
            }
        })
        .await
        .map_err(|_| "reply timed out".to_string())??;
        if reply.starts_with(b"E_") {
            return Err(format!(
                "{command:?} failed: {}",
                String::from_utf8_lossy(&reply)
            ));
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(&str, Option<&str>)]) -> Registered {
        items
            .iter()
            .map(|(t, c)| (t.to_string(), c.map(String::from)))
            .collect()
    }

    #[test]
    fn changes_follow_nsq_semantics() {
        let reg = |t: &str, c: Option<&str>| LookupCommand::Register {
            topic: t.into(),
            channel: c.map(String::from),
        };
        let unreg = |t: &str, c: Option<&str>| LookupCommand::Unregister {
            topic: t.into(),
            channel: c.map(String::from),
        };
        let empty = Registered::new();
        let a = set(&[("t", None), ("u", Some("c1")), ("u", Some("c2"))]);
        assert_eq!(
            changes(&empty, &a),
            vec![reg("t", None), reg("u", Some("c1")), reg("u", Some("c2"))]
        );
        // A topic gains its first channel: only the channel is new to lookupd.
        let b = set(&[("t", Some("c")), ("u", Some("c1"))]);
        assert_eq!(
            changes(&a, &b),
            vec![unreg("u", Some("c2")), reg("t", Some("c"))]
        );
        // A topic goes: its channels are unregistered, then the topic.
        assert_eq!(
            changes(&b, &set(&[("t", Some("c"))])),
            vec![unreg("u", Some("c1")), unreg("u", None)]
        );
        let many = set(&[("u", Some("a#ephemeral")), ("u", Some("b"))]);
        assert_eq!(
            changes(&many, &empty),
            vec![
                unreg("u", Some("a#ephemeral")),
                unreg("u", Some("b")),
                unreg("u", None)
            ]
        );
    }
}
