//! What nsqd's HTTP server answers before a request reaches the router, as NSQ does:
//! a declared body too big is refused at once (413, before reading it), and an HTTP/2
//! prior-knowledge preface gets NSQ's 405 instead of a closed socket.

use super::context::Nsqd;
use super::http::Reply;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// `/pub` and `/mpub` with a `Content-Length` over `--max-msg-size` / `--max-body-size`:
/// 413 `MSG_TOO_BIG` / `BODY_TOO_BIG` without waiting for the body (NSQ checks the declared
/// length first; otherwise a client announcing 10^15 bytes would hold the request open).
pub async fn refuse_declared_oversize(
    State(nsqd): State<Arc<Nsqd>>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (limit, code) = if request.uri().path() == "/mpub" {
        (nsqd.opts.max_body_size, "BODY_TOO_BIG")
    } else {
        (nsqd.opts.max_msg_size, "MSG_TOO_BIG")
    };
    if declared.is_some_and(|n| n > limit as u64) {
        let mut response = Reply::Error(StatusCode::PAYLOAD_TOO_LARGE, code).into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

/// The first bytes an HTTP/2 client with prior knowledge sends.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// NSQ's answer to it (Go parses `PRI *` as a request its router does not allow).
const H2_ANSWER: &[u8] = b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, OPTIONS, POST, PUT\r\nContent-Type: application/json; charset=utf-8\r\nX-Nsq-Content-Type: nsq; version=1.0\r\nContent-Length: 32\r\nConnection: close\r\n\r\n{\"message\":\"METHOD_NOT_ALLOWED\"}";

/// nsqd's plain HTTP listener: connections whose first bytes are an HTTP/2 preface get
/// NSQ's 405; all others go to the HTTP/1 server untouched.
#[derive(Debug)]
pub struct HttpListener(pub TcpListener);

impl axum::serve::Listener for HttpListener {
    type Io = PrefaceGuard;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (PrefaceGuard::new(stream), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[derive(Debug)]
enum Phase {
    /// Reading the first bytes; those in `buf` match the preface so far.
    Sniffing {
        buf: Vec<u8>,
    },
    /// Handing buffered bytes (from `at`) to the reader, then passing through.
    Replaying {
        buf: Vec<u8>,
        at: usize,
    },
    Passthrough,
    /// Writing NSQ's answer to an HTTP/2 preface (from `at`); then end of stream.
    Answering {
        at: usize,
    },
    Done,
}

/// A connection that recognises an HTTP/2 preface before the HTTP/1 parser sees it.
#[derive(Debug)]
pub struct PrefaceGuard {
    stream: TcpStream,
    phase: Phase,
}

impl PrefaceGuard {
    fn new(stream: TcpStream) -> Self {
        PrefaceGuard {
            stream,
            phase: Phase::Sniffing { buf: Vec::new() },
        }
    }
}

impl AsyncRead for PrefaceGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.phase {
                Phase::Passthrough => return Pin::new(&mut this.stream).poll_read(cx, out),
                Phase::Done => return Poll::Ready(Ok(())),
                Phase::Replaying { buf, at } => {
                    let n = (buf.len() - *at).min(out.remaining());
                    out.put_slice(&buf[*at..*at + n]);
                    *at += n;
                    if *at == buf.len() {
                        this.phase = Phase::Passthrough;
                    }
                    return Poll::Ready(Ok(()));
                }
                Phase::Sniffing { buf } => {
                    let mut chunk = [0u8; 64];
                    let mut read = ReadBuf::new(&mut chunk[..H2_PREFACE.len() - buf.len()]);
                    ready!(Pin::new(&mut this.stream).poll_read(cx, &mut read))?;
                    let filled = read.filled();
                    if filled.is_empty() {
                        // End of stream: whatever came is the HTTP server's to judge.
                        let buf = std::mem::take(buf);
                        this.phase = if buf.is_empty() {
                            Phase::Done
                        } else {
                            Phase::Replaying { buf, at: 0 }
                        };
                        continue;
                    }
                    buf.extend_from_slice(filled);
                    if !H2_PREFACE.starts_with(buf) {
                        let buf = std::mem::take(buf);
                        this.phase = Phase::Replaying { buf, at: 0 };
                    } else if buf.len() == H2_PREFACE.len() {
                        this.phase = Phase::Answering { at: 0 };
                    }
                }
                Phase::Answering { at } => {
                    while *at < H2_ANSWER.len() {
                        let n =
                            ready!(Pin::new(&mut this.stream).poll_write(cx, &H2_ANSWER[*at..]))?;
                        if n == 0 {
                            break;
                        }
                        *at += n;
                    }
                    ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
                    this.phase = Phase::Done;
                }
            }
        }
    }
}

impl AsyncWrite for PrefaceGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
