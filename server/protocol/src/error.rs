//! Protocol errors as NSQ reports them: an `E_*` code, a description, and whether the
//! connection closes afterwards.

use std::fmt;

/// An error to send to a client as an error frame (`E_CODE description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    code: String,
    description: String,
    fatal: bool,
}

impl ProtocolError {
    /// An error after which the server closes the connection (NSQ's `FatalClientErr`).
    pub fn fatal(code: &str, description: &str) -> Self {
        ProtocolError {
            code: code.to_string(),
            description: description.to_string(),
            fatal: true,
        }
    }

    /// An error the connection survives (NSQ's `ClientErr`, e.g. `E_FIN_FAILED`).
    pub fn non_fatal(code: &str, description: &str) -> Self {
        ProtocolError {
            code: code.to_string(),
            description: description.to_string(),
            fatal: false,
        }
    }

    /// Whether the connection must close after this error is sent.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// The `E_*` code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable part.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.description)
    }
}

impl std::error::Error for ProtocolError {}
