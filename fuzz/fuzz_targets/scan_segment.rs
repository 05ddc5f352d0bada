//! Arbitrary segment bytes: the verify/repair scanner must never panic, and what it reports
//! must describe the bytes it was given (records and damage inside the file, in order, not
//! overlapping, offsets dense from `first` between resyncs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use nsq_engine::check::scan::scan_segment;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the first offset (the name and header of a real segment do):
    // small ones most of the time, extreme ones too.
    if data.len() < 8 {
        return;
    }
    let (head, bytes) = data.split_at(8);
    let raw = u64::from_be_bytes(head.try_into().unwrap_or([0; 8]));
    let first = if raw & 1 == 0 { raw >> 56 } else { raw };
    let scan = scan_segment(bytes, first);
    let len = bytes.len() as u64;
    let mut spans: Vec<(u64, u64)> = scan
        .records
        .iter()
        .map(|r| (r.position, r.position + r.len))
        .chain(scan.damage.iter().map(|d| (d.start, d.end)))
        .collect();
    spans.sort_unstable();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping spans {pair:?}");
    }
    for &(start, end) in &spans {
        assert!(
            start < end && end <= len,
            "span {start}..{end} outside {len} bytes"
        );
    }
    for pair in scan.records.windows(2) {
        assert!(pair[0].offset < pair[1].offset, "offsets out of order");
    }
    if let Some(last) = scan.records.last() {
        assert!(scan.end_offset > last.offset);
    }
});
