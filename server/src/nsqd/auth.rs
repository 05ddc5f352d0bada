//! AUTH: NSQ's auth server protocol. nsqd asks an `--auth-http-address`
//! (`GET /auth?common_name=&remote_ip=&secret=&tls=`) what a secret may do, and keeps the
//! answer for its `ttl`. Permissions are regular expressions over topic and channel names.

use regex::Regex;
use std::time::{Duration, Instant};

/// Why an auth server's answer could not be had or used. Clients only ever see NSQ's
/// `E_AUTH_FAILED AUTH failed`; this goes to the log.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The server could not be reached, timed out, or answered other than 200.
    #[error("{0}")]
    Http(String),
    /// The answer was not the JSON NSQ's protocol describes.
    #[error("bad answer: {0}")]
    BadAnswer(String),
    /// The answer's `ttl` is not positive.
    #[error("invalid TTL {0} (must be >0)")]
    BadTtl(i64),
    /// A permission other than `subscribe` or `publish`.
    #[error("unknown permission {0}")]
    UnknownPermission(String),
    /// A topic or channel pattern that is not a regular expression.
    #[error("unable to compile {what} {pattern:?} {reason}")]
    BadPattern {
        /// `topic` or `channel`.
        what: &'static str,
        /// The pattern.
        pattern: String,
        /// The compiler's complaint.
        reason: String,
    },
    /// No auth server is configured (cannot happen once AUTH is enabled).
    #[error("no auth server configured")]
    NoServer,
}

/// The auth server's JSON (NSQ's field names; unknown fields ignored).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Answer {
    ttl: i64,
    authorizations: Vec<AnswerAuthorization>,
    identity: String,
    identity_url: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct AnswerAuthorization {
    topic: String,
    channels: Vec<String>,
    permissions: Vec<String>,
}

/// One grant: a topic pattern, channel patterns and what is allowed on them.
#[derive(Debug, Clone)]
pub struct Authorization {
    topic: Regex,
    channels: Vec<Regex>,
    publish: bool,
    subscribe: bool,
}

impl Authorization {
    /// NSQ's rule: `subscribe` when a channel is named, else `publish`; the topic must match,
    /// and so must one channel pattern (publishing checks them against the empty name).
    /// Patterns match anywhere in the name unless anchored, as Go's `MatchString`.
    fn allows(&self, topic: &str, channel: &str) -> bool {
        let permitted = if channel.is_empty() {
            self.publish
        } else {
            self.subscribe
        };
        permitted && self.topic.is_match(topic) && self.channels.iter().any(|c| c.is_match(channel))
    }
}

/// What a secret may do, until `expires`.
#[derive(Debug, Clone)]
pub struct AuthState {
    /// Who the auth server says the client is.
    pub identity: String,
    /// A link about that identity.
    pub identity_url: String,
    /// The grants.
    pub authorizations: Vec<Authorization>,
    /// When to ask the auth server again.
    pub expires: Instant,
}

impl AuthState {
    /// Whether any grant allows `topic` (and `channel`; empty for publishing).
    pub fn allows(&self, topic: &str, channel: &str) -> bool {
        self.authorizations.iter().any(|a| a.allows(topic, channel))
    }

    /// Whether the TTL has run out.
    pub fn is_expired(&self) -> bool {
        self.expires <= Instant::now()
    }
}

fn compile(what: &'static str, pattern: &str) -> Result<Regex, AuthError> {
    Regex::new(pattern).map_err(|e| AuthError::BadPattern {
        what,
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

impl Answer {
    fn into_state(self) -> Result<AuthState, AuthError> {
        let mut authorizations = Vec::with_capacity(self.authorizations.len());
        for a in self.authorizations {
            let (mut publish, mut subscribe) = (false, false);
            for p in &a.permissions {
                match p.as_str() {
                    "publish" => publish = true,
                    "subscribe" => subscribe = true,
                    other => return Err(AuthError::UnknownPermission(other.to_string())),
                }
            }
            authorizations.push(Authorization {
                topic: compile("topic", &a.topic)?,
                channels: a
                    .channels
                    .iter()
                    .map(|c| compile("channel", c))
                    .collect::<Result<_, _>>()?,
                publish,
                subscribe,
            });
        }
        if self.ttl <= 0 {
            return Err(AuthError::BadTtl(self.ttl));
        }
        Ok(AuthState {
            identity: self.identity,
            identity_url: self.identity_url,
            authorizations,
            expires: Instant::now() + Duration::from_secs(self.ttl as u64),
        })
    }
}

/// What nsqd tells the auth server about a client.
#[derive(Debug, Clone, Default)]
pub struct AuthQuery {
    /// The client's IP.
    pub remote_ip: String,
    /// Whether the connection upgraded to TLS.
    pub tls: bool,
    /// The secret from AUTH.
    pub secret: String,
    /// The client certificate's common name (empty without one).
    pub common_name: String,
}

/// The configured auth servers and the HTTP client that asks them.
#[derive(Debug, Clone)]
pub struct AuthClient {
    servers: Vec<String>,
    http: reqwest::Client,
}

/// NSQ's endpoint for an `--auth-http-address`: a URL as given, else `http://<addr>/auth`.
pub fn endpoint(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}/auth")
    }
}

impl AuthClient {
    /// A client for `servers` with NSQ's connect and request timeouts. HTTPS auth servers are
    /// verified against `root_ca_file` when given, else the system's roots.
    pub fn new(
        servers: Vec<String>,
        root_ca_file: Option<&std::path::Path>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, AuthError> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match root_ca_file {
            Some(path) => {
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| AuthError::Http(format!("{}: {e}", path.display())))?;
                for cert in certs.flatten() {
                    let _ = roots.add(cert);
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(super::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| AuthError::Http(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .build()
            .map_err(|e| AuthError::Http(e.to_string()))?;
        Ok(AuthClient { servers, http })
    }

    /// Asks the servers in turn (from a random one, as NSQ) until one answers usably.
    pub async fn query(&self, query: &AuthQuery) -> Result<AuthState, AuthError> {
        let n = self.servers.len();
        let start = if n > 0 {
            rand::random::<usize>() % n
        } else {
            0
        };
        let mut last = AuthError::NoServer;
        for i in 0..n {
            let server = &self.servers[(start + i) % n];
            match self.query_one(server, query).await {
                Ok(state) => return Ok(state),
                Err(e) => {
                    tracing::warn!("Error: failed auth against {server} {e}");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn query_one(&self, server: &str, query: &AuthQuery) -> Result<AuthState, AuthError> {
        let tls = if query.tls { "true" } else { "false" };
        // Go's url.Values encodes its keys in sorted order.
        let response = self
            .http
            .get(endpoint(server))
            .query(&[
                ("common_name", query.common_name.as_str()),
                ("remote_ip", query.remote_ip.as_str()),
                ("secret", query.secret.as_str()),
                ("tls", tls),
            ])
            .send()
            .await
            .map_err(|e| AuthError::Http(describe(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| AuthError::Http(describe(&e)))?;
        if status != reqwest::StatusCode::OK {
            return Err(AuthError::Http(format!(
                "got response {status} {:?}",
                String::from_utf8_lossy(&body)
            )));
        }
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|e| AuthError::BadAnswer(e.to_string()))?;
        answer.into_state()
    }
}

/// reqwest's error with its causes (its own text alone says only "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(json: &str) -> Result<AuthState, AuthError> {
        serde_json::from_str::<Answer>(json)
            .expect("JSON")
            .into_state()
    }

    #[test]
    fn grants_follow_nsqs_rules() {
        let s = state(
            r#"{"ttl": 60, "identity": "u", "authorizations": [
                {"topic": "^orders$", "channels": [".*"], "permissions": ["publish"]},
                {"topic": "^orders$", "channels": ["^billing$"], "permissions": ["subscribe"]}]}"#,
        )
        .expect("valid");
        assert!(s.allows("orders", ""));
        assert!(!s.allows("orders2", ""));
        assert!(s.allows("orders", "billing"));
        assert!(!s.allows("orders", "audit"));
        assert!(!s.is_expired());
        // Without a channel pattern matching "", publishing is not allowed (as in NSQ).
        let s = state(r#"{"ttl": 1, "authorizations": [{"topic": ".*", "channels": ["^x$"], "permissions": ["publish", "subscribe"]}]}"#)
            .expect("valid");
        assert!(!s.allows("t", ""));
        assert!(s.allows("t", "x"));
    }

    #[test]
    fn bad_answers_are_errors() {
        assert!(matches!(
            state(r#"{"ttl": 0, "authorizations": []}"#),
            Err(AuthError::BadTtl(0))
        ));
        assert!(matches!(
            state(
                r#"{"ttl": 5, "authorizations": [{"topic": ".*", "channels": [], "permissions": ["admin"]}]}"#
            ),
            Err(AuthError::UnknownPermission(_))
        ));
        assert!(matches!(
            state(
                r#"{"ttl": 5, "authorizations": [{"topic": "(", "channels": [], "permissions": []}]}"#
            ),
            Err(AuthError::BadPattern { .. })
        ));
        assert_eq!(endpoint("127.0.0.1:4181"), "http://127.0.0.1:4181/auth");
        assert_eq!(endpoint("https://a.example/x"), "https://a.example/x");
    }
}
