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
    fn replies_decode_in_pieces() {
        let mut buf = BytesMut::from(&b"\0\0\0\x02O"[..]);
        assert_eq!(decode_lookup_reply(&mut buf, 10), Ok(None));
        buf.put_u8(b'K');
        assert_eq!(decode_lookup_reply(&mut buf, 10), Ok(Some(b"OK".to_vec())));
        let mut buf = BytesMut::from(&b"\0\0\x10\0"[..]);
        assert_eq!(decode_lookup_reply(&mut buf, 10), Err(4096));
    }
}
