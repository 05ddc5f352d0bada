//! Segment files: naming and the header that opens each one.
//!
//! ```text
//! [8]  magic "NSQRLOG\0"
//! u32  format version (1)
//! u32  header length (32)
//! u64  first offset
//! u32  reserved (0)
//! u32  crc32 of the previous 28 bytes
//! ```
//! followed by records ([`crate::record`]). A segment is named by its first offset,
//! `<first-offset:020>.log`, and its sparse index `<first-offset:020>.idx` lies beside it.

use crate::error::{Error, Result};
use bytes::BufMut;
use std::path::{Path, PathBuf};

/// Magic bytes opening every segment.
pub const MAGIC: &[u8; 8] = b"NSQRLOG\0";
/// The segment format version this build writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the segment header; records start here.
pub const HEADER_LEN: u64 = 32;

/// Encodes the header of a segment whose first record has `first_offset`.
pub fn encode_header(first_offset: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN as usize);
    out.put_slice(MAGIC);
    out.put_u32(FORMAT_VERSION);
    out.put_u32(HEADER_LEN as u32);
    out.put_u64(first_offset);
    out.put_u32(0);
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out
}

/// Checks a segment header and returns the first offset it names.
pub fn decode_header(path: &Path, bytes: &[u8]) -> Result<u64> {
    if bytes.len() < HEADER_LEN as usize {
        return Err(Error::corrupt(
            path,
            0,
            format!("segment header truncated ({} bytes)", bytes.len()),
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err(Error::corrupt(path, 0, "not a segment file (bad magic)"));
    }
    let crc = u32::from_be_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
    if crc != crc32fast::hash(&bytes[..28]) {
        return Err(Error::corrupt(path, 0, "segment header checksum mismatch"));
    }
    let version = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version > FORMAT_VERSION || version == 0 {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let header_len = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if u64::from(header_len) != HEADER_LEN {
        return Err(Error::corrupt(
            path,
            12,
            format!("unexpected header length {header_len}"),
        ));
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[16..24]);
    Ok(u64::from_be_bytes(first))
}

/// File name of the segment starting at `first_offset`.
pub fn log_file_name(first_offset: u64) -> String {
    format!("{first_offset:020}.log")
}

/// Path of the segment starting at `first_offset` in `dir`.
pub fn log_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(log_file_name(first_offset))
}

/// Path of the index of the segment starting at `first_offset` in `dir`.
pub fn index_path(dir: &Path, first_offset: u64) -> PathBuf {
    dir.join(format!("{first_offset:020}.idx"))
}

/// The first offset a segment file name stands for, if `name` is one.
pub fn parse_log_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|c| c.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_damage() {
        let p = Path::new("x.log");
        let h = encode_header(1234);
        assert_eq!(h.len() as u64, HEADER_LEN);
        assert_eq!(decode_header(p, &h).expect("valid"), 1234);
        for at in 0..h.len() {
            let mut bad = h.clone();
            bad[at] ^= 0x01;
            assert!(decode_header(p, &bad).is_err(), "flip at {at} undetected");
        }
        assert!(decode_header(p, &h[..10]).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(log_file_name(5), "00000000000000000005.log");
        assert_eq!(parse_log_file_name("00000000000000000005.log"), Some(5));
        assert_eq!(parse_log_file_name("5.log"), None);
        assert_eq!(parse_log_file_name("00000000000000000005.idx"), None);
        assert_eq!(parse_log_file_name("99999999999999999999.log"), None);
    }
}
