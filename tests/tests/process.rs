//! nsqd as a process, the way deployment scripts drive it: signals, the data-directory lock,
//! `--config` files with NSQ's option names, Go-style flags, bad flags, `--version`.

use nsq_tests::{binary, free_port, http_get, http_post, Nsqd, RawClient};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A process this test started; killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Runs nsqd with exactly `args` and waits (up to 15 s) for it to exit on its own.
fn run_to_exit(args: &[&str]) -> Output {
    let child = Command::new(binary("nsqd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nsqd");
    let mut proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(_)) = proc.0.try_wait() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nsqd {args:?} was expected to exit but is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let child = std::mem::replace(
        &mut proc.0,
        Command::new("true").spawn().expect("spawn true"),
    );
    child.wait_with_output().expect("collect nsqd output")
}

/// Starts nsqd with exactly `args` and waits until `http` answers `/ping`.
fn start_with(args: &[&str], http: SocketAddr) -> Proc {
    let child = Command::new(binary("nsqd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nsqd");
    let mut proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = proc.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = proc.0.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("nsqd {args:?} exited during start ({status}): {err}");
        }
        if http_get(&format!("http://{http}/ping")).status == 200 {
            return proc;
        }
        assert!(
            Instant::now() < deadline,
            "nsqd {args:?} never answered /ping"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The non-empty lines of a process's stderr.
/// What nsqd printed on stderr, without the version line it logs first on start (as NSQ's
/// does: `INFO: nsqd v1.3.0 (built w/go1.19.8)`), so an error is the one line left.
fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.contains(" INFO ") && l.contains(" v1.3.0 (built w/")))
        .map(str::to_string)
        .collect()
}

/// IDENTIFY with feature negotiation, asking for snappy; the server's JSON answer (its
/// `snappy` is true only when nsqd has snappy enabled).
fn identify(tcp: SocketAddr) -> serde_json::Value {
    let mut client = RawClient::connect(tcp);
    let reply = client.identify(serde_json::json!({"feature_negotiation": true, "snappy": true}));
    serde_json::from_slice(&reply).expect("IDENTIFY JSON")
}

#[test]
fn sigterm_and_sigint_exit_0_and_restart_cleanly() {
    let mut nsqd = Nsqd::start(&[]);
    for i in 0..10 {
        let reply = http_post(&nsqd.url("/pub?topic=sig"), format!("m{i}").as_bytes());
        assert_eq!(reply.body, "OK");
    }
    let status = nsqd.terminate();
    assert!(status.success(), "SIGTERM: {status}\n{}", nsqd.log());

    let before = nsqd.log().len();
    nsqd.restart();
    let stats = http_get(&nsqd.url("/stats?format=json&topic=sig")).json();
    assert_eq!(stats["topics"][0]["depth"], 10, "{stats}");
    let status = nsqd.signal("INT");
    assert!(status.success(), "SIGINT: {status}\n{}", nsqd.log());

    nsqd.restart();
    let restarts = nsqd.log()[before..].to_string();
    assert!(
        !restarts.to_lowercase().contains("recover"),
        "a clean stop needs no recovery:\n{restarts}"
    );
    let mut consumer = RawClient::connect(nsqd.tcp);
    consumer.subscribe("sig", "c");
    consumer.send_raw(b"RDY 10\n");
    for i in 0..10 {
        let (attempts, _, body) = consumer.message();
        assert_eq!((attempts, body), (1, format!("m{i}").into_bytes()));
    }
    assert!(nsqd.terminate().success());
}

#[test]
fn second_nsqd_on_the_same_data_path_exits_with_one_clear_line() {
    let nsqd = Nsqd::start(&[]);
    let data = nsqd.data_path().to_str().expect("utf-8 path").to_string();
    let (tcp, http) = (loopback().to_string(), loopback().to_string());
    let output = run_to_exit(&[
        "--data-path",
        &data,
        "--tcp-address",
        &tcp,
        "--http-address",
        &http,
    ]);
    assert!(!output.status.success(), "second nsqd must fail");
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "one line, got {lines:?}");
    let line = lines[0].to_lowercase();
    assert!(
        line.contains("lock") && line.contains(&data.to_lowercase()),
        "the line names the lock and the directory: {}",
        lines[0]
    );
    // The first one is unharmed.
    assert_eq!(http_get(&nsqd.url("/ping")).body, "OK");
}

#[test]
fn config_file_with_nsq_option_names_is_honoured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let (tcp, http) = (loopback(), loopback());
    // The shape of NSQ's example nsqd.cfg: empty TLS settings, statsd tuning, e2e percentiles
    // and durations as strings or as integers (milliseconds).
    let config = format!(
        r#"
## listen
tcp_address = "{tcp}"
http_address = "{http}"
data_path = "{data}"
id = 77
mem_queue_size = 10000
max_bytes_per_file = 104857600
sync_every = 2500
sync_timeout = "2s"
msg_timeout = 5000
max_msg_timeout = "15m"
max_msg_size = 100
max_req_timeout = "1h"
max_body_size = 5123840
max_heartbeat_interval = "60s"
max_rdy_count = 2500
max_output_buffer_size = 65536
max_output_buffer_timeout = "1s"
statsd_prefix = "nsq.%s"
statsd_interval = "60s"
statsd_mem_stats = true
e2e_processing_latency_percentiles = [1.0, 0.99, 0.95]
e2e_processing_latency_window_time = "10m"
tls_cert = ""
tls_key = ""
tls_required = false
tls_min_version = ""
deflate = true
max_deflate_level = 6
snappy = false
"#,
        data = data.display()
    );
    let path = dir.path().join("nsqd.cfg");
    std::fs::write(&path, config).expect("write config");
    let cfg = path.to_str().expect("utf-8 path");

    let proc = start_with(&["--config", cfg], http);
    let url = |p: &str| format!("http://{http}{p}");
    assert_eq!(http_get(&url("/config/max_msg_size")).body.trim(), "100");
    assert_eq!(http_post(&url("/pub?topic=cfg"), &[b'x'; 100]).body, "OK");
    let too_big = http_post(&url("/pub?topic=cfg"), &[b'x'; 101]);
    assert_eq!(too_big.status, 413, "{}", too_big.body);
    let negotiated = identify(tcp);
    assert_eq!(negotiated["msg_timeout"], 5000, "{negotiated}");
    assert_eq!(negotiated["snappy"], false, "{negotiated}");
    drop(proc);

    // A flag wins over the file.
    let proc = start_with(&["--config", cfg, "--max-msg-size=200"], http);
    assert_eq!(http_post(&url("/pub?topic=cfg"), &[b'x'; 150]).body, "OK");
    drop(proc);
}

#[test]
fn go_style_single_dash_flags_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tcp, http) = (loopback(), loopback());
    let data = format!("-data-path={}", dir.path().display());
    let tcp_flag = format!("-tcp-address={tcp}");
    let http_text = http.to_string();
    let _proc = start_with(
        &[
            &data,
            &tcp_flag,
            "-http-address",
            &http_text,
            "-max-msg-size=100",
            "-msg-timeout=5s",
            "-snappy=false",
            "-deflate",
            "-sync-every",
            "1",
            "-statsd-prefix=nsq.%s",
            "-log-level=warn",
        ],
        http,
    );
    let negotiated = identify(tcp);
    assert_eq!(negotiated["msg_timeout"], 5000, "{negotiated}");
    assert_eq!(negotiated["snappy"], false, "{negotiated}");
    let too_big = http_post(&format!("http://{http}/pub?topic=go"), &[b'x'; 101]);
    assert_eq!(too_big.status, 413, "{}", too_big.body);
}

#[test]
fn bad_flags_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path").to_string();
    let cases: [(&[&str], &str); 6] = [
        (&["--no-such-flag"], "no-such-flag"),
        (&["-no-such-flag=1"], "no-such-flag"),
        (&["--sync-every=abc"], "sync-every"),
        (&["--msg-timeout=10"], "msg-timeout"),
        (&["--tls-cert=/nonexistent.pem"], "tls-cert"),
        (
            &["--e2e-processing-latency-percentile=100"],
            "e2e-processing-latency-percentile",
        ),
    ];
    for (flags, names) in cases {
        let (tcp, http) = (loopback().to_string(), loopback().to_string());
        let mut args = vec!["--data-path", &data, "--tcp-address", &tcp];
        args.extend(["--http-address", &http]);
        args.extend(flags);
        let output = run_to_exit(&args);
        assert!(!output.status.success(), "{flags:?} must fail");
        let lines = stderr_lines(&output);
        assert_eq!(lines.len(), 1, "{flags:?}: one line, got {lines:?}");
        assert!(
            lines[0].contains(names),
            "{flags:?}: the line names the flag: {}",
            lines[0]
        );
    }
    // The config file's problems are one line too.
    let bad = dir.path().join("bad.cfg");
    std::fs::write(&bad, "max_msg_size = \"lots\"\n").expect("write");
    let output = run_to_exit(&["--config", bad.to_str().expect("utf-8")]);
    assert!(!output.status.success());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("bad.cfg"), "{}", lines[0]);
}

#[test]
fn version_prints_one_line_and_exits_0() {
    for flag in ["--version", "-version"] {
        let output = run_to_exit(&[flag]);
        assert!(output.status.success(), "{flag}: {}", output.status);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{flag}: {stdout}");
        assert!(
            lines[0].starts_with("nsqd v1.3.0"),
            "like NSQ's `nsqd v1.3.0 (built w/go...)`: {}",
            lines[0]
        );
    }
    let help = run_to_exit(&["-help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--tcp-address"));
}

#[test]
fn unreadable_data_path_fails_with_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let (tcp, http) = (loopback().to_string(), loopback().to_string());
    let output = run_to_exit(&[
        "--data-path",
        file.to_str().expect("utf-8"),
        "--tcp-address",
        &tcp,
        "--http-address",
        &http,
    ]);
    assert!(!output.status.success());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("not-a-dir"), "{}", lines[0]);
    assert!(Path::new(&file).is_file(), "the file is left alone");
}

#[test]
fn missing_data_path_is_refused_not_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("typo");
    let (tcp, http) = (loopback().to_string(), loopback().to_string());
    let output = run_to_exit(&[
        "--data-path",
        missing.to_str().expect("utf-8"),
        "--tcp-address",
        &tcp,
        "--http-address",
        &http,
    ]);
    assert!(
        !output.status.success(),
        "NSQ refuses a missing --data-path"
    );
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("typo"), "{}", lines[0]);
    assert!(!missing.exists(), "nothing was created");
}

#[test]
fn port_in_use_fails_with_one_line() {
    let nsqd = Nsqd::start(&[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let (tcp, http) = (nsqd.tcp.to_string(), loopback().to_string());
    let output = run_to_exit(&[
        "--data-path",
        dir.path().to_str().expect("utf-8"),
        "--tcp-address",
        &tcp,
        "--http-address",
        &http,
    ]);
    assert!(!output.status.success());
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(&tcp), "names the address: {}", lines[0]);
    assert_eq!(http_get(&nsqd.url("/ping")).body, "OK");
}
