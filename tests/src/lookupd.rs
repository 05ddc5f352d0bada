//! Starting and stopping a real `nsqlookupd`.

use crate::process::{binary, free_port};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nsqlookupd` on loopback ports.
pub struct Nsqlookupd {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// `--tcp-address` (what nsqd's `--lookupd-tcp-address` names).
    pub tcp: SocketAddr,
    /// `--http-address` (what consumers poll).
    pub http: SocketAddr,
    extra: Vec<String>,
}

impl Nsqlookupd {
    /// Starts nsqlookupd with `extra` flags and waits until it answers `/ping`.
    pub fn start(extra: &[&str]) -> Nsqlookupd {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut lookupd = Nsqlookupd {
            child: None,
            log: dir.path().join("nsqlookupd.log"),
            _dir: dir,
            tcp: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        lookupd.spawn();
        lookupd
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// What it has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(binary("nsqlookupd"))
            .arg(format!("--tcp-address={}", self.tcp))
            .arg(format!("--http-address={}", self.http))
            .arg("--broadcast-address=127.0.0.1")
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nsqlookupd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if crate::http_get(&self.url("/ping")).status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nsqlookupd did not answer /ping:\n{}", self.log());
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports (empty state, as after a real restart).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop nsqlookupd before restarting it");
        self.spawn();
    }
}

impl Drop for Nsqlookupd {
    fn drop(&mut self) {
        self.kill9();
    }
}
