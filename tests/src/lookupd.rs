//! Starting and stopping a real `nsqlookupd`.

use crate::process::{free_port, kill9, spawn_server};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;

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
        let mut args = vec![
            format!("--tcp-address={}", self.tcp),
            format!("--http-address={}", self.http),
            "--broadcast-address=127.0.0.1".to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        self.child = Some(spawn_server(
            "nsqlookupd",
            &args,
            &[],
            &self.log,
            &self.url("/ping"),
        ));
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
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
