//! Arbitrary HTTP /mpub bodies, text and binary: splitting must never panic, and every message
//! it returns must obey the limits and come from the body.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nsq_protocol::{parse_mpub_body, split_http_mpub};

const MAX_MSG: usize = 256;
const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(rest);
    let binary = mode & 1 == 1;
    // Now and then a body-size limit that forces the count check to bite.
    let max_body = if mode & 2 == 2 { MAX_BODY } else { 64 };
    if let Ok(messages) = split_http_mpub(&body, binary, MAX_MSG, max_body) {
        assert!(rest.len() <= max_body);
        let total: usize = messages.iter().map(Bytes::len).sum();
        assert!(total <= rest.len());
        for m in &messages {
            assert!(!m.is_empty() && m.len() <= MAX_MSG);
            if !binary {
                assert!(!m.contains(&b'\n'));
            }
        }
        if binary {
            assert!(!messages.is_empty());
            assert!(4 + total + 4 * messages.len() <= rest.len());
        }
    }
    // TCP MPUB bodies go through the same binary parser, with no outer size check.
    if let Ok(messages) = parse_mpub_body(rest, MAX_MSG, max_body) {
        assert!(messages.iter().all(|m| !m.is_empty() && m.len() <= MAX_MSG));
    }
});
