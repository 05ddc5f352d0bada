//! A tiny blocking HTTP client that reports every status (4xx/5xx included).

use std::time::Duration;

/// A status and body.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The HTTP status, or 0 when the server could not be reached.
    pub status: u16,
    /// The body as text.
    pub body: String,
    /// The `Content-Type` header.
    pub content_type: String,
}

impl HttpReply {
    /// The body parsed as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> HttpReply {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(_)) => {
            return HttpReply {
                status: 0,
                body: String::new(),
                content_type: String::new(),
            }
        }
    };
    let status = response.status();
    let content_type = response.header("Content-Type").unwrap_or("").to_string();
    let body = response.into_string().unwrap_or_default();
    HttpReply {
        status,
        body,
        content_type,
    }
}

/// `GET url`.
pub fn http_get(url: &str) -> HttpReply {
    reply(agent().get(url).call())
}

/// `POST url` with `body`.
pub fn http_post(url: &str, body: &[u8]) -> HttpReply {
    reply(agent().post(url).send_bytes(body))
}

/// Any method.
pub fn http_request(method: &str, url: &str, body: &[u8]) -> HttpReply {
    reply(agent().request(method, url).send_bytes(body))
}

/// Status, `Allow` header, `X-NSQ-Content-Type` header and body of any request.
/// A reply with the headers NSQ conformance checks look at.
pub struct Answer {
    /// Status.
    pub status: u16,
    /// `Allow` header.
    pub allow: String,
    /// `X-NSQ-Content-Type` header.
    pub nsq_type: String,
    /// Body text.
    pub body: String,
}

/// Any method; panics when the server cannot be reached.
pub fn call(method: &str, url: &str, body: &[u8]) -> Answer {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let response = match agent.request(method, url).send_bytes(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    Answer {
        status: response.status(),
        allow: response.header("Allow").unwrap_or("").to_string(),
        nsq_type: response
            .header("X-NSQ-Content-Type")
            .unwrap_or("")
            .to_string(),
        body: response.into_string().unwrap_or_default(),
    }
}

/// Expects `status` and the JSON error `{"message": message}`.
pub fn expect_error(
    nsqd: &crate::Nsqd,
    method: &str,
    path: &str,
    body: &[u8],
    status: u16,
    message: &str,
) {
    let a = call(method, &nsqd.url(path), body);
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            status,
            serde_json::json!({ "message": message })
                .to_string()
                .as_str()
        ),
        "{method} {path}"
    );
}
