//! The sparse index beside each segment: every `index_interval` bytes of records, one entry
//! `(offset, file position, timestamp)`, so an offset or a publish time is found by a binary
//! search and a short scan, never a scan of the whole log.
//!
//! ```text
//! u64 offset | u64 position | i64 timestamp | u32 crc32 of the previous 24 bytes | u32 zero
//! ```
//! The index is a hint rebuilt from the records whenever it is missing or damaged: an entry is
//! trusted only after the record it points at has been checked.

use bytes::BufMut;

/// Size of one index entry on disk.
pub const ENTRY_LEN: usize = 32;

/// One index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the record.
    pub offset: u64,
    /// Byte position of the record in the segment file.
    pub position: u64,
    /// The record's publish time.
    pub timestamp: i64,
}

impl IndexEntry {
    /// Appends the entry's on-disk form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u64(self.offset);
        out.put_u64(self.position);
        out.put_i64(self.timestamp);
        let crc = crc32fast::hash(&out[start..]);
        out.put_u32(crc);
        out.put_u32(0);
    }

    /// Decodes one entry; `None` if its checksum fails.
    pub fn decode(bytes: &[u8; ENTRY_LEN]) -> Option<Self> {
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let crc = u32::from_be_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
        (crc == crc32fast::hash(&bytes[..24])).then(|| IndexEntry {
            offset: u64_at(0),
            position: u64_at(8),
            timestamp: u64_at(16) as i64,
        })
    }
}

/// Decodes an index file's bytes: the longest prefix of valid entries whose offsets and
/// positions strictly increase, and whether anything after it had to be ignored.
pub fn decode_all(bytes: &[u8]) -> (Vec<IndexEntry>, bool) {
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(bytes.len() / ENTRY_LEN);
    for chunk in bytes.chunks(ENTRY_LEN) {
        let Ok(array) = <&[u8; ENTRY_LEN]>::try_from(chunk) else {
            return (entries, true);
        };
        match IndexEntry::decode(array) {
            Some(e)
                if entries
                    .last()
                    .is_none_or(|last| e.offset > last.offset && e.position > last.position) =>
            {
                entries.push(e)
            }
            _ => return (entries, true),
        }
    }
    (entries, false)
}

/// The last entry at or before `offset`.
pub fn floor_by_offset(entries: &[IndexEntry], offset: u64) -> Option<&IndexEntry> {
    let i = entries.partition_point(|e| e.offset <= offset);
    i.checked_sub(1).map(|i| &entries[i])
}

/// The last entry published strictly before `timestamp` (the scan for the first record at or
/// after `timestamp` starts there).
pub fn floor_by_time(entries: &[IndexEntry], timestamp: i64) -> Option<&IndexEntry> {
    let i = entries.partition_point(|e| e.timestamp < timestamp);
    i.checked_sub(1).map(|i| &entries[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<IndexEntry> {
        (0..5)
            .map(|i| IndexEntry {
                offset: i * 10,
                position: 32 + i * 1000,
                timestamp: 100 + i as i64 * 5,
            })
            .collect()
    }

    #[test]
    fn round_trip_and_damage() {
        let mut bytes = Vec::new();
        for e in entries() {
            e.encode(&mut bytes);
        }
        assert_eq!(decode_all(&bytes), (entries(), false));
        assert_eq!(
            decode_all(&bytes[..bytes.len() - 3]),
            (entries()[..4].to_vec(), true)
        );
        let mut bad = bytes.clone();
        bad[ENTRY_LEN * 2 + 3] ^= 1;
        assert_eq!(decode_all(&bad), (entries()[..2].to_vec(), true));
        let zeros = vec![0u8; ENTRY_LEN * 2];
        assert_eq!(decode_all(&zeros).0.len(), 0);
    }

    #[test]
    fn lookups() {
        let e = entries();
        assert_eq!(floor_by_offset(&e, 0).map(|e| e.offset), Some(0));
        assert_eq!(floor_by_offset(&e, 25).map(|e| e.offset), Some(20));
        assert_eq!(floor_by_offset(&e, 1000).map(|e| e.offset), Some(40));
        assert_eq!(floor_by_time(&e, 100), None);
        assert_eq!(floor_by_time(&e, 111).map(|e| e.offset), Some(20));
    }
}
