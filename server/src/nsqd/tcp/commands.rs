//! Parsing the input into commands and dispatching each to its handler.

use super::{CloseReason, Connection};
use crate::nsqd::tls::TlsRequired;
use crate::protocol::{self, Command, ProtocolError};
use std::sync::atomic::Ordering;

impl Connection {
    pub(super) async fn process_commands(&mut self) -> Result<(), CloseReason> {
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
    pub(super) fn fail(&mut self, e: ProtocolError) -> Result<(), CloseReason> {
        protocol::encode_error(&mut self.output, e.to_string().as_bytes());
        if e.is_fatal() {
            return Err(e.to_string());
        }
        Ok(())
    }

    pub(super) fn respond(&mut self, data: &[u8]) {
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
}
