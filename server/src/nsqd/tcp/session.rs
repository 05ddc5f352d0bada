//! The session: IDENTIFY negotiation, the TLS upgrade, and AUTH with its checks.

use super::Connection;
use crate::nsqd::auth::{AuthQuery, AuthState};
use crate::nsqd::clients::Identity;
use crate::nsqd::compression::{Compression, StreamDecoder, StreamEncoder};
use crate::nsqd::identify::{self, IdentifyRequest};
use crate::protocol::ProtocolError;
use bytes::BytesMut;

impl Connection {
    pub(super) async fn identify(&mut self, body: &[u8]) -> Result<(), ProtocolError> {
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
    pub(super) async fn authenticate(&mut self, secret: &[u8]) -> Result<(), ProtocolError> {
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
    pub(super) async fn check_auth(
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
}
