//! Server-to-client frames: `[u32 size][i32 type][data]`, size counting type and data.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Bytes of a message frame's data before the body: timestamp, attempts, id.
pub const MESSAGE_HEADER_LEN: usize = 8 + 2 + 16;

/// The three frame types of protocol V2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// `OK`, `CLOSE_WAIT`, `_heartbeat_`, IDENTIFY's JSON.
    Response = 0,
    /// `E_CODE description`.
    Error = 1,
    /// A message for a subscriber.
    Message = 2,
}

/// A decoded frame, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A response frame's data.
    Response(Bytes),
    /// An error frame's data.
    Error(Bytes),
    /// A message.
    Message {
        /// Nanoseconds since the epoch when it was published.
        timestamp: i64,
        /// Delivery attempts including this one.
        attempts: u16,
        /// The id to echo in FIN/REQ/TOUCH.
        id: [u8; 16],
        /// The message body.
        body: Bytes,
    },
}

/// A frame a client cannot decode.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The size field is smaller than the type field or larger than the client accepts.
    #[error("frame size {0} is invalid")]
    BadSize(u32),
    /// An unknown frame type.
    #[error("unknown frame type {0}")]
    BadType(i32),
    /// A message frame too short for its header.
    #[error("message frame of {0} bytes is shorter than its header")]
    ShortMessage(usize),
}

fn encode(buf: &mut BytesMut, kind: FrameType, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    buf.reserve(8 + len);
    buf.put_u32((4 + len) as u32);
    buf.put_i32(kind as i32);
    for part in parts {
        buf.put_slice(part);
    }
}

/// Appends a response frame.
pub fn encode_response(buf: &mut BytesMut, data: &[u8]) {
    encode(buf, FrameType::Response, &[data]);
}

/// Appends an error frame (`data` is `E_CODE description`).
pub fn encode_error(buf: &mut BytesMut, data: &[u8]) {
    encode(buf, FrameType::Error, &[data]);
}

/// Appends a message frame.
pub fn encode_message(
    buf: &mut BytesMut,
    timestamp: i64,
    attempts: u16,
    id: &[u8; 16],
    body: &[u8],
) {
    let mut header = [0u8; MESSAGE_HEADER_LEN];
    header[..8].copy_from_slice(&timestamp.to_be_bytes());
    header[8..10].copy_from_slice(&attempts.to_be_bytes());
    header[10..].copy_from_slice(id);
    encode(buf, FrameType::Message, &[&header, body]);
}

/// Takes one complete frame off the front of `buf`; `Ok(None)` while it is incomplete.
/// Frames larger than `max_size` are refused before they are buffered.
pub fn decode_frame(buf: &mut BytesMut, max_size: u32) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 4 || size > max_size {
        return Err(FrameError::BadSize(size));
    }
    if buf.len() < 4 + size as usize {
        return Ok(None);
    }
    buf.advance(4);
    let kind = buf.get_i32();
    let mut data = buf.split_to(size as usize - 4).freeze();
    match kind {
        0 => Ok(Some(Frame::Response(data))),
        1 => Ok(Some(Frame::Error(data))),
        2 => {
            if data.len() < MESSAGE_HEADER_LEN {
                return Err(FrameError::ShortMessage(data.len()));
            }
            let timestamp = data.get_i64();
            let attempts = data.get_u16();
            let mut id = [0u8; 16];
            data.copy_to_slice(&mut id);
            Ok(Some(Frame::Message {
                timestamp,
                attempts,
                id,
                body: data,
            }))
        }
        other => Err(FrameError::BadType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_frame_bytes_match_nsq() {
        let mut buf = BytesMut::new();
        encode_response(&mut buf, b"OK");
        assert_eq!(&buf[..], b"\0\0\0\x06\0\0\0\0OK");
    }

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut wire = BytesMut::new();
        encode_response(&mut wire, b"OK");
        encode_error(&mut wire, b"E_INVALID nope");
        encode_message(&mut wire, 42, 3, b"0123456789abcdef", b"hello");
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(frame) = decode_frame(&mut buf, 1 << 20).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::Response(Bytes::from_static(b"OK")),
                Frame::Error(Bytes::from_static(b"E_INVALID nope")),
                Frame::Message {
                    timestamp: 42,
                    attempts: 3,
                    id: *b"0123456789abcdef",
                    body: Bytes::from_static(b"hello")
                },
            ]
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut buf = BytesMut::from(&b"\0\0\0\x02xx"[..]);
        assert_eq!(decode_frame(&mut buf, 100), Err(FrameError::BadSize(2)));
        let mut buf = BytesMut::from(&b"\0\0\0\x05\0\0\0\x07x"[..]);
        assert_eq!(decode_frame(&mut buf, 100), Err(FrameError::BadType(7)));
        let mut buf = BytesMut::from(&b"\xff\0\0\0"[..]);
        assert!(decode_frame(&mut buf, 100).is_err());
    }
}
