//! One TCP connection to nsqd speaking protocol V2: connect, magic, IDENTIFY with feature
//! negotiation (TLS, then compression, in NSQ's order), AUTH when nsqd asks for it, then
//! frames in and commands out. Producer and consumer build on this.

use super::config::Config;
use super::error::{Error, Result};
use bytes::BytesMut;
use nsq_protocol::compression::{Compression, StreamDecoder, StreamEncoder};
use nsq_protocol::{decode_frame, Command, Frame, MAGIC_V2};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    /// `"snappy"` or `"deflate"` when the stream is compressed.
    pub compression: Option<&'static str>,
    /// The connection upgraded to TLS.
    pub tls: bool,
    /// nsqd asked for AUTH (and got it).
    pub auth_required: bool,
}

/// The socket's read side, plain or TLS.
type ReadSide = Box<dyn AsyncRead + Unpin + Send>;
/// The socket's write side, plain or TLS.
type WriteSide = Box<dyn AsyncWrite + Unpin + Send>;

/// The reading half: decodes frames, keeping partial ones between calls so that `next` can
/// be cancelled (used in `select!`) without losing bytes.
pub(crate) struct FrameReader {
    half: ReadSide,
    /// Protocol bytes not yet decoded into frames.
    buf: BytesMut,
    /// Socket bytes, before decompression.
    raw: BytesMut,
    decoder: Option<StreamDecoder>,
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
            self.raw.reserve(64 * 1024);
            let n = self
                .half
                .read_buf(&mut self.raw)
                .await
                .map_err(|e| Error::io(&self.addr, e))?;
            if n == 0 {
                return Err(Error::Closed(self.addr.clone()));
            }
            let raw = self.raw.split();
            self.take_in(&raw)?;
        }
    }

    /// Adds socket bytes to the protocol buffer, decompressing once compression is on.
    fn take_in(&mut self, raw: &[u8]) -> Result<()> {
        match &mut self.decoder {
            Some(decoder) => decoder
                .decode(raw, &mut self.buf)
                .map_err(|e| Error::BadFrame {
                    addr: self.addr.clone(),
                    reason: e.to_string(),
                }),
            None => {
                self.buf.extend_from_slice(raw);
                Ok(())
            }
        }
    }

    /// Switches to a compressed stream: bytes already read past the IDENTIFY answer are the
    /// start of it.
    fn start_decompressing(&mut self, kind: &Compression) -> Result<()> {
        self.decoder = Some(StreamDecoder::new(kind));
        let pending = self.buf.split();
        self.take_in(&pending)
    }
}

/// The writing half, compressing once compression is negotiated.
pub(crate) struct FrameWriter {
    half: WriteSide,
    encoder: Option<StreamEncoder>,
    scratch: Vec<u8>,
    addr: String,
}

impl FrameWriter {
    /// Writes protocol bytes (commands).
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let wire: &[u8] = match &mut self.encoder {
            Some(encoder) => {
                self.scratch.clear();
                encoder
                    .encode(bytes, &mut self.scratch)
                    .map_err(|e| Error::BadFrame {
                        addr: self.addr.clone(),
                        reason: e.to_string(),
                    })?;
                &self.scratch
            }
            None => bytes,
        };
        self.half
            .write_all(wire)
            .await
            .map_err(|e| Error::io(&self.addr, e))?;
        // TLS holds records until flushed; plain TCP's flush does nothing.
        self.half
            .flush()
            .await
            .map_err(|e| Error::io(&self.addr, e))
    }
}

/// An identified connection, split in halves.
pub(crate) struct Connection {
    pub(crate) reader: FrameReader,
    pub(crate) writer: FrameWriter,
    pub(crate) negotiated: Negotiated,
}

/// Connects to nsqd at `addr` and IDENTIFYs.
pub(crate) async fn connect(addr: &str, config: &Config) -> Result<Connection> {
    let stream = tokio::time::timeout(config.dial_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout(addr.to_string()))?
        .map_err(|e| Error::io(addr, e))?;
    let _ = stream.set_nodelay(true);
    let mut identify = json!({
        "client_id": config.client_id,
        "hostname": config.hostname,
        "user_agent": config.user_agent,
        "feature_negotiation": true,
        "heartbeat_interval": config.heartbeat_interval.as_millis() as i64,
    });
    if config.tls.is_some() {
        identify["tls_v1"] = json!(true);
    }
    if let Some(timeout) = config.msg_timeout {
        identify["msg_timeout"] = json!(timeout.as_millis() as i64);
    }
    if config.snappy {
        identify["snappy"] = json!(true);
    } else if config.deflate {
        identify["deflate"] = json!(true);
        identify["deflate_level"] = json!(config.deflate_level);
    }
    let mut out = BytesMut::from(&MAGIC_V2[..]);
    Command::Identify(identify.to_string().into()).encode(&mut out);
    // Until the TLS decision the socket stays whole: the handshake needs all of it.
    let mut stream = stream;
    stream
        .write_all(&out)
        .await
        .map_err(|e| Error::io(addr, e))?;
    let mut buf = BytesMut::new();
    let answer = tokio::time::timeout(
        config.http_timeout,
        first_response(&mut stream, &mut buf, addr),
    )
    .await
    .map_err(|_| Error::Timeout(addr.to_string()))??;
    let (mut negotiated, compression, tls, auth_required) = parse_identify(&answer);
    let (read, write): (ReadSide, WriteSide) = match (tls, &config.tls) {
        (true, Some(settings)) => {
            if !buf.is_empty() {
                return Err(Error::BadFrame {
                    addr: addr.to_string(),
                    reason: "data before the TLS handshake".to_string(),
                });
            }
            let connector = tokio_rustls::TlsConnector::from(settings.client_config()?);
            let name = super::tls::server_name(addr)?;
            let session =
                tokio::time::timeout(config.http_timeout, connector.connect(name, stream))
                    .await
                    .map_err(|_| Error::Timeout(addr.to_string()))?
                    .map_err(|e| Error::Tls(format!("{addr}: handshake failed: {e}")))?;
            negotiated.tls = true;
            let (read, write) = tokio::io::split(session);
            (Box::new(read), Box::new(write))
        }
        (false, Some(_)) => {
            tracing::warn!("{addr}: nsqd does not offer TLS; the connection stays in plain text");
            let (read, write) = stream.into_split();
            (Box::new(read), Box::new(write))
        }
        _ => {
            let (read, write) = stream.into_split();
            (Box::new(read), Box::new(write))
        }
    };
    let mut reader = FrameReader {
        half: read,
        buf,
        raw: BytesMut::new(),
        decoder: None,
        addr: addr.to_string(),
    };
    let mut writer = FrameWriter {
        half: write,
        encoder: None,
        scratch: Vec::new(),
        addr: addr.to_string(),
    };
    if negotiated.tls {
        // nsqd's OK comes over TLS; a refused client certificate ends the connection here.
        tokio::time::timeout(config.http_timeout, expect_response(&mut reader))
            .await
            .map_err(|_| Error::Timeout(addr.to_string()))?
            .map_err(|e| match e {
                Error::Closed(_) | Error::Io { .. } => {
                    Error::Tls(format!("{addr}: nsqd refused the TLS session ({e})"))
                }
                other => other,
            })?;
    }
    if let Some(kind) = compression {
        // Both directions switch now; nsqd confirms with an OK inside the new stream.
        reader.start_decompressing(&kind)?;
        writer.encoder = Some(StreamEncoder::new(&kind));
        tokio::time::timeout(config.http_timeout, expect_response(&mut reader))
            .await
            .map_err(|_| Error::Timeout(addr.to_string()))??;
    }
    if auth_required {
        let secret = config
            .auth_secret
            .clone()
            .ok_or_else(|| Error::AuthRequired(addr.to_string()))?;
        let mut out = BytesMut::new();
        Command::Auth(secret.into_bytes().into()).encode(&mut out);
        writer.send(&out).await?;
        let answer = tokio::time::timeout(config.http_timeout, expect_response(&mut reader))
            .await
            .map_err(|_| Error::Timeout(addr.to_string()))??;
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        tracing::info!(
            "{addr}: authenticated as {:?} ({} permissions)",
            answer["identity"].as_str().unwrap_or_default(),
            answer["permission_count"]
        );
        negotiated.auth_required = true;
    }
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

/// IDENTIFY's answer, read from the whole socket (before any TLS upgrade). Bytes after it
/// stay in `buf`.
async fn first_response(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    addr: &str,
) -> Result<bytes::Bytes> {
    loop {
        match decode_frame(buf, MAX_FRAME) {
            Ok(Some(Frame::Response(data))) if &data[..] == b"_heartbeat_" => continue,
            Ok(Some(Frame::Response(data))) => return Ok(data),
            Ok(Some(Frame::Error(data))) => return Err(Error::from_frame(&data)),
            Ok(Some(Frame::Message { .. })) => {
                return Err(Error::BadFrame {
                    addr: addr.to_string(),
                    reason: "message before SUB".to_string(),
                })
            }
            Ok(None) => {}
            Err(e) => {
                return Err(Error::BadFrame {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })
            }
        }
        buf.reserve(4096);
        let n = stream.read_buf(buf).await.map_err(|e| Error::io(addr, e))?;
        if n == 0 {
            return Err(Error::Closed(addr.to_string()));
        }
    }
}

/// Reads IDENTIFY's answer: JSON under feature negotiation, a bare `OK` from old servers.
/// Also says which compression nsqd switched on, whether TLS follows and whether AUTH is needed.
fn parse_identify(answer: &[u8]) -> (Negotiated, Option<Compression>, bool, bool) {
    let value: serde_json::Value = serde_json::from_slice(answer).unwrap_or_default();
    let negotiated = Negotiated {
        max_rdy_count: value["max_rdy_count"].as_i64().unwrap_or(2500).max(1),
        msg_timeout: Duration::from_millis(value["msg_timeout"].as_u64().unwrap_or(60_000)),
        compression: None,
        tls: false,
        auth_required: false,
    };
    let compression = if value["snappy"] == true {
        Some(Compression::Snappy)
    } else if value["deflate"] == true {
        let level = value["deflate_level"].as_u64().unwrap_or(6) as u32;
        Some(Compression::Deflate { level })
    } else {
        None
    };
    let label = compression.map(|c| match c {
        Compression::Snappy => "snappy",
        Compression::Deflate { .. } => "deflate",
    });
    (
        Negotiated {
            compression: label,
            ..negotiated
        },
        compression,
        value["tls_v1"] == true,
        value["auth_required"] == true,
    )
}

/// Writes every command sent on `rx`, batching what is queued, until all senders are gone;
/// then shuts the socket's write side so the server sees a clean close.
pub(crate) async fn write_loop(mut writer: FrameWriter, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut out = BytesMut::new();
    while let Some(command) = rx.recv().await {
        command.encode(&mut out);
        while let Ok(more) = rx.try_recv() {
            more.encode(&mut out);
        }
        if writer.send(&out).await.is_err() {
            return;
        }
        out.clear();
    }
    let _ = writer.half.shutdown().await;
}
