//! One protocol V2 connection for the benchmark: commands out, frames in, over plain TCP or
//! TLS (IDENTIFY `tls_v1`, the handshake, then nsqd's `OK` over TLS).

use bytes::BytesMut;
use nsq_server::protocol::{decode_frame, Command, Frame, MAGIC_V2};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::run::BenchError;

/// A socket, plain or TLS.
trait Wire: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Wire for T {}

/// A connected, magic-sent V2 connection.
pub struct Conn {
    stream: Box<dyn Wire>,
    input: BytesMut,
    output: BytesMut,
}

impl Conn {
    /// Connects and sends the magic; with `tls`, IDENTIFYs and upgrades to TLS.
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Conn, BenchError> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| BenchError::Connect(addr, e))?;
        let _ = stream.set_nodelay(true);
        let mut out = BytesMut::from(&MAGIC_V2[..]);
        let Some(tls) = tls else {
            stream.write_all(&out).await.map_err(BenchError::Io)?;
            return Ok(Conn {
                stream: Box::new(stream),
                input: BytesMut::with_capacity(256 * 1024),
                output: BytesMut::with_capacity(64 * 1024),
            });
        };
        let identify = serde_json::json!({"feature_negotiation": true, "tls_v1": true});
        Command::Identify(identify.to_string().into()).encode(&mut out);
        stream.write_all(&out).await.map_err(BenchError::Io)?;
        // The answer, read from the whole socket: the handshake needs it whole.
        let mut input = BytesMut::with_capacity(256 * 1024);
        let answer = loop {
            if let Some(frame) = decode_frame(&mut input, 64 << 20)
                .map_err(|e| BenchError::Protocol(e.to_string()))?
            {
                break frame;
            }
            if stream.read_buf(&mut input).await.map_err(BenchError::Io)? == 0 {
                return Err(BenchError::Closed);
            }
        };
        let offered = match answer {
            Frame::Response(r) => serde_json::from_slice::<serde_json::Value>(&r)
                .map(|v| v["tls_v1"] == true)
                .unwrap_or(false),
            other => return Err(BenchError::Protocol(format!("IDENTIFY answered {other:?}"))),
        };
        if !offered {
            return Err(BenchError::Protocol("nsqd does not offer TLS".into()));
        }
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let session = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, stream)
            .await
            .map_err(BenchError::Io)?;
        let mut conn = Conn {
            stream: Box::new(session),
            input,
            output: BytesMut::with_capacity(64 * 1024),
        };
        conn.expect_ok().await?;
        Ok(conn)
    }

    /// Queues a command (sent by [`Conn::flush`]).
    pub fn queue(&mut self, command: &Command) {
        command.encode(&mut self.output);
    }

    /// Writes what is queued.
    pub async fn flush(&mut self) -> Result<(), BenchError> {
        if !self.output.is_empty() {
            self.stream
                .write_all(&self.output)
                .await
                .map_err(BenchError::Io)?;
            self.stream.flush().await.map_err(BenchError::Io)?;
            self.output.clear();
        }
        Ok(())
    }

    /// The next frame other than a heartbeat (which is answered).
    pub async fn frame(&mut self) -> Result<Frame, BenchError> {
        loop {
            if let Some(frame) = decode_frame(&mut self.input, 64 << 20)
                .map_err(|e| BenchError::Protocol(e.to_string()))?
            {
                match frame {
                    Frame::Response(r) if &r[..] == b"_heartbeat_" => {
                        self.queue(&Command::Nop);
                        self.flush().await?;
                    }
                    Frame::Error(e) => {
                        return Err(BenchError::Protocol(
                            String::from_utf8_lossy(&e).into_owned(),
                        ))
                    }
                    other => return Ok(other),
                }
                continue;
            }
            // Nothing complete buffered: send queued FINs before waiting for more.
            self.flush().await?;
            let n = self
                .stream
                .read_buf(&mut self.input)
                .await
                .map_err(BenchError::Io)?;
            if n == 0 {
                return Err(BenchError::Closed);
            }
        }
    }

    /// Expects an `OK` response.
    pub async fn expect_ok(&mut self) -> Result<(), BenchError> {
        match self.frame().await? {
            Frame::Response(r) if &r[..] == b"OK" => Ok(()),
            other => Err(BenchError::Protocol(format!("expected OK, got {other:?}"))),
        }
    }
}
