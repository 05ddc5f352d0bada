//! Arbitrary bytes through every on-disk decoder: a record, a segment header, an index file
//! and a cursor file. None may panic; what decodes must be consistent with the bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nsq_engine::cursor::CursorFile;
use nsq_engine::{index, record, segment};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/fuzz");
    let bytes = Bytes::copy_from_slice(data);
    if let Ok((message, total)) = record::decode(&bytes, 4096) {
        assert!(total <= data.len());
        assert!(message.body.len() < total);
    }
    let _ = segment::decode_header(path, data);
    let (entries, _clean) = index::decode_all(data);
    assert!(entries.len() * index::ENTRY_LEN <= data.len());
    if let Ok(cursor) = CursorFile::decode(path, data) {
        // What decodes re-encodes to something that decodes to the same state.
        let again = CursorFile::decode(path, &cursor.encode()).expect("re-encoded cursor decodes");
        assert_eq!(again, cursor);
    }
});
