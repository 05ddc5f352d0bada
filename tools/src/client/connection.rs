//! One TCP connection to nsqd speaking protocol V2: connect, magic, IDENTIFY with feature
//! negotiation, then frames in and commands out. Producer and consumer build on this.

use super::config::Config;
use super::error::{Error, Result};
use bytes::BytesMut;
use nsq_server::protocol::{decode_frame, Command, Frame, MAGIC_V2};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The largest frame accepted from a server (nsqd's own limits are far smaller).
const MAX_FRAME: u32 = 256 * 1024 * 1024;

/// What nsqd said about the connection in its IDENTIFY answer.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The most RDY this connection may ask for.
    pub max_rdy_count: i64,
    /// How long a message may stay unfinished before nsqd requeues it.
    pub msg_timeout: Duration,
}

/// The reading half: decodes frames, keeping partial ones between calls so that `next` can
/// be cancelled (used in `select!`) without losing bytes.
pub(crate) struct FrameReader {
    half: OwnedReadHalf,
    buf: BytesMut,
    addr: String,
}

impl FrameReader {
    /// The server's address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The next frame; `Error::Closed` at end of stream.
    pub(crate) async fn next(&mut self) -> Result<Frame> {
        loop {
            match decode_frame(&mut self.buf, MAX_FRAME) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::BadFrame {
                        addr: self.addr.clone(),
                        reason: e.to_string(),
                    })
                }
            }
            self.buf.reserve(64 * 1024);
            let n = self
                .half
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| Error::io(&self.addr, e))?;
            if n == 0 {
                return Err(Error::Closed(self.addr.clone()));
            }
        }
    }
}

/// An identified connection, split in halves.
pub(crate) struct Connection {
    pub(crate) reader: FrameReader,
    pub(crate) writer: OwnedWriteHalf,
    pub(crate) negotiated: Negotiated,
}

/// Connects to nsqd at `addr` and IDENTIFYs.
pub(crate) async fn connect(addr: &str, config: &Config) -> Result<Connection> {
    let stream = tokio::time::timeout(config.dial_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout(addr.to_string()))?
        .map_err(|e| Error::io(addr, e))?;
    let _ = stream.set_nodelay(true);
    let (read, mut writer) = stream.into_split();
    let mut reader = FrameReader {
        half: read,
        buf: BytesMut::new(),
        addr: addr.to_string(),
    };
    let mut identify = json!({
        "client_id": config.client_id,
        "hostname": config.hostname,
        "user_agent": config.user_agent,
        "feature_negotiation": true,
        "heartbeat_interval": config.heartbeat_interval.as_millis() as i64,
    });
    if let Some(timeout) = config.msg_timeout {
        identify["msg_timeout"] = json!(timeout.as_millis() as i64);
    }
    let mut out = BytesMut::from(&MAGIC_V2[..]);
    Command::Identify(identify.to_string().into()).encode(&mut out);
    writer
        .write_all(&out)
        .await
        .map_err(|e| Error::io(addr, e))?;
    let answer = tokio::time::timeout(config.http_timeout, expect_response(&mut reader))
        .await
        .map_err(|_| Error::Timeout(addr.to_string()))??;
    let negotiated = parse_identify(&answer);
    Ok(Connection {
        reader,
        writer,
        negotiated,
    })
}

/// The next non-heartbeat response; an error frame becomes `Error::Protocol`.
pub(crate) async fn expect_response(reader: &mut FrameReader) -> Result<bytes::Bytes> {
    loop {
        match reader.next().await? {
            Frame::Response(data) if &data[..] == b"_heartbeat_" => continue,
            Frame::Response(data) => return Ok(data),
            Frame::Error(data) => return Err(Error::from_frame(&data)),
            Frame::Message { .. } => {
                return Err(Error::BadFrame {
                    addr: reader.addr.clone(),
                    reason: "message before SUB".to_string(),
                })
            }
        }
    }
}

/// Reads IDENTIFY's answer: JSON under feature negotiation, a bare `OK` from old servers.
fn parse_identify(answer: &[u8]) -> Negotiated {
    let value: serde_json::Value = serde_json::from_slice(answer).unwrap_or_default();
    Negotiated {
        max_rdy_count: value["max_rdy_count"].as_i64().unwrap_or(2500).max(1),
        msg_timeout: Duration::from_millis(value["msg_timeout"].as_u64().unwrap_or(60_000)),
    }
}

/// Writes every command sent on `rx`, batching what is queued, until all senders are gone;
/// then shuts the socket's write side so the server sees a clean close.
pub(crate) async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut out = BytesMut::new();
    while let Some(command) = rx.recv().await {
        command.encode(&mut out);
        while let Ok(more) = rx.try_recv() {
            more.encode(&mut out);
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
    let _ = writer.shutdown().await;
}
