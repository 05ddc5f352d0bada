//! Arbitrary bytes from a client, in arbitrary pieces: the V2 command parser must never panic,
//! never consume bytes it did not parse, and either wait for more or answer with an error;
//! IDENTIFY bodies go through nsqd's JSON decoding and feature negotiation.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use nsq_server::nsqd::identify::{negotiate, IdentifyRequest};
use nsq_server::nsqd::options::{Cli, NsqdOptions};
use nsq_protocol::{parse_command, Command, Limits};
use std::sync::LazyLock;

static OPTIONS: LazyLock<NsqdOptions> =
    LazyLock::new(|| NsqdOptions::resolve(Cli::default()).expect("default options"));

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_msg_size: 1024,
        max_body_size: 4096,
    };
    // The first byte picks where the stream is cut, so partial reads are explored too.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).max(1);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(cut) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match parse_command(&mut buf, &limits) {
                Ok(Some(Command::Identify(body))) => {
                    assert!(buf.len() < before);
                    // The JSON nsqd decodes an IDENTIFY body into, and the negotiation on it.
                    if let Ok(request) = serde_json::from_slice::<IdentifyRequest>(&body) {
                        let _ = negotiate(&request, &OPTIONS);
                    }
                }
                Ok(Some(_)) => assert!(buf.len() < before),
                Ok(None) => {
                    assert_eq!(buf.len(), before);
                    break;
                }
                Err(_) => return,
            }
        }
    }
});
