//! A raw protocol V2 client over a blocking socket: send exact bytes, read exact frames.

use bytes::BytesMut;
use nsq_server::protocol::{decode_frame, Command, Frame, MAGIC_V2};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The byte stream under a [`RawClient`]: plain TCP, or TLS after [`crate::tls::upgrade`].
pub trait Wire: Read + Write + Send {
    /// The socket underneath (for timeouts).
    fn socket(&self) -> &TcpStream;
}

impl Wire for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
}

/// A connection that has sent the V2 magic.
pub struct RawClient {
    pub(crate) stream: Box<dyn Wire>,
    pub(crate) buf: BytesMut,
}

impl RawClient {
    /// Connects and sends `  V2`.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let mut client = RawClient::connect_without_magic(addr);
        client.send_raw(MAGIC_V2);
        client
    }

    /// Connects and sends nothing.
    pub fn connect_without_magic(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect to nsqd");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let _ = stream.set_nodelay(true);
        RawClient {
            stream: Box::new(stream),
            buf: BytesMut::new(),
        }
    }

    /// Closes the writing side (TCP half-close): nsqd reads end of input, the reply can still come.
    pub fn half_close(&mut self) {
        self.stream
            .socket()
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to nsqd");
        self.stream.flush().expect("flush to nsqd");
    }

    /// Writes bytes as they are; `false` when nsqd has already closed the connection (a
    /// reply sent just before a disconnect can still be read, and answering it then fails).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok() && self.stream.flush().is_ok()
    }

    /// Writes a command.
    pub fn send(&mut self, command: &Command) {
        let mut buf = BytesMut::new();
        command.encode(&mut buf);
        self.send_raw(&buf);
    }

    /// The next frame, or `None` when the server closed the connection (or said nothing
    /// within `wait`).
    pub fn try_frame(&mut self, wait: Duration) -> Option<Frame> {
        self.stream.socket().set_read_timeout(Some(wait)).ok()?;
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, 64 << 20).expect("well-formed frame") {
                return Some(frame);
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame that is not a heartbeat (panics after 10 s of silence).
    pub fn frame(&mut self) -> Frame {
        loop {
            match self.try_frame(Duration::from_secs(10)) {
                Some(Frame::Response(r)) if &r[..] == b"_heartbeat_" => continue,
                Some(frame) => return frame,
                None => panic!("no frame from nsqd within 10 s"),
            }
        }
    }

    /// Expects a response frame with exactly `expected`.
    pub fn expect_response(&mut self, expected: &[u8]) {
        match self.frame() {
            Frame::Response(r) => assert_eq!(
                String::from_utf8_lossy(&r),
                String::from_utf8_lossy(expected)
            ),
            other => panic!(
                "expected response {:?}, got {other:?}",
                String::from_utf8_lossy(expected)
            ),
        }
    }

    /// Expects an error frame starting with `prefix` and returns its text.
    pub fn expect_error(&mut self, prefix: &str) -> String {
        match self.frame() {
            Frame::Error(e) => {
                let text = String::from_utf8_lossy(&e).into_owned();
                assert!(text.starts_with(prefix), "expected {prefix}..., got {text}");
                text
            }
            other => panic!("expected error {prefix}, got {other:?}"),
        }
    }

    /// Whether the server has closed the connection (reads EOF within `wait`).
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        self.stream.socket().set_read_timeout(Some(wait)).ok();
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
            }
        }
    }

    /// IDENTIFY with a JSON body; returns the response frame's data.
    pub fn identify(&mut self, json: serde_json::Value) -> Vec<u8> {
        self.send(&Command::Identify(json.to_string().into_bytes().into()));
        match self.frame() {
            Frame::Response(r) => r.to_vec(),
            other => panic!("IDENTIFY answered {other:?}"),
        }
    }

    /// PUB and expect OK.
    pub fn publish(&mut self, topic: &str, body: &[u8]) {
        self.send(&Command::Pub {
            topic: topic.to_string(),
            body: body.to_vec().into(),
        });
        self.expect_response(b"OK");
    }

    /// SUB and expect OK.
    pub fn subscribe(&mut self, topic: &str, channel: &str) {
        self.send(&Command::Sub {
            topic: topic.to_string(),
            channel: channel.to_string(),
        });
        self.expect_response(b"OK");
    }

    /// The next message frame: (attempts, id, body).
    pub fn message(&mut self) -> (u16, [u8; 16], Vec<u8>) {
        match self.frame() {
            Frame::Message {
                attempts, id, body, ..
            } => (attempts, id, body.to_vec()),
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The bytes of `VERB params\n[u32 size][body]`.
pub fn with_body(line: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{line}\n").into_bytes();
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Sends `bytes` on a fresh connection and expects exactly the error `text`, then a close.
pub fn expect_fatal(nsqd: &crate::Nsqd, setup: &[u8], bytes: &[u8], text: &str) {
    let mut c = RawClient::connect(nsqd.tcp);
    c.send_raw(setup);
    // Setup commands that answer (SUB) answer OK first.
    if setup.starts_with(b"SUB") {
        c.expect_response(b"OK");
    }
    c.send_raw(bytes);
    let got = c.expect_error("E_");
    assert_eq!(got, text, "answer to {:?}", String::from_utf8_lossy(bytes));
    assert!(
        c.is_closed(Duration::from_secs(5)),
        "connection stays open after {text}"
    );
}
