//! What NSQ answers when a client half-closes in the middle of a command: the bytes it sent
//! end before the body size or the body it announced. NSQ reads bodies straight off the
//! socket, so it names the part the read failed on; these are its v1.3.0 texts.

use super::ProtocolError;

/// The error NSQ sends for `input`, the unparsed bytes left when the client closed its side,
/// or `None` when it sends none (nothing left, or a command line without its newline).
/// `input` must be what [`super::parse_command`] left as incomplete.
pub fn truncated_error(input: &[u8]) -> Option<ProtocolError> {
    let newline = input.iter().position(|&b| b == b'\n')?;
    let line = input[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&input[..newline]);
    let verb = line.split(|&b| b == b' ').next().unwrap_or_default();
    let rest = &input[newline + 1..];
    let short_size = rest.len() < 4;
    let (code, text) = match verb {
        b"IDENTIFY" | b"AUTH" => {
            let verb = String::from_utf8_lossy(verb);
            let part = if short_size { "body size" } else { "body" };
            ("E_BAD_BODY", format!("{verb} failed to read {part}"))
        }
        b"PUB" | b"DPUB" => {
            let verb = String::from_utf8_lossy(verb);
            let part = if short_size {
                "message body size"
            } else {
                "message body"
            };
            ("E_BAD_MESSAGE", format!("{verb} failed to read {part}"))
        }
        b"MPUB" if short_size => ("E_BAD_BODY", "MPUB failed to read body size".into()),
        b"MPUB" => mpub_part(&rest[4..])?,
        _ => return None,
    };
    Some(ProtocolError::fatal(code, &text))
}

/// Where NSQ's MPUB reader runs out in `body` (what followed the body size): the message
/// count, then each message's size and body. `None` if every message is there (NSQ would
/// have published them; nothing to answer).
fn mpub_part(body: &[u8]) -> Option<(&'static str, String)> {
    let Some(count) = body.get(..4) else {
        return Some(("E_BAD_BODY", "MPUB failed to read message count".into()));
    };
    let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    let mut at = 4;
    for index in 0..count {
        let Some(size) = body.get(at..at + 4) else {
            return Some((
                "E_BAD_MESSAGE",
                format!("MPUB failed to read message({index}) body size"),
            ));
        };
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
        at += 4;
        if body.len() < at.saturating_add(size) {
            return Some(("E_BAD_MESSAGE", "MPUB failed to read message body".into()));
        }
        at += size;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(input: &[u8]) -> Option<String> {
        truncated_error(input).map(|e| e.to_string())
    }

    fn be(n: u32) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    #[test]
    fn texts_are_what_nsq_answers() {
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (b"PUB t".to_vec(), None),
            (b"".to_vec(), None),
            (b"NOP\n".to_vec(), None),
            (
                b"PUB t\n".to_vec(),
                Some("E_BAD_MESSAGE PUB failed to read message body size"),
            ),
            (
                b"PUB t\n\0\0".to_vec(),
                Some("E_BAD_MESSAGE PUB failed to read message body size"),
            ),
            (
                [b"PUB t\n".to_vec(), be(10), b"abc".to_vec()].concat(),
                Some("E_BAD_MESSAGE PUB failed to read message body"),
            ),
            (
                b"DPUB t 1000\n\0".to_vec(),
                Some("E_BAD_MESSAGE DPUB failed to read message body size"),
            ),
            (
                [b"DPUB t 1000\n".to_vec(), be(10), b"abc".to_vec()].concat(),
                Some("E_BAD_MESSAGE DPUB failed to read message body"),
            ),
            (
                b"IDENTIFY\n".to_vec(),
                Some("E_BAD_BODY IDENTIFY failed to read body size"),
            ),
            (
                [b"IDENTIFY\n".to_vec(), be(30), b"{\"a\"".to_vec()].concat(),
                Some("E_BAD_BODY IDENTIFY failed to read body"),
            ),
            (
                b"AUTH\n\0".to_vec(),
                Some("E_BAD_BODY AUTH failed to read body size"),
            ),
            (
                [b"AUTH\n".to_vec(), be(30), b"abc".to_vec()].concat(),
                Some("E_BAD_BODY AUTH failed to read body"),
            ),
            (
                b"MPUB t\n\0".to_vec(),
                Some("E_BAD_BODY MPUB failed to read body size"),
            ),
            (
                [b"MPUB t\n".to_vec(), be(20)].concat(),
                Some("E_BAD_BODY MPUB failed to read message count"),
            ),
            (
                [b"MPUB t\n".to_vec(), be(20), be(2), b"ab".to_vec()].concat(),
                Some("E_BAD_MESSAGE MPUB failed to read message(0) body size"),
            ),
            (
                [
                    b"MPUB t\n".to_vec(),
                    be(20),
                    be(2),
                    be(1),
                    b"a".to_vec(),
                    be(5),
                    b"ab".to_vec(),
                ]
                .concat(),
                Some("E_BAD_MESSAGE MPUB failed to read message body"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                answer(&input).as_deref(),
                expected,
                "{}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
