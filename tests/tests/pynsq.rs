//! pynsq 0.9.1 (NSQ's official Python client, which nobody here wrote) against our nsqd:
//! its Writer publishes with PUB and MPUB, its Reader consumes with max_in_flight > 1, REQs
//! failures (with and without pynsq's backoff) and negotiates deflate and snappy.
//!
//! The Python side is `tests/py/roundtrip.py`, run with the interpreter in `NSQ_TEST_PYTHON`
//! (`tests/run.sh` sets up a venv with the pinned packages and exports it), else
//! `target/pyenv/bin/python`. A missing interpreter fails the tests: they never pass silently.

use nsq_tests::python::{python, workspace_root};
use nsq_tests::Nsqd;
use serde_json::Value;
use std::process::Command;

fn has_module(module: &str) -> bool {
    Command::new(python())
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs `roundtrip.py` against `nsqd` and returns its JSON report (panics with its output when
/// it fails).
fn roundtrip(nsqd: &Nsqd, topic: &str, args: &[&str]) -> Value {
    run_script("roundtrip.py", nsqd, topic, args)
}

/// Runs `tests/py/<script>` against `nsqd` and returns the JSON on its last line of output.
fn run_script(script: &str, nsqd: &Nsqd, topic: &str, args: &[&str]) -> Value {
    let script = workspace_root().join("tests/py").join(script);
    let output = Command::new(python())
        .arg(&script)
        .arg("--nsqd")
        .arg(nsqd.tcp.to_string())
        .args(["--topic", topic, "--deadline", "40"])
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pynsq {} failed ({}):\nstdout: {stdout}\nstderr: {stderr}\nnsqd log:\n{}",
        script.display(),
        output.status,
        nsqd.log()
    );
    let line = stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}\n{stderr}"));
    println!("{topic}: {report}");
    report
}

fn assert_all_finished(report: &Value, count: u64, deliveries: u64) {
    assert_eq!(report["published_ok"], count, "{report}");
    assert_eq!(report["finished"], count, "{report}");
    assert_eq!(report["unexpected"], serde_json::json!([]), "{report}");
    assert_eq!(report["deliveries"], deliveries, "no duplicates: {report}");
}

#[test]
fn writer_pub_and_mpub_reader_receives_exactly_those() {
    let nsqd = Nsqd::start(&[]);
    let report = roundtrip(
        &nsqd,
        "pynsq_plain",
        &["--count", "1000", "--max-in-flight", "50"],
    );
    assert_all_finished(&report, 1000, 1000);
    assert_eq!(report["attempt_sequences"], serde_json::json!(["[1]"]));
}

#[test]
fn failed_messages_are_redelivered_with_growing_attempts() {
    let nsqd = Nsqd::start(&[]);
    // REQ without backoff: every message is seen with attempts 1, 2, 3 and finished on the 3rd.
    let report = roundtrip(
        &nsqd,
        "pynsq_req",
        &[
            "--count",
            "60",
            "--max-in-flight",
            "10",
            "--fail-attempts",
            "2",
        ],
    );
    assert_all_finished(&report, 60, 180);
    assert_eq!(
        report["attempt_sequences"],
        serde_json::json!(["[1, 2, 3]"])
    );

    // Returning False from the handler: REQ plus pynsq's backoff (RDY 0, then RDY 1 probes).
    let report = roundtrip(
        &nsqd,
        "pynsq_backoff",
        &[
            "--count",
            "6",
            "--max-in-flight",
            "4",
            "--fail-attempts",
            "1",
            "--backoff",
        ],
    );
    assert_all_finished(&report, 6, 12);
    assert_eq!(report["attempt_sequences"], serde_json::json!(["[1, 2]"]));
}

#[test]
fn deflate_connections_work() {
    let nsqd = Nsqd::start(&[]);
    let report = roundtrip(
        &nsqd,
        "pynsq_deflate",
        &["--count", "300", "--max-in-flight", "20", "--deflate"],
    );
    assert_all_finished(&report, 300, 300);
    assert_eq!(report["negotiated"]["deflate"], true, "{report}");
}

#[test]
fn snappy_connections_work() {
    if !has_module("snappy") {
        // tests/run.sh installs python-snappy from PyPI when it can; say so rather than fail.
        eprintln!("note: skipping pynsq snappy test: python-snappy is not installed");
        return;
    }
    let nsqd = Nsqd::start(&[]);
    let report = roundtrip(
        &nsqd,
        "pynsq_snappy",
        &[
            "--count",
            "300",
            "--max-in-flight",
            "20",
            "--snappy",
            "--fail-attempts",
            "1",
        ],
    );
    assert_all_finished(&report, 300, 600);
    assert_eq!(report["negotiated"]["snappy"], true, "{report}");
}

#[test]
fn msg_timeout_redelivers_and_heartbeats_flow() {
    let nsqd = Nsqd::start(&[]);
    // IDENTIFY msg_timeout=1000 and heartbeat_interval=1000; first deliveries are left alone.
    let report = run_script(
        "features.py",
        &nsqd,
        "pynsq_timeout",
        &["--scenario", "timeout"],
    );
    assert_eq!(
        report["attempts"],
        serde_json::json!(["[1, 2]"]),
        "{report}"
    );
    let gap = report["min_redelivery_gap"].as_f64().expect("gap");
    assert!(
        gap >= 0.9,
        "redelivered before the 1 s msg_timeout: {report}"
    );
    assert!(
        report["heartbeats"].as_u64().expect("count") >= 1,
        "1 s heartbeats: {report}"
    );
    assert_eq!(report["connections"], 1, "no reconnects: {report}");
}

#[test]
fn touch_keeps_a_message_past_msg_timeout() {
    let nsqd = Nsqd::start(&[]);
    let report = run_script(
        "features.py",
        &nsqd,
        "pynsq_touch",
        &["--scenario", "touch"],
    );
    assert_eq!(report["attempts"], serde_json::json!([1]), "{report}");
}

#[test]
fn writer_dpub_is_delivered_after_its_delay() {
    let nsqd = Nsqd::start(&[]);
    let report = run_script("features.py", &nsqd, "pynsq_dpub", &["--scenario", "dpub"]);
    assert_eq!(report["got"], serde_json::json!([["later", 1]]), "{report}");
    let delay = report["delay"].as_f64().expect("delay");
    assert!(
        delay >= 1.4,
        "delivered {delay} s after DPUB of 1.5 s: {report}"
    );
}

/// nsqd serving TLS with throw-away certificates (kept alive with it).
fn tls_nsqd() -> (Nsqd, nsq_tests::tls::Pki) {
    let pki = nsq_tests::tls::Pki::new();
    let https = format!("--https-address=127.0.0.1:{}", nsq_tests::free_port());
    let mut flags = pki.nsqd_flags();
    flags.push(https);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    (Nsqd::start(&flags), pki)
}

fn tls_roundtrip(name: &str, compression: &[&str]) {
    let (nsqd, pki) = tls_nsqd();
    let ca = pki.ca.to_string_lossy().into_owned();
    let mut args = vec!["--count", "200", "--max-in-flight", "20", "--tls-ca", &ca];
    args.extend_from_slice(compression);
    let report = roundtrip(&nsqd, name, &args);
    assert_all_finished(&report, 200, 200);
    assert!(
        nsqd.log().contains("upgrading connection to TLS"),
        "pynsq did not upgrade:\n{}",
        nsqd.log()
    );
    if let Some(kind) = compression.first() {
        let kind = kind.trim_start_matches("--");
        assert_eq!(report["negotiated"][kind], true, "{report}");
    }
}

#[test]
fn tls_v1_connections_work() {
    tls_roundtrip("pynsq_tls", &[]);
}

#[test]
fn deflate_over_tls_works() {
    tls_roundtrip("pynsq_tls_deflate", &["--deflate"]);
}

#[test]
fn snappy_over_tls_works() {
    if !has_module("snappy") {
        eprintln!("note: skipping pynsq snappy-over-TLS test: python-snappy is not installed");
        return;
    }
    tls_roundtrip("pynsq_tls_snappy", &["--snappy"]);
}

#[test]
fn client_certificate_under_require_verify() {
    let pki = nsq_tests::tls::Pki::new();
    let mut flags = pki.nsqd_flags();
    flags.push("--tls-client-auth-policy=require-verify".into());
    flags.push(format!(
        "--https-address=127.0.0.1:{}",
        nsq_tests::free_port()
    ));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nsqd = Nsqd::start(&flags);
    let ca = pki.ca.to_string_lossy().into_owned();
    let cert = pki.client.cert.to_string_lossy().into_owned();
    let key = pki.client.key.to_string_lossy().into_owned();
    let report = roundtrip(
        &nsqd,
        "pynsq_tls_cert",
        &[
            "--count",
            "50",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    assert_all_finished(&report, 50, 50);
}
