//! Multi-message bodies: the binary `[u32 count]([u32 size][data])*` form that TCP MPUB and
//! HTTP `/mpub?binary=true` share, and the newline-separated form of HTTP `/mpub`.

use bytes::Bytes;
use thiserror::Error;

/// Why a multi-message body was refused. The texts are NSQ's.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MpubError {
    /// The body is shorter than its message count.
    #[error("MPUB failed to read message count")]
    MissingCount,
    /// The count is ≤ 0 or more than the body size allows.
    #[error("MPUB invalid message count {0}")]
    BadCount(i32),
    /// A message's size field is cut off.
    #[error("MPUB failed to read message({0}) body size")]
    MissingSize(usize),
    /// A message's size is ≤ 0.
    #[error("MPUB invalid message({0}) body size {1}")]
    BadSize(usize, i32),
    /// A message is over `--max-msg-size`.
    #[error("MPUB message too big {0} > {1}")]
    MessageTooBig(usize, usize),
    /// A message's data is cut off.
    #[error("MPUB failed to read message body")]
    Truncated,
}

impl MpubError {
    /// The TCP error code (`E_BAD_BODY` for the envelope, `E_BAD_MESSAGE` for a message).
    pub fn protocol_code(&self) -> &'static str {
        match self {
            MpubError::MissingCount | MpubError::BadCount(_) => "E_BAD_BODY",
            _ => "E_BAD_MESSAGE",
        }
    }
}

fn read_u32(data: &[u8], at: usize) -> Option<i32> {
    let bytes = data.get(at..at + 4)?;
    Some(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Splits a binary multi-message body. Bytes after the last counted message are ignored,
/// as NSQ does.
pub fn parse_mpub_body(
    data: &[u8],
    max_msg_size: usize,
    max_body_size: usize,
) -> Result<Vec<Bytes>, MpubError> {
    let count = read_u32(data, 0).ok_or(MpubError::MissingCount)?;
    // Every message needs at least 5 bytes (size + one byte), as NSQ reckons.
    let max_messages = (max_body_size.saturating_sub(4) / 5) as i64;
    if count <= 0 || i64::from(count) > max_messages {
        return Err(MpubError::BadCount(count));
    }
    // Sized by what the body can hold, not by the count it claims (an 8-byte body may claim
    // a million messages).
    let mut messages = Vec::with_capacity((count as usize).min(data.len() / 5));
    let mut at = 4;
    for i in 0..count as usize {
        let size = read_u32(data, at).ok_or(MpubError::MissingSize(i))?;
        if size <= 0 {
            return Err(MpubError::BadSize(i, size));
        }
        let size = size as usize;
        if size > max_msg_size {
            return Err(MpubError::MessageTooBig(size, max_msg_size));
        }
        at += 4;
        let body = data.get(at..at + size).ok_or(MpubError::Truncated)?;
        messages.push(Bytes::copy_from_slice(body));
        at += size;
    }
    Ok(messages)
}

/// Splits an HTTP `/mpub` body: binary when `binary`, else one message per line (empty lines
/// skipped, as NSQ does).
pub fn split_http_mpub(
    body: &Bytes,
    binary: bool,
    max_msg_size: usize,
    max_body_size: usize,
) -> Result<Vec<Bytes>, HttpMpubError> {
    if body.len() > max_body_size {
        return Err(HttpMpubError::BodyTooBig);
    }
    if binary {
        return parse_mpub_body(body, max_msg_size, max_body_size).map_err(HttpMpubError::Binary);
    }
    let mut messages = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        if line.len() > max_msg_size {
            return Err(HttpMpubError::MessageTooBig);
        }
        messages.push(body.slice_ref(line));
    }
    Ok(messages)
}

/// Why an HTTP `/mpub` body was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HttpMpubError {
    /// Over `--max-body-size`.
    #[error("BODY_TOO_BIG")]
    BodyTooBig,
    /// A line over `--max-msg-size`.
    #[error("MSG_TOO_BIG")]
    MessageTooBig,
    /// A bad binary body.
    #[error("{0}")]
    Binary(MpubError),
}

impl HttpMpubError {
    /// NSQ's error text for the JSON `message`.
    pub fn code(&self) -> &'static str {
        match self {
            HttpMpubError::BodyTooBig => "BODY_TOO_BIG",
            HttpMpubError::MessageTooBig => "MSG_TOO_BIG",
            HttpMpubError::Binary(e) => &e.protocol_code()[2..],
        }
    }

    /// The HTTP status: 413 for all of them, as NSQ answers.
    pub fn status(&self) -> u16 {
        413
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_bodies_split_and_fail_like_nsq() {
        let body = b"\0\0\0\x02\0\0\0\x01a\0\0\0\x02bc";
        assert_eq!(
            parse_mpub_body(body, 10, 100).unwrap(),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        );
        assert_eq!(
            parse_mpub_body(b"\0\0", 10, 100),
            Err(MpubError::MissingCount)
        );
        assert_eq!(
            parse_mpub_body(b"\0\0\0\0", 10, 100),
            Err(MpubError::BadCount(0))
        );
        assert_eq!(
            parse_mpub_body(b"\0\0\0\x01\0\0\0\x05ab", 10, 100),
            Err(MpubError::Truncated)
        );
        assert_eq!(
            parse_mpub_body(b"\0\0\0\x01\0\0\0\x0b", 10, 100),
            Err(MpubError::MessageTooBig(11, 10))
        );
    }

    #[test]
    fn text_bodies_skip_empty_lines() {
        let body = Bytes::from_static(b"a\n\nbc\n");
        assert_eq!(
            split_http_mpub(&body, false, 10, 100).unwrap(),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
        );
        assert_eq!(
            split_http_mpub(&body, false, 1, 100),
            Err(HttpMpubError::MessageTooBig)
        );
        assert_eq!(
            split_http_mpub(&body, false, 10, 3),
            Err(HttpMpubError::BodyTooBig)
        );
        let e = split_http_mpub(&Bytes::from_static(b"\0\0"), true, 10, 100).unwrap_err();
        assert_eq!(e.code(), "BAD_BODY");
    }

    proptest::proptest! {
        /// The `http_mpub` fuzz target's property, bounded, in the normal suite.
        #[test]
        fn arbitrary_bodies_split_within_limits(
            binary: bool,
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let body = Bytes::from(data.clone());
            if let Ok(messages) = split_http_mpub(&body, binary, 64, 256) {
                proptest::prop_assert!(data.len() <= 256);
                for m in &messages {
                    proptest::prop_assert!(!m.is_empty() && m.len() <= 64);
                    proptest::prop_assert!(binary || !m.contains(&b'\n'));
                }
            }
        }
    }
}
