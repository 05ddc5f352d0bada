//! Delivery to a subscriber: SUB, RDY, taking from the channel, FIN/REQ/TOUCH on what it holds.

use super::{CloseReason, Connection, Subscription, TAKE_BATCH, TAKE_BYTES};
use crate::nsqd::e2e;
use crate::protocol::{self, ProtocolError};
use nsq_engine::{Channel, Delivery, Error as EngineError, MessageId};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl Connection {
    /// Writes the FINs of the commands just processed to the channel's journal (one write per
    /// read from the socket), so a crash does not deliver them again.
    pub(super) fn journal_finished(&self) {
        if let Some(sub) = &self.sub {
            if let Err(e) = sub.channel.write_finished() {
                tracing::warn!(topic = %sub.topic, error = %e, "journaling FINs failed; they are durable with the next cursor persist");
            }
        }
    }

    /// Whether a take would find something (after arming the wake-up, to close the race
    /// between "nothing to take" and "a publish arrived").
    pub(super) fn pump_probe(&mut self) -> bool {
        self.sub
            .as_ref()
            .is_some_and(|s| s.channel.has_deliverable(self.nsqd.engine.now()))
    }

    /// Forgets in-flight entries whose deadline passed (the engine requeues them).
    pub(super) fn expire_local(&mut self) {
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
    pub(super) fn pump(&mut self) -> Result<usize, CloseReason> {
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

    pub(super) async fn subscribe(
        &mut self,
        topic: &str,
        channel: &str,
    ) -> Result<(), ProtocolError> {
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

    pub(super) fn set_ready(&mut self, count: i64) -> Result<(), ProtocolError> {
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

    pub(super) fn finish(&mut self, id: &MessageId) -> Result<(), ProtocolError> {
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

    pub(super) fn requeue(&mut self, id: &MessageId, timeout_ms: i64) -> Result<(), ProtocolError> {
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

    pub(super) fn touch(&mut self, id: &MessageId) -> Result<(), ProtocolError> {
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
}

fn flight_reason(e: &EngineError) -> &'static str {
    match e {
        EngineError::NotOwner(_) => "client does not own message",
        _ => "ID not in flight",
    }
}
