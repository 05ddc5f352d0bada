//! A recording HTTP endpoint for `nsq_to_http` tests (axum on a loopback port): every
//! request is kept (method, path and raw query, headers, body), and the first attempts for
//! each distinct message can be answered `500`. Stops when dropped.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One request the sink got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path.
    pub path: String,
    /// The raw (still escaped) query string, empty if none.
    pub query: String,
    /// Header names (lower case) and values.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct Recorder {
    requests: Vec<Received>,
    attempts: HashMap<String, usize>,
}

struct Shared {
    fail_first: usize,
    success: StatusCode,
    recorder: Mutex<Recorder>,
}

/// A running sink.
pub struct HttpSink {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpSink {
    /// Answers every request `200`, except the first `fail_first` requests for each distinct
    /// message (its body, or its query for a GET), which get `500`.
    pub fn start(fail_first: usize) -> HttpSink {
        HttpSink::answering(fail_first, StatusCode::OK)
    }

    /// [`HttpSink::start`] answering `success` instead of `200`.
    pub fn answering(fail_first: usize, success: StatusCode) -> HttpSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind sink");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("sink addr");
        let shared = Arc::new(Shared {
            fail_first,
            success,
            recorder: Mutex::default(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("sink runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("sink listener");
                let app = axum::Router::new().fallback(record).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        HttpSink {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        let recorder = self
            .shared
            .recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        recorder.requests.clone()
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let query = uri.query().unwrap_or("").to_string();
    let key = format!("{}?{query}#{}", uri.path(), String::from_utf8_lossy(&body));
    let mut recorder = shared.recorder.lock().unwrap_or_else(|p| p.into_inner());
    let attempt = recorder.attempts.entry(key).or_insert(0);
    *attempt += 1;
    let status = if *attempt <= shared.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        shared.success
    };
    recorder.requests.push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        query,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        status: status.as_u16(),
    });
    status
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
