//! A tiny auth server for tests (NSQ's auth protocol: `GET /auth?...` answered with JSON),
//! on a loopback port, recording every query it gets. Stops when dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `200` with this JSON for the secret, `403` for any other secret.
    Grant {
        /// The secret that works.
        secret: String,
        /// The answer for it.
        answer: serde_json::Value,
    },
    /// `200` with a body that is not JSON.
    Garbage,
    /// Reads the request and never answers.
    Hang,
}

/// A running auth server.
pub struct AuthServer {
    /// Where it listens (`--auth-http-address`).
    pub addr: SocketAddr,
    queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(
    mut stream: TcpStream,
    behaviour: &Behaviour,
    queries: &Mutex<Vec<HashMap<String, String>>>,
    stop: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let target = text.split_whitespace().nth(1).unwrap_or("");
    let query: HashMap<String, String> = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    queries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(query.clone());
    let (status, body) = match behaviour {
        Behaviour::Grant { secret, answer } => {
            if query.get("secret") == Some(secret) {
                ("200 OK", answer.to_string())
            } else {
                (
                    "403 Forbidden",
                    r#"{"message":"NOT_AUTHORIZED"}"#.to_string(),
                )
            }
        }
        Behaviour::Garbage => ("200 OK", "<html>not json".to_string()),
        Behaviour::Hang => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
    };
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

impl AuthServer {
    /// Starts answering as `behaviour`.
    pub fn start(behaviour: Behaviour) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind auth server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (queries.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let (b, q, s) = (behaviour.clone(), q.clone(), s.clone());
                        std::thread::spawn(move || handle(stream, &b, &q, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        AuthServer {
            addr,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// Every query so far, as decoded parameters.
    pub fn queries(&self) -> Vec<HashMap<String, String>> {
        self.queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
