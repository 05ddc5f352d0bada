//! NSQ-style 16-byte message ids.
//!
//! NSQ clients treat an id as 16 opaque bytes (in practice ASCII hex) and echo it in
//! `FIN`/`REQ`/`TOUCH`. Ours are the 16 lowercase hex digits of `offset + salt` (wrapping),
//! where `salt` is a random number fixed when the topic is created: the id is stable across
//! redeliveries and restarts, unique per topic incarnation, and maps back to the log offset
//! without a lookup table.

use std::fmt;

/// A 16-byte message id as NSQ clients see it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

const HEX: &[u8; 16] = b"0123456789abcdef";

impl MessageId {
    /// The id of the message at `offset` in a topic with this `salt`.
    pub fn for_offset(salt: u64, offset: u64) -> Self {
        let value = offset.wrapping_add(salt);
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = HEX[((value >> (60 - 4 * i)) & 0xf) as usize];
        }
        MessageId(out)
    }

    /// The log offset this id names in a topic with this `salt`, or `None` if it is not one of ours.
    pub fn offset(&self, salt: u64) -> Option<u64> {
        let mut value: u64 = 0;
        for &c in &self.0 {
            let digit = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            value = (value << 4) | u64::from(digit);
        }
        Some(value.wrapping_sub(salt))
    }

    /// Builds an id from raw bytes, if there are exactly 16.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(MessageId)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_offsets() {
        for salt in [0, 1, u64::MAX, 0x1234_5678_9abc_def0] {
            for offset in [0, 1, 255, u64::MAX / 3, u64::MAX] {
                let id = MessageId::for_offset(salt, offset);
                assert_eq!(id.offset(salt), Some(offset));
                assert!(id.0.iter().all(u8::is_ascii_hexdigit));
            }
        }
    }

    #[test]
    fn rejects_foreign_ids() {
        assert_eq!(MessageId(*b"0123456789abcdeX").offset(0), None);
        assert_eq!(MessageId(*b"0123456789ABCDEF").offset(0), None);
        assert!(MessageId::from_slice(b"short").is_none());
    }
}
