//! Scanning one segment's bytes record by record, and resynchronising after damage: the scan
//! resumes at the next position where length, checksum and offset sequence all check out, so
//! a damaged record costs that record only.

use crate::segment::HEADER_LEN;

/// Bytes before the body of a record (see `record.rs`).
const RECORD_HEADER: usize = 48;
/// The part of the record header its length field counts.
const COVERED_HEADER: usize = 40;

/// A record that checks out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoodRecord {
    /// Its offset.
    pub offset: u64,
    /// Byte position in the segment.
    pub position: u64,
    /// Total bytes.
    pub len: u64,
    /// Publish time.
    pub timestamp: i64,
}

/// A span of bytes that holds no valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// First damaged byte.
    pub start: u64,
    /// One past the last damaged byte.
    pub end: u64,
    /// The offset the scan expected at `start`.
    pub expected_offset: u64,
    /// The offset of the good record that follows, if the scan resynchronised inside the
    /// segment; `None` when the damage runs to the end of the file.
    pub resumed_at: Option<u64>,
    /// What was wrong with the first damaged record.
    pub reason: String,
}

/// Everything a scan of one segment found.
#[derive(Debug, Default)]
pub struct SegmentScan {
    /// Records that check out, in file order.
    pub records: Vec<GoodRecord>,
    /// Damaged spans, in file order.
    pub damage: Vec<Damage>,
    /// The offset after the last good record.
    pub end_offset: u64,
    /// Zero bytes from the end of the last record to the end of the file: space nsqd
    /// prepared ahead of its writes (FORMAT.md), not damage.
    pub prepared_tail: u64,
}

/// Checks the record at the start of `data`: `(offset, timestamp, total length)`.
pub fn check_record(data: &[u8]) -> Result<(u64, i64, usize), String> {
    if data.len() < RECORD_HEADER {
        return Err(format!("record truncated: {} bytes left", data.len()));
    }
    let covered = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if covered < COVERED_HEADER {
        return Err(format!("impossible record length {covered}"));
    }
    let total = covered + 8;
    if data.len() < total {
        return Err(format!(
            "record truncated: needs {total} bytes, {} left",
            data.len()
        ));
    }
    let stored = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let computed = crc32fast::hash(&data[8..total]);
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:08x}, computed {computed:08x}"
        ));
    }
    Ok((be_u64(&data[8..16]), be_u64(&data[32..40]) as i64, total))
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

/// Scans a segment file's bytes (header included) whose first record should have `first`.
pub fn scan_segment(bytes: &[u8], first: u64) -> SegmentScan {
    let len = bytes.len() as u64;
    let mut scan = SegmentScan {
        end_offset: first,
        ..SegmentScan::default()
    };
    let mut pos = HEADER_LEN.min(len);
    let mut expected = first;
    while pos < len {
        let at = pos as usize;
        let reason = match check_record(&bytes[at..]) {
            // No offset can follow it, so no real log holds it (and counting on would overflow).
            Ok((u64::MAX, _, _)) => "offset u64::MAX leaves no next offset".to_string(),
            Ok((offset, timestamp, total)) if offset == expected => {
                scan.records.push(GoodRecord {
                    offset,
                    position: pos,
                    len: total as u64,
                    timestamp,
                });
                pos += total as u64;
                expected += 1;
                continue;
            }
            Ok((offset, _, _)) => format!("expected offset {expected}, found {offset}"),
            Err(_) if bytes[at..].iter().all(|&b| b == 0) => {
                scan.prepared_tail = len - pos;
                break;
            }
            Err(reason) => reason,
        };
        match resync(bytes, at, expected) {
            Some((next_pos, next_offset)) => {
                scan.damage.push(Damage {
                    start: pos,
                    end: next_pos as u64,
                    expected_offset: expected,
                    resumed_at: Some(next_offset),
                    reason,
                });
                pos = next_pos as u64;
                expected = next_offset;
            }
            None => {
                scan.damage.push(Damage {
                    start: pos,
                    end: len,
                    expected_offset: expected,
                    resumed_at: None,
                    reason,
                });
                pos = len;
            }
        }
    }
    scan.end_offset = expected;
    scan
}

/// The next position after `from` holding a good record whose offset could follow `expected`
/// after the lost bytes (every lost record took at least a header's worth of them).
pub fn resync(bytes: &[u8], from: usize, expected: u64) -> Option<(usize, u64)> {
    let mut q = from + 1;
    while q + RECORD_HEADER <= bytes.len() {
        let data = &bytes[q..];
        let covered = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let offset = be_u64(&data[8..16]);
        let most_lost = ((q - from) / RECORD_HEADER) as u64 + 1;
        let plausible = covered >= COVERED_HEADER
            && q + covered + 8 <= bytes.len()
            && offset >= expected
            && offset <= expected.saturating_add(most_lost);
        if plausible && check_record(data).is_ok() {
            return Some((q, offset));
        }
        q += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::MessageId;
    use crate::record;
    use crate::segment::encode_header;

    fn segment(first: u64, bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = encode_header(first);
        for (i, body) in bodies.iter().enumerate() {
            let offset = first + i as u64;
            record::encode(
                &mut out,
                offset,
                &MessageId::for_offset(7, offset),
                100,
                0,
                body,
            );
        }
        out
    }

    #[test]
    fn last_possible_offset_is_damage_not_overflow() {
        // Found by fuzzing: a segment whose first offset is u64::MAX overflowed the count.
        let bytes = segment(u64::MAX, &[b"a"]);
        let scan = scan_segment(&bytes, u64::MAX);
        assert!(scan.records.is_empty());
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.end_offset, u64::MAX);
    }

    #[test]
    fn clean_segment_has_no_damage() {
        let bytes = segment(10, &[b"a", b"bb", b"ccc"]);
        let scan = scan_segment(&bytes, 10);
        assert_eq!(scan.records.len(), 3);
        assert!(scan.damage.is_empty());
        assert_eq!(scan.end_offset, 13);
    }

    #[test]
    fn one_flipped_byte_costs_one_record() {
        let bodies: Vec<Vec<u8>> = (0..20).map(|i| vec![b'x'; 10 + i]).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let clean = segment(0, &refs);
        let positions: Vec<u64> = scan_segment(&clean, 0)
            .records
            .iter()
            .map(|r| r.position)
            .collect();
        for victim in [0usize, 7, 19] {
            for delta in [0u64, 3, 9, 20, 47] {
                let mut bytes = clean.clone();
                let at = (positions[victim] + delta) as usize;
                if at >= bytes.len() {
                    continue;
                }
                bytes[at] ^= 0x40;
                let scan = scan_segment(&bytes, 0);
                let offsets: Vec<u64> = scan.records.iter().map(|r| r.offset).collect();
                let want: Vec<u64> = (0..20).filter(|&o| o != victim as u64).collect();
                assert_eq!(offsets, want, "victim {victim} byte +{delta}");
                assert_eq!(scan.damage.len(), 1);
            }
        }
    }

    #[test]
    fn zeros_after_the_last_record_are_prepared_space_not_damage() {
        let mut bytes = segment(0, &[b"one", b"two"]);
        let end = bytes.len();
        bytes.resize(end + 4096, 0);
        let scan = scan_segment(&bytes, 0);
        assert!(scan.damage.is_empty(), "{:?}", scan.damage);
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.prepared_tail, 4096);
        assert_eq!(scan.end_offset, 2);
        // A torn record in front of the zeros is still damage.
        bytes[end] = 7;
        let scan = scan_segment(&bytes, 0);
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.prepared_tail, 0);
    }

    #[test]
    fn torn_tail_is_damage_to_the_end() {
        let mut bytes = segment(0, &[b"a", b"b"]);
        bytes.truncate(bytes.len() - 3);
        let scan = scan_segment(&bytes, 0);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.damage[0].resumed_at, None);
        assert_eq!(scan.damage[0].end, bytes.len() as u64);
    }

    #[test]
    fn zeroed_block_loses_only_what_it_covers() {
        let bodies: Vec<Vec<u8>> = (0..50).map(|_| vec![b'y'; 100]).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let mut bytes = segment(0, &refs);
        for b in &mut bytes[1000..1600] {
            *b = 0;
        }
        let scan = scan_segment(&bytes, 0);
        let lost = 50 - scan.records.len();
        assert!((4..=8).contains(&lost), "lost {lost}");
        assert_eq!(scan.end_offset, 50);
    }
}
