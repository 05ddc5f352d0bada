//! nsqlookupd's TCP protocol V1 from the nsqd side: commands out, `[u32 size][data]` replies in.

use bytes::{Buf, BufMut, BytesMut};

/// A command nsqd sends to nsqlookupd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupCommand {
    /// `IDENTIFY` with nsqd's JSON (broadcast_address, hostname, tcp_port, http_port, version).
    Identify(Vec<u8>),
    /// `REGISTER topic [channel]`.
    Register {
        /// The topic.
        topic: String,
        /// The channel, if registering one.
        channel: Option<String>,
    },
    /// `UNREGISTER topic [channel]`.
    Unregister {
        /// The topic.
        topic: String,
        /// The channel, if unregistering one.
        channel: Option<String>,
    },
    /// `PING`.
    Ping,
}

impl LookupCommand {
    /// Appends the wire form.
    pub fn encode(&self, buf: &mut BytesMut) {
        let line = |verb: &str, topic: &str, channel: &Option<String>| match channel {
            Some(c) => format!("{verb} {topic} {c}\n"),
            None => format!("{verb} {topic}\n"),
        };
        match self {
            LookupCommand::Identify(body) => {
                buf.put_slice(b"IDENTIFY\n");
                buf.put_u32(body.len() as u32);
                buf.put_slice(body);
            }
            LookupCommand::Register { topic, channel } => {
                buf.put_slice(line("REGISTER", topic, channel).as_bytes())
            }
            LookupCommand::Unregister { topic, channel } => {
                buf.put_slice(line("UNREGISTER", topic, channel).as_bytes())
            }
            LookupCommand::Ping => buf.put_slice(b"PING\n"),
        }
    }
}

/// Takes one reply off the front of `buf`: `Ok(None)` while incomplete, `Err(size)` when the
/// declared size is over `max`.
pub fn decode_lookup_reply(buf: &mut BytesMut, max: usize) -> Result<Option<Vec<u8>>, u32> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size as usize > max {
        return Err(size);
    }
    if buf.len() < 4 + size as usize {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size as usize).to_vec()))
}

/// The longest V1 command line nsqlookupd accepts.
pub const MAX_LOOKUP_LINE: usize = 4096;
/// The largest IDENTIFY body nsqlookupd accepts (nsqd's is about 150 bytes).
pub const MAX_LOOKUP_IDENTIFY: usize = 64 * 1024;

/// One V1 command as nsqlookupd receives it: the words of its line (trimmed, split on
/// spaces, as NSQ does) and, for `IDENTIFY`, its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupRequest {
    /// The verb and its parameters; never empty (an empty line gives one empty word).
    pub words: Vec<String>,
    /// The `IDENTIFY` body.
    pub body: Option<Vec<u8>>,
}

/// Takes one complete V1 command off the front of `buf`; `Ok(None)` while incomplete (nothing
/// consumed). Errors are `E_CODE description` texts, all fatal to the connection.
pub fn parse_lookup_request(buf: &mut BytesMut) -> Result<Option<LookupRequest>, String> {
    let Some(newline) = buf
        .iter()
        .take(MAX_LOOKUP_LINE + 1)
        .position(|&b| b == b'\n')
    else {
        if buf.len() > MAX_LOOKUP_LINE {
            return Err("E_INVALID command line too long".into());
        }
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&buf[..newline]).trim().to_string();
    let words: Vec<String> = line.split(' ').map(String::from).collect();
    if words[0] != "IDENTIFY" {
        buf.advance(newline + 1);
        return Ok(Some(LookupRequest { words, body: None }));
    }
    let at = newline + 1;
    if buf.len() < at + 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    if size <= 0 || size as usize > MAX_LOOKUP_IDENTIFY {
        return Err(format!("E_BAD_BODY IDENTIFY invalid body size {size}"));
    }
    let end = at + 4 + size as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let body = buf[at + 4..end].to_vec();
    buf.advance(end);
    Ok(Some(LookupRequest {
        words,
        body: Some(body),
    }))
}

impl std::fmt::Display for LookupCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupCommand::Identify(_) => f.write_str("IDENTIFY"),
            LookupCommand::Ping => f.write_str("PING"),
            LookupCommand::Register { topic, channel } => {
                write!(f, "REGISTER {topic} {}", channel.as_deref().unwrap_or(""))
            }
            LookupCommand::Unregister { topic, channel } => {
                write!(f, "UNREGISTER {topic} {}", channel.as_deref().unwrap_or(""))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_like_go_nsq() {
        let mut buf = BytesMut::new();
        LookupCommand::Register {
            topic: "t".into(),
            channel: Some("c".into()),
        }
        .encode(&mut buf);
        LookupCommand::Unregister {
            topic: "t".into(),
            channel: None,
        }
        .encode(&mut buf);
        LookupCommand::Ping.encode(&mut buf);
        assert_eq!(&buf[..], b"REGISTER t c\nUNREGISTER t\nPING\n");
    }

    #[test]
    fn requests_parse_in_pieces_like_lookupd_reads_them() {
        let mut wire = BytesMut::new();
        LookupCommand::Identify(b"{}".to_vec()).encode(&mut wire);
        LookupCommand::Register {
            topic: "t".into(),
            channel: Some("c".into()),
        }
        .encode(&mut wire);
        wire.extend_from_slice(b"  PING \r\n");
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in wire.iter() {
            buf.put_u8(b);
            while let Some(r) = parse_lookup_request(&mut buf).expect("valid") {
                got.push(r);
            }
        }
        assert_eq!(got[0].body.as_deref(), Some(&b"{}"[..]));
        assert_eq!(got[1].words, vec!["REGISTER", "t", "c"]);
        assert_eq!(got[2].words, vec!["PING"]);
        let mut bad = BytesMut::from(&b"IDENTIFY\n\xff\xff\xff\xff"[..]);
        assert!(parse_lookup_request(&mut bad).is_err());
        let mut long = BytesMut::from(&vec![b'x'; MAX_LOOKUP_LINE + 1][..]);
        assert!(parse_lookup_request(&mut long).is_err());
    }

    proptest::proptest! {
        /// Arbitrary bytes in arbitrary pieces never panic, and nothing is consumed while a
        /// command is incomplete.
        #[test]
        fn arbitrary_requests_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), cut in 1usize..64) {
            let mut buf = BytesMut::new();
            for piece in bytes.chunks(cut) {
                buf.extend_from_slice(piece);
                loop {
                    let before = buf.len();
                    match parse_lookup_request(&mut buf) {
                        Ok(Some(r)) => { proptest::prop_assert!(buf.len() < before); proptest::prop_assert!(!r.words.is_empty()); }
                        Ok(None) => { proptest::prop_assert_eq!(buf.len(), before); break; }
                        Err(_) => return Ok(()),
                    }
                }
            }
        }
    }

    #[test]
    fn replies_decode_in_pieces() {
        let mut buf = BytesMut::from(&b"\0\0\0\x02O"[..]);
        assert_eq!(decode_lookup_reply(&mut buf, 10), Ok(None));
        buf.put_u8(b'K');
        assert_eq!(decode_lookup_reply(&mut buf, 10), Ok(Some(b"OK".to_vec())));
        let mut buf = BytesMut::from(&b"\0\0\x10\0"[..]);
        assert_eq!(decode_lookup_reply(&mut buf, 10), Err(4096));
    }
}
