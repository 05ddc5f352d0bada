//! The client's errors.

use thiserror::Error;

/// Everything a producer, consumer or lookupd query can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// Connecting, reading or writing failed.
    #[error("{addr}: {source}")]
    Io {
        /// The server's address.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server answered with an error frame, `E_CODE description`.
    #[error("{code} {description}")]
    Protocol {
        /// NSQ's error code, such as `E_BAD_TOPIC` or `E_PUB_FAILED`.
        code: String,
        /// The rest of the error frame.
        description: String,
    },
    /// The server sent bytes that are not protocol V2.
    #[error("{addr}: bad frame: {reason}")]
    BadFrame {
        /// The server's address.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// A connect or request took longer than the configured timeout.
    #[error("{0}: timed out")]
    Timeout(String),
    /// The connection closed before the answer arrived.
    #[error("{0}: connection closed")]
    Closed(String),
    /// A topic or channel name NSQ would refuse.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// An HTTP request got a non-200 answer or an unreadable body.
    #[error("{url}: {reason}")]
    Http {
        /// What was requested.
        url: String,
        /// The status or parse failure.
        reason: String,
    },
    /// TLS could not be set up (bad certificate files, handshake refused).
    #[error("TLS: {0}")]
    Tls(String),
    /// nsqd requires AUTH and no `auth_secret` is configured.
    #[error("{0}: nsqd requires AUTH (set auth_secret)")]
    AuthRequired(String),
    /// The consumer or producer has been stopped.
    #[error("stopped")]
    Stopped,
}

impl Error {
    /// NSQ's `E_*` code when the server refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Protocol { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Parses an error frame's data (`E_CODE description`).
    pub fn from_frame(data: &[u8]) -> Error {
        let text = String::from_utf8_lossy(data);
        let (code, description) = text.split_once(' ').unwrap_or((&text, ""));
        Error::Protocol {
            code: code.to_string(),
            description: description.to_string(),
        }
    }

    pub(crate) fn io(addr: &str, source: std::io::Error) -> Error {
        Error::Io {
            addr: addr.to_string(),
            source,
        }
    }
}

/// Shorthand for results of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;
