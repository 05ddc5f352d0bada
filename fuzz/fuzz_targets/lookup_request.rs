//! Arbitrary bytes from an nsqd to nsqlookupd, in arbitrary pieces: the V1 framing never
//! panics and never consumes a partial command; IDENTIFY bodies go through the same JSON
//! decoding lookupd uses.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nsq_protocol::parse_lookup_request;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).max(1);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(cut) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match parse_lookup_request(&mut buf) {
                Ok(Some(request)) => {
                    assert!(buf.len() < before);
                    assert!(!request.words.is_empty());
                    if let Some(body) = request.body {
                        let _ = serde_json::from_slice::<serde_json::Value>(&body);
                    }
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before);
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
