//! Starting, stopping and killing real server processes.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The path of one of the workspace's binaries (built by `cargo build --workspace --bins`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run.sh does)",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago, never the same twice in one test process.
///
/// Taken below Linux's ephemeral range (32768 and up) rather than with `bind(0)`: a port from
/// that range can be given to some test's outgoing connection between this check and the
/// server's own bind, and the server then exits at start with "address in use".
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread test processes (one per test target) over the range by pid.
    let start = std::process::id().wrapping_mul(2_654_435_761) % COUNT;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT);
}

/// Spawns one of the workspace's servers with `args` and `env`, stdout discarded and stderr
/// appended to `log`, and waits until `ping_url` answers 200. Panics with the log when the
/// process exits first or 15 s pass.
// The child is handed to the caller, whose `kill9` (also on drop) reaps it.
#[allow(clippy::zombie_processes)]
pub(crate) fn spawn_server(
    name: &str,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
    ping_url: &str,
) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = Command::new(binary(name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let logged = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited during start ({status}):\n{}", logged());
        }
        // 403 is nsqd's plain-HTTP answer under --tls-required=true: it is up all the same.
        if matches!(crate::http_get(ping_url).status, 200 | 403) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!(
        "{name} did not answer {ping_url} within 15 s:\n{}",
        logged()
    );
}

/// `kill -9` and reap, if running.
pub(crate) fn kill9(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A running `nsqd` on its own data directory and loopback ports.
pub struct Nsqd {
    child: Option<Child>,
    data: PathBuf,
    _dir: Option<tempfile::TempDir>,
    log: PathBuf,
    /// `--tcp-address`.
    pub tcp: SocketAddr,
    /// `--http-address`.
    pub http: SocketAddr,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Nsqd {
    /// Starts nsqd on a fresh temporary data directory with `extra` flags.
    pub fn start(extra: &[&str]) -> Nsqd {
        Nsqd::start_with_env(extra, &[])
    }

    /// Starts nsqd on a fresh temporary data directory with `extra` flags and environment
    /// variables `env` (kept for restarts).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Nsqd {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let mut nsqd = Nsqd::stopped(&data, extra);
        nsqd.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        nsqd._dir = Some(dir);
        nsqd.spawn();
        nsqd
    }

    /// Starts nsqd on an existing data directory (not deleted on drop).
    pub fn on(data: &Path, extra: &[&str]) -> Nsqd {
        let mut nsqd = Nsqd::stopped(data, extra);
        nsqd.spawn();
        nsqd
    }

    fn stopped(data: &Path, extra: &[&str]) -> Nsqd {
        Nsqd {
            child: None,
            data: data.to_path_buf(),
            _dir: None,
            log: data.with_extension("log"),
            tcp: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        }
    }

    /// The data directory.
    pub fn data_path(&self) -> &Path {
        &self.data
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let mut args = vec![
            "--data-path".to_string(),
            self.data.to_string_lossy().into_owned(),
            format!("--tcp-address={}", self.tcp),
            format!("--http-address={}", self.http),
            "--broadcast-address=127.0.0.1".to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        self.child = Some(spawn_server(
            "nsqd",
            &args,
            &self.env,
            &self.log,
            &self.url("/ping"),
        ));
    }

    /// How the process ended, if it has (`None` while it runs or when it was never started).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// `kill -9`, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM")
    }

    /// Sends `signal` (a `kill` name: `TERM`, `INT`, ...) and waits for the exit status.
    pub fn signal(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("nsqd is running");
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "nsqd did not exit within 20 s of SIG{signal}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same data directory and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop nsqd before restarting it");
        self.spawn();
    }
}

impl Drop for Nsqd {
    fn drop(&mut self) {
        self.kill9();
    }
}
