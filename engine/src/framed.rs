//! The small-file framing shared by cursor and metadata files:
//! `[8] magic | u32 version | u32 payload length | u32 crc32 of payload | payload (bincode)`.

use crate::error::{Error, Result};
use bytes::BufMut;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Length of the frame header.
pub const HEADER_LEN: usize = 20;

/// Frames `value` under `magic` and `version`.
pub fn encode<T: Serialize>(magic: &[u8; 8], version: u32, value: &T) -> Vec<u8> {
    // Serializing plain structs of integers, strings and vectors into memory cannot fail.
    let payload = bincode::serialize(value).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.put_slice(magic);
    out.put_u32(version);
    out.put_u32(payload.len() as u32);
    out.put_u32(crc32fast::hash(&payload));
    out.put_slice(&payload);
    out
}

/// Checks the frame and decodes its payload.
pub fn decode<T: DeserializeOwned>(
    path: &Path,
    magic: &[u8; 8],
    supported: u32,
    bytes: &[u8],
) -> Result<T> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != magic {
        return Err(Error::corrupt(path, 0, "bad magic or truncated header"));
    }
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version == 0 || version > supported {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported,
        });
    }
    let len = word(12) as usize;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len {
        return Err(Error::corrupt(
            path,
            12,
            format!("payload is {} bytes, header says {len}", payload.len()),
        ));
    }
    if crc32fast::hash(payload) != word(16) {
        return Err(Error::corrupt(path, 16, "checksum mismatch"));
    }
    bincode::deserialize(payload)
        .map_err(|e| Error::corrupt(path, HEADER_LEN as u64, e.to_string()))
}
