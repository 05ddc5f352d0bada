//! One protocol V2 connection for the benchmark: commands out, frames in.

use bytes::BytesMut;
use nsq_server::protocol::{decode_frame, Command, Frame, MAGIC_V2};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::run::BenchError;

/// A connected, magic-sent V2 connection.
pub struct Conn {
    stream: TcpStream,
    input: BytesMut,
    output: BytesMut,
}

impl Conn {
    /// Connects and sends the magic.
    pub async fn connect(addr: SocketAddr) -> Result<Conn, BenchError> {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| BenchError::Connect(addr, e))?;
        let _ = stream.set_nodelay(true);
        stream.write_all(MAGIC_V2).await.map_err(BenchError::Io)?;
        Ok(Conn {
            stream,
            input: BytesMut::with_capacity(256 * 1024),
            output: BytesMut::with_capacity(64 * 1024),
        })
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
