//! Running the client tools (`nsq_to_file`, `to_nsq`, `nsq_tail`, `nsq_stat`) as processes.

use crate::process::binary;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What a finished tool run produced.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// Runs `name args...` with `stdin`, waiting at most `timeout` (then kills it and panics).
pub fn run_tool(name: &str, args: &[&str], stdin: &[u8], timeout: Duration) -> ToolOutput {
    run_tool_with_env(name, args, &[], stdin, timeout)
}

/// [`run_tool`] with extra environment variables (such as `SSL_CERT_FILE`).
pub fn run_tool_with_env(
    name: &str,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
    stdin: &[u8],
    timeout: Duration,
) -> ToolOutput {
    let mut tool = Tool::spawn_with(name, args, env, true);
    if let Some(mut input) = tool.child.as_mut().and_then(|c| c.stdin.take()) {
        let _ = input.write_all(stdin);
    }
    let status = tool
        .wait(timeout)
        .unwrap_or_else(|| panic!("{name} did not exit within {timeout:?}: {}", tool.stderr()));
    ToolOutput {
        status,
        stdout: tool.stdout(),
        stderr: tool.stderr(),
    }
}

/// A running tool whose stdout and stderr go to files (so nothing blocks on a pipe).
pub struct Tool {
    child: Option<Child>,
    name: String,
    out: PathBuf,
    err: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tool {
    /// Starts `name args...` with stdin closed.
    pub fn spawn(name: &str, args: &[&str]) -> Tool {
        Tool::spawn_with(name, args, &[], false)
    }

    fn spawn_with(
        name: &str,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
        piped: bool,
    ) -> Tool {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("stdout");
        let err = dir.path().join("stderr");
        let child = Command::new(binary(name))
            .args(args)
            .envs(env.iter().copied())
            .stdin(if piped { Stdio::piped() } else { Stdio::null() })
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Tool {
            child: Some(child),
            name: name.to_string(),
            out,
            err,
            _dir: dir,
        }
    }

    /// Stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits up to `timeout` for the exit status.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status (panics after 30 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("running").id();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        self.wait(Duration::from_secs(30)).unwrap_or_else(|| {
            panic!(
                "{} did not exit within 30 s of SIGTERM: {}",
                self.name,
                self.stderr()
            )
        })
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The lines of every file under `dir` (recursively), gzip files decompressed (all their
/// members). A gzip file whose last member is cut short (a writer killed mid-member) yields
/// the lines before the cut. Returns the lines and the files read.
pub fn archive_lines(dir: &std::path::Path) -> (Vec<String>, Vec<PathBuf>) {
    use std::io::Read;
    let mut lines = Vec::new();
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let raw = std::fs::read(&path).expect("read archive file");
            let text = if path.extension().is_some_and(|e| e == "gz") {
                let mut out = Vec::new();
                let mut decoder = flate2::read::MultiGzDecoder::new(&raw[..]);
                // An error here means a torn last member: keep what decoded.
                let _ = decoder.read_to_end(&mut out);
                out
            } else {
                raw
            };
            lines.extend(
                String::from_utf8_lossy(&text)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
            files.push(path);
        }
    }
    files.sort();
    (lines, files)
}
