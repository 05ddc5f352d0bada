//! The small-file framing shared by cursor and metadata files.
//!
//! Version 3 (written) frames like version 2; only the metadata payload changed (see
//! [`crate::meta`]), so a cursor file reads the same under all three.
//!
//! Version 2:
//! `[8] magic | u32 version | u32 payload length | u32 crc32 of payload | u32 crc32 of the
//! previous 20 bytes | payload (bincode)`. The header checksum is checked before the version
//! is believed, so one flipped bit anywhere is damage (`Corrupt`, which repair rebuilds), never
//! a version from the future that bricks the directory.
//!
//! Version 1 (still read): the same without the header checksum (20-byte header).

use crate::error::{Error, Result};
use bytes::BufMut;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Length of the frame header this build writes (versions 2 and 3).
pub const HEADER_LEN: usize = 24;
/// Length of a version 1 frame header (no header checksum).
pub const V1_HEADER_LEN: usize = 20;
/// The framing version this build writes and the highest it reads.
pub const VERSION: u32 = 3;

/// Frames `value` under `magic` (version [`VERSION`]).
pub fn encode<T: Serialize>(magic: &[u8; 8], value: &T) -> Vec<u8> {
    // Serializing plain structs of integers, strings and vectors into memory cannot fail.
    let payload = bincode::serialize(value).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.put_slice(magic);
    out.put_u32(VERSION);
    out.put_u32(payload.len() as u32);
    out.put_u32(crc32fast::hash(&payload));
    let header_crc = crc32fast::hash(&out);
    out.put_u32(header_crc);
    out.put_slice(&payload);
    out
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the frame (any version up to [`VERSION`]) and decodes its payload.
pub fn decode<T: DeserializeOwned>(path: &Path, magic: &[u8; 8], bytes: &[u8]) -> Result<T> {
    decode_with(path, magic, bytes, |_, payload| {
        bincode::deserialize(payload)
    })
}

/// Checks the frame and decodes its payload with `decode`, given the frame's version (for a
/// payload whose layout changed between versions).
pub fn decode_with<T>(
    path: &Path,
    magic: &[u8; 8],
    bytes: &[u8],
    decode: impl FnOnce(u32, &[u8]) -> bincode::Result<T>,
) -> Result<T> {
    if bytes.len() < V1_HEADER_LEN || &bytes[..8] != magic {
        return Err(Error::corrupt(path, 0, "bad magic or truncated header"));
    }
    let version = word(bytes, 8);
    let header_len = if version == 1 {
        V1_HEADER_LEN
    } else {
        if bytes.len() < HEADER_LEN {
            return Err(Error::corrupt(path, 0, "truncated header"));
        }
        if word(bytes, 20) != crc32fast::hash(&bytes[..20]) {
            return Err(Error::corrupt(path, 20, "header checksum mismatch"));
        }
        if version == 0 || version > VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: VERSION,
            });
        }
        HEADER_LEN
    };
    let len = word(bytes, 12) as usize;
    let payload = &bytes[header_len..];
    if payload.len() != len {
        return Err(Error::corrupt(
            path,
            12,
            format!("payload is {} bytes, header says {len}", payload.len()),
        ));
    }
    if crc32fast::hash(payload) != word(bytes, 16) {
        return Err(Error::corrupt(path, 16, "checksum mismatch"));
    }
    decode(version, payload).map_err(|e| Error::corrupt(path, header_len as u64, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"NSQRTEST";

    /// A version 1 frame, as builds before version 2 wrote them.
    fn encode_v1(value: &Vec<u64>) -> Vec<u8> {
        let payload = bincode::serialize(value).expect("serialize");
        let mut out = Vec::new();
        out.put_slice(MAGIC);
        out.put_u32(1);
        out.put_u32(payload.len() as u32);
        out.put_u32(crc32fast::hash(&payload));
        out.put_slice(&payload);
        out
    }

    #[test]
    fn every_flipped_bit_is_damage_never_a_future_version() {
        let value = vec![1u64, 2, 3];
        let bytes = encode(MAGIC, &value);
        let p = Path::new("f");
        assert_eq!(decode::<Vec<u64>>(p, MAGIC, &bytes).expect("valid"), value);
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[at] ^= 1 << bit;
                match decode::<Vec<u64>>(p, MAGIC, &bad) {
                    Err(Error::Corrupt { .. }) => {}
                    other => panic!("flip of bit {bit} at byte {at}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn version_1_is_still_read() {
        let value = vec![7u64, 8];
        let p = Path::new("f");
        let v1 = encode_v1(&value);
        assert_eq!(decode::<Vec<u64>>(p, MAGIC, &v1).expect("v1"), value);
        // A flipped bit in a version 1 file's (unprotected) version field is damage too.
        let mut bad = v1.clone();
        bad[10] ^= 0x20;
        assert!(matches!(
            decode::<Vec<u64>>(p, MAGIC, &bad),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn a_checked_newer_version_is_refused_not_guessed_at() {
        let mut bytes = encode(MAGIC, &vec![1u64]);
        bytes[8..12].copy_from_slice(&(VERSION + 1).to_be_bytes());
        let crc = crc32fast::hash(&bytes[..20]);
        bytes[20..24].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode::<Vec<u64>>(Path::new("f"), MAGIC, &bytes),
            Err(Error::UnsupportedVersion { found, .. }) if found == VERSION + 1
        ));
    }
}
