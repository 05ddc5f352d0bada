//! One record of a segment: a message, framed with its length and checksum.
//!
//! ```text
//! u32  len          bytes after the crc field: 40 + body length
//! u32  crc32        crc32 (IEEE, crc32fast) of those bytes
//! u64  offset       topic-wide sequence number
//! [16] id           NSQ message id
//! i64  timestamp    publish time, Unix ns
//! i64  deliver_at   0, or the DPUB time before which no channel delivers it
//! ...  body
//! ```
//! All integers are big-endian, like NSQ's wire protocol.

use crate::id::MessageId;
use bytes::{BufMut, Bytes};

/// Bytes before the body: length, crc, offset, id, timestamp, deliver-at.
pub const RECORD_HEADER_LEN: usize = 48;
/// The part of the header counted by the length field.
const COVERED_HEADER_LEN: usize = 40;

/// A message as stored in the log and handed to channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Topic-wide sequence number.
    pub offset: u64,
    /// NSQ message id.
    pub id: MessageId,
    /// Publish time, Unix nanoseconds.
    pub timestamp: i64,
    /// 0, or the time (Unix ns) before which the message is not delivered (DPUB).
    pub deliver_at: i64,
    /// The payload.
    pub body: Bytes,
}

/// The size of a record holding a body of `body_len` bytes.
pub fn record_len(body_len: usize) -> usize {
    RECORD_HEADER_LEN + body_len
}

/// Appends one encoded record to `out`.
pub fn encode(
    out: &mut Vec<u8>,
    offset: u64,
    id: &MessageId,
    timestamp: i64,
    deliver_at: i64,
    body: &[u8],
) {
    let start = out.len();
    let covered = COVERED_HEADER_LEN + body.len();
    out.reserve(RECORD_HEADER_LEN + body.len());
    out.put_u32(covered as u32);
    out.put_u32(0); // crc, filled in below
    out.put_u64(offset);
    out.put_slice(&id.0);
    out.put_i64(timestamp);
    out.put_i64(deliver_at);
    out.put_slice(body);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Why bytes at a position are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes remain than the record needs (a torn write, or simply the end of the data).
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The length field is impossible (smaller than the header, or above the limit).
    BadLength(u32),
    /// The checksum does not match.
    BadChecksum {
        /// Checksum stored in the record.
        stored: u32,
        /// Checksum of the bytes.
        computed: u32,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated { needed, available } => {
                write!(
                    f,
                    "record truncated: needs {needed} bytes, {available} present"
                )
            }
            DecodeError::BadLength(len) => write!(f, "impossible record length {len}"),
            DecodeError::BadChecksum { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch: stored {stored:08x}, computed {computed:08x}"
                )
            }
        }
    }
}

/// Decodes the record at the start of `data`. Returns the message (its body a zero-copy slice
/// of `data`) and the record's total length. `max_body` bounds the length field, so garbage
/// never makes the reader trust a huge length.
pub fn decode(data: &Bytes, max_body: usize) -> Result<(Message, usize), DecodeError> {
    let available = data.len();
    if available < RECORD_HEADER_LEN {
        return Err(DecodeError::Truncated {
            needed: RECORD_HEADER_LEN,
            available,
        });
    }
    let covered = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let covered_len = covered as usize;
    if covered_len < COVERED_HEADER_LEN || covered_len - COVERED_HEADER_LEN > max_body {
        return Err(DecodeError::BadLength(covered));
    }
    let total = covered_len + 8;
    if available < total {
        return Err(DecodeError::Truncated {
            needed: total,
            available,
        });
    }
    let stored = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let computed = crc32fast::hash(&data[8..total]);
    if stored != computed {
        return Err(DecodeError::BadChecksum { stored, computed });
    }
    let be_u64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let mut id = [0u8; 16];
    id.copy_from_slice(&data[16..32]);
    let message = Message {
        offset: be_u64(8),
        id: MessageId(id),
        timestamp: be_u64(32) as i64,
        deliver_at: be_u64(40) as i64,
        body: data.slice(RECORD_HEADER_LEN..total),
    };
    Ok((message, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(offset: u64, body: &[u8]) -> Bytes {
        let mut out = Vec::new();
        encode(
            &mut out,
            offset,
            &MessageId::for_offset(7, offset),
            11,
            12,
            body,
        );
        Bytes::from(out)
    }

    #[test]
    fn round_trip() {
        let data = one(42, b"hello");
        assert_eq!(data.len(), record_len(5));
        let (m, len) = decode(&data, 1024).expect("valid record");
        assert_eq!(len, data.len());
        assert_eq!((m.offset, m.timestamp, m.deliver_at), (42, 11, 12));
        assert_eq!(m.id, MessageId::for_offset(7, 42));
        assert_eq!(&m.body[..], b"hello");
    }

    #[test]
    fn detects_damage() {
        let data = one(1, b"payload");
        for cut in 0..data.len() {
            assert!(matches!(
                decode(&data.slice(..cut), 1024),
                Err(DecodeError::Truncated { .. })
            ));
        }
        for at in 4..data.len() {
            let mut bad = data.to_vec();
            bad[at] ^= 0x10;
            assert!(matches!(
                decode(&Bytes::from(bad), 1024),
                Err(DecodeError::BadChecksum { .. })
            ));
        }
        let mut huge = data.to_vec();
        huge[0] = 0x7f;
        assert!(matches!(
            decode(&Bytes::from(huge), 1024),
            Err(DecodeError::BadLength(_))
        ));
        assert!(matches!(
            decode(&Bytes::from(vec![0u8; 64]), 1024),
            Err(DecodeError::BadLength(0))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&Bytes::from(bytes), 100);
        }

        #[test]
        fn any_message_round_trips(offset: u64, ts: i64, at: i64, body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            encode(&mut out, offset, &MessageId::for_offset(3, offset), ts, at, &body);
            let (m, len) = decode(&Bytes::from(out.clone()), 300).expect("valid");
            prop_assert_eq!(len, out.len());
            prop_assert_eq!((m.offset, m.timestamp, m.deliver_at), (offset, ts, at));
            prop_assert_eq!(&m.body[..], &body[..]);
        }
    }
}
