//! Client-to-server commands of protocol V2: a line `VERB param...\n`, and for the verbs that
//! carry one, a body `[u32 size][data]`. Parsing is incremental and checks sizes before
//! buffering a body, in NSQ's order and with NSQ's error codes and texts.

use super::error::ProtocolError;
use super::is_valid_name;
use super::mpub::parse_mpub_body;
use crate::MessageId;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The longest command line accepted. The longest valid one (DPUB with a 64-character topic
/// and a 20-digit delay) is far shorter; NSQ's reader buffer is 16 KiB.
pub const MAX_LINE: usize = 16 * 1024;

/// Size limits from nsqd's flags that parsing enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--max-msg-size`: the largest single message body.
    pub max_msg_size: usize,
    /// `--max-body-size`: the largest MPUB, IDENTIFY or AUTH body.
    pub max_body_size: usize,
}

/// One parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `NOP`: the answer to a heartbeat.
    Nop,
    /// `IDENTIFY` with its JSON body.
    Identify(Bytes),
    /// `AUTH` with its secret.
    Auth(Bytes),
    /// `SUB topic channel` (names are checked by the handler, after its state check).
    Sub {
        /// The topic name as sent.
        topic: String,
        /// The channel name as sent.
        channel: String,
    },
    /// `RDY count` (count 1 when omitted, as in NSQ).
    Rdy(i64),
    /// `FIN id`.
    Fin(MessageId),
    /// `REQ id timeout_ms`.
    Req {
        /// The message to requeue.
        id: MessageId,
        /// Requested delay before redelivery, unclamped.
        timeout_ms: i64,
    },
    /// `TOUCH id`.
    Touch(MessageId),
    /// `CLS`: start closing.
    Cls,
    /// `PUB topic` with one message.
    Pub {
        /// A valid topic name.
        topic: String,
        /// The message.
        body: Bytes,
    },
    /// `MPUB topic` with messages.
    Mpub {
        /// A valid topic name.
        topic: String,
        /// The messages, at least one.
        bodies: Vec<Bytes>,
    },
    /// `DPUB topic defer_ms` with one message.
    Dpub {
        /// A valid topic name.
        topic: String,
        /// Requested delay, unchecked against `--max-req-timeout` (the handler does that).
        defer_ms: i64,
        /// The message.
        body: Bytes,
    },
}

fn invalid(description: &str) -> ProtocolError {
    ProtocolError::fatal("E_INVALID", description)
}

/// Takes one complete command off the front of `buf`. `Ok(None)` means more bytes are
/// needed; nothing is consumed then. Every error is fatal to the connection.
pub fn parse_command(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Command>, ProtocolError> {
    let Some(newline) = buf.iter().take(MAX_LINE + 1).position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            return Err(invalid(&format!(
                "command line longer than {MAX_LINE} bytes"
            )));
        }
        return Ok(None);
    };
    let mut line = &buf[..newline];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let params: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let verb = params[0];
    let body_start = newline + 1;
    let body = |buf: &BytesMut, what: &str, max: usize, code: &str| {
        read_body(buf, body_start, what, max, code)
    };
    let (command, consumed) = match verb {
        b"NOP" => (Command::Nop, body_start),
        b"CLS" => (Command::Cls, body_start),
        b"RDY" => {
            let count = match params.get(1) {
                None => 1,
                Some(raw) => parse_uint(raw)
                    .ok_or_else(|| invalid(&format!("RDY could not parse count {}", text(raw))))?,
            };
            (Command::Rdy(count), body_start)
        }
        b"FIN" | b"TOUCH" => {
            let name = if verb == b"FIN" { "FIN" } else { "TOUCH" };
            let id = params
                .get(1)
                .ok_or_else(|| invalid(&format!("{name} insufficient number of params")))?;
            let id = message_id(id)?;
            let command = if name == "FIN" {
                Command::Fin(id)
            } else {
                Command::Touch(id)
            };
            (command, body_start)
        }
        b"REQ" => {
            if params.len() < 3 {
                return Err(invalid("REQ insufficient number of params"));
            }
            let id = message_id(params[1])?;
            let timeout_ms = parse_uint(params[2]).ok_or_else(|| {
                invalid(&format!("REQ could not parse timeout {}", text(params[2])))
            })?;
            (Command::Req { id, timeout_ms }, body_start)
        }
        b"SUB" => {
            if params.len() < 3 {
                return Err(invalid("SUB insufficient number of parameters"));
            }
            let topic = text(params[1]);
            let channel = text(params[2]);
            (Command::Sub { topic, channel }, body_start)
        }
        b"IDENTIFY" => match body(buf, "IDENTIFY", limits.max_body_size, "E_BAD_BODY")? {
            Some((data, end)) => (Command::Identify(data), end),
            None => return Ok(None),
        },
        b"AUTH" => {
            if params.len() != 1 {
                return Err(invalid("AUTH invalid number of parameters"));
            }
            match body(buf, "AUTH", limits.max_body_size, "E_BAD_BODY")? {
                Some((data, end)) => (Command::Auth(data), end),
                None => return Ok(None),
            }
        }
        b"PUB" => {
            if params.len() < 2 {
                return Err(invalid("PUB insufficient number of parameters"));
            }
            let topic = topic_param("PUB", params[1])?;
            match body(buf, "PUB", limits.max_msg_size, "E_BAD_MESSAGE")? {
                Some((body, end)) => (Command::Pub { topic, body }, end),
                None => return Ok(None),
            }
        }
        b"DPUB" => {
            if params.len() < 3 {
                return Err(invalid("DPUB insufficient number of parameters"));
            }
            let topic = topic_param("DPUB", params[1])?;
            let defer_ms = parse_uint(params[2]).ok_or_else(|| {
                invalid(&format!("DPUB could not parse timeout {}", text(params[2])))
            })?;
            match body(buf, "DPUB", limits.max_msg_size, "E_BAD_MESSAGE")? {
                Some((body, end)) => (
                    Command::Dpub {
                        topic,
                        defer_ms,
                        body,
                    },
                    end,
                ),
                None => return Ok(None),
            }
        }
        b"MPUB" => {
            if params.len() < 2 {
                return Err(invalid("MPUB insufficient number of parameters"));
            }
            let topic = topic_param("MPUB", params[1])?;
            match body(buf, "MPUB", limits.max_body_size, "E_BAD_BODY")? {
                Some((data, end)) => {
                    let bodies = parse_mpub_body(&data, limits.max_msg_size, limits.max_body_size)
                        .map_err(|e| ProtocolError::fatal(e.protocol_code(), &e.to_string()))?;
                    (Command::Mpub { topic, bodies }, end)
                }
                None => return Ok(None),
            }
        }
        _ => return Err(invalid(&format!("invalid command {}", text(verb)))),
    };
    buf.advance(consumed);
    Ok(Some(command))
}

/// The body after the command line: its data and where the command ends, once complete.
/// A declared size ≤ 0 or over `max` fails at once, before anything is buffered.
fn read_body(
    buf: &BytesMut,
    start: usize,
    verb: &str,
    max: usize,
    code: &str,
) -> Result<Option<(Bytes, usize)>, ProtocolError> {
    if buf.len() < start + 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[start], buf[start + 1], buf[start + 2], buf[start + 3]]);
    // NSQ names it "message body size" for single messages and "body size" otherwise.
    let what = if code == "E_BAD_MESSAGE" {
        "message body size"
    } else {
        "body size"
    };
    if size <= 0 {
        return Err(ProtocolError::fatal(
            code,
            &format!("{verb} invalid {what} {size}"),
        ));
    }
    if size as usize > max {
        let noun = if code == "E_BAD_MESSAGE" {
            "message"
        } else {
            "body"
        };
        return Err(ProtocolError::fatal(
            code,
            &format!("{verb} {noun} too big {size} > {max}"),
        ));
    }
    let end = start + 4 + size as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((Bytes::copy_from_slice(&buf[start + 4..end]), end)))
}

fn topic_param(verb: &str, raw: &[u8]) -> Result<String, ProtocolError> {
    let topic = text(raw);
    if !is_valid_name(&topic) {
        return Err(ProtocolError::fatal(
            "E_BAD_TOPIC",
            &format!("{verb} topic name {topic:?} is not valid"),
        ));
    }
    Ok(topic)
}

fn message_id(raw: &[u8]) -> Result<MessageId, ProtocolError> {
    MessageId::from_slice(raw).ok_or_else(|| invalid("invalid message ID"))
}

/// A decimal count or duration: digits only, as NSQ parses them (so `-1` does not parse).
fn parse_uint(raw: &[u8]) -> Option<i64> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

impl Command {
    /// The command line without its body, for logs (`PUB topic`, `FIN id`, `IDENTIFY`).
    pub fn describe(&self) -> String {
        match self {
            Command::Nop => "NOP".into(),
            Command::Cls => "CLS".into(),
            Command::Identify(_) => "IDENTIFY".into(),
            Command::Auth(_) => "AUTH".into(),
            Command::Sub { topic, channel } => format!("SUB {topic} {channel}"),
            Command::Rdy(count) => format!("RDY {count}"),
            Command::Fin(id) => format!("FIN {id}"),
            Command::Touch(id) => format!("TOUCH {id}"),
            Command::Req { id, timeout_ms } => format!("REQ {id} {timeout_ms}"),
            Command::Pub { topic, .. } => format!("PUB {topic}"),
            Command::Dpub {
                topic, defer_ms, ..
            } => format!("DPUB {topic} {defer_ms}"),
            Command::Mpub { topic, bodies } => format!("MPUB {topic} ({} messages)", bodies.len()),
        }
    }

    /// Appends this command's wire form (what a client sends).
    pub fn encode(&self, buf: &mut BytesMut) {
        fn with_body(buf: &mut BytesMut, line: &str, body: &[u8]) {
            buf.put_slice(line.as_bytes());
            buf.put_u8(b'\n');
            buf.put_u32(body.len() as u32);
            buf.put_slice(body);
        }
        match self {
            Command::Nop => buf.put_slice(b"NOP\n"),
            Command::Cls => buf.put_slice(b"CLS\n"),
            Command::Identify(body) => with_body(buf, "IDENTIFY", body),
            Command::Auth(body) => with_body(buf, "AUTH", body),
            Command::Sub { topic, channel } => {
                buf.put_slice(format!("SUB {topic} {channel}\n").as_bytes())
            }
            Command::Rdy(count) => buf.put_slice(format!("RDY {count}\n").as_bytes()),
            Command::Fin(id) => buf.put_slice(format!("FIN {id}\n").as_bytes()),
            Command::Touch(id) => buf.put_slice(format!("TOUCH {id}\n").as_bytes()),
            Command::Req { id, timeout_ms } => {
                buf.put_slice(format!("REQ {id} {timeout_ms}\n").as_bytes())
            }
            Command::Pub { topic, body } => with_body(buf, &format!("PUB {topic}"), body),
            Command::Dpub {
                topic,
                defer_ms,
                body,
            } => with_body(buf, &format!("DPUB {topic} {defer_ms}"), body),
            Command::Mpub { topic, bodies } => {
                let size: usize = 4 + bodies.iter().map(|b| 4 + b.len()).sum::<usize>();
                buf.put_slice(format!("MPUB {topic}\n").as_bytes());
                buf.put_u32(size as u32);
                buf.put_u32(bodies.len() as u32);
                for body in bodies {
                    buf.put_u32(body.len() as u32);
                    buf.put_slice(body);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_msg_size: 1024,
        max_body_size: 4096,
    };

    fn parse(bytes: &[u8]) -> Result<Option<Command>, ProtocolError> {
        parse_command(&mut BytesMut::from(bytes), &LIMITS)
    }

    fn error_text(bytes: &[u8]) -> String {
        parse(bytes).unwrap_err().to_string()
    }

    #[test]
    fn simple_commands_parse() {
        assert_eq!(parse(b"NOP\n").unwrap(), Some(Command::Nop));
        assert_eq!(parse(b"RDY 10\r\n").unwrap(), Some(Command::Rdy(10)));
        assert_eq!(parse(b"RDY\n").unwrap(), Some(Command::Rdy(1)));
        assert_eq!(
            parse(b"SUB t c\n").unwrap(),
            Some(Command::Sub {
                topic: "t".into(),
                channel: "c".into()
            })
        );
        assert_eq!(
            parse(b"PUB t\n\0\0\0\x02hi").unwrap(),
            Some(Command::Pub {
                topic: "t".into(),
                body: Bytes::from_static(b"hi")
            })
        );
        assert_eq!(parse(b"PUB t\n\0\0\0\x02h").unwrap(), None);
        assert_eq!(parse(b"PUB t").unwrap(), None);
    }

    #[test]
    fn errors_match_nsq_texts() {
        assert_eq!(error_text(b"HELLO\n"), "E_INVALID invalid command HELLO");
        assert_eq!(
            error_text(b"PUB\n"),
            "E_INVALID PUB insufficient number of parameters"
        );
        assert_eq!(
            error_text(b"PUB a!b\n"),
            "E_BAD_TOPIC PUB topic name \"a!b\" is not valid"
        );
        assert_eq!(
            error_text(b"PUB t\n\0\0\0\0"),
            "E_BAD_MESSAGE PUB invalid message body size 0"
        );
        assert_eq!(
            error_text(b"PUB t\n\0\0\x04\x01"),
            "E_BAD_MESSAGE PUB message too big 1025 > 1024"
        );
        assert_eq!(
            error_text(b"MPUB t\n\0\0\x10\x01"),
            "E_BAD_BODY MPUB body too big 4097 > 4096"
        );
        assert_eq!(error_text(b"FIN 123\n"), "E_INVALID invalid message ID");
        assert_eq!(
            error_text(b"RDY -1\n"),
            "E_INVALID RDY could not parse count -1"
        );
        assert_eq!(
            error_text(b"REQ 0123456789abcdef\n"),
            "E_INVALID REQ insufficient number of params"
        );
        assert_eq!(
            error_text(b"RDY x\n"),
            "E_INVALID RDY could not parse count x"
        );
        assert_eq!(
            error_text(b"DPUB t x\n"),
            "E_INVALID DPUB could not parse timeout x"
        );
        assert!(parse(&[b'A'; MAX_LINE + 2]).is_err());
        assert!(parse(b"HELLO\n").unwrap_err().is_fatal());
    }

    #[test]
    fn mpub_parses_all_messages() {
        let command = Command::Mpub {
            topic: "t".into(),
            bodies: vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")],
        };
        let mut buf = BytesMut::new();
        command.encode(&mut buf);
        assert_eq!(parse(&buf).unwrap(), Some(command));
    }

    fn arb_id() -> impl Strategy<Value = MessageId> {
        any::<(u64, u64)>().prop_map(|(salt, offset)| MessageId::for_offset(salt, offset))
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let name = "[a-z0-9_.-]{1,20}";
        let body = proptest::collection::vec(any::<u8>(), 1..64).prop_map(Bytes::from);
        prop_oneof![
            Just(Command::Nop),
            Just(Command::Cls),
            (0..i64::MAX).prop_map(Command::Rdy),
            arb_id().prop_map(Command::Fin),
            arb_id().prop_map(Command::Touch),
            (arb_id(), 0..i64::MAX).prop_map(|(id, timeout_ms)| Command::Req { id, timeout_ms }),
            (name, name).prop_map(|(topic, channel)| Command::Sub { topic, channel }),
            (name, body.clone()).prop_map(|(topic, body)| Command::Pub { topic, body }),
            (name, 0..i64::MAX, body.clone()).prop_map(|(topic, defer_ms, body)| Command::Dpub {
                topic,
                defer_ms,
                body
            }),
            (name, proptest::collection::vec(body.clone(), 1..5))
                .prop_map(|(topic, bodies)| Command::Mpub { topic, bodies }),
            body.clone().prop_map(Command::Identify),
        ]
    }

    proptest! {
        /// Any sequence of commands, cut into arbitrary pieces, parses back to itself.
        #[test]
        fn encode_parse_round_trip(commands in proptest::collection::vec(arb_command(), 1..8), cut in 1usize..50) {
            let mut wire = BytesMut::new();
            for c in &commands {
                c.encode(&mut wire);
            }
            let mut buf = BytesMut::new();
            let mut parsed = Vec::new();
            for piece in wire.chunks(cut) {
                buf.extend_from_slice(piece);
                while let Some(c) = parse_command(&mut buf, &LIMITS).unwrap() {
                    parsed.push(c);
                }
            }
            prop_assert_eq!(parsed, commands);
            prop_assert!(buf.is_empty());
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = parse_command(&mut buf, &LIMITS) {}
        }
    }
}
