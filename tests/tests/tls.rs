//! TLS end to end against the real nsqd binary: the V2 upgrade (IDENTIFY `tls_v1`, the
//! handshake on the same socket, `OK` over TLS), `--tls-required` for TCP and HTTP, client
//! certificates under `require-verify`, the HTTPS listener (checked with curl, as a user would),
//! and `/stats` TLS fields. Compression over TLS is checked with pynsq (tests/pynsq.rs). Certificates are made by the test (`nsq_tests::tls::Pki`).

use nsq_server::protocol::Frame;
use nsq_tests::tls::{upgrade, Pki};
use nsq_tests::{free_port, http_get, Nsqd, RawClient};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

struct TlsNsqd {
    nsqd: Nsqd,
    pki: Pki,
    https_port: u16,
}

fn start(extra: &[&str]) -> TlsNsqd {
    let pki = Pki::new();
    let https_port = free_port();
    let mut flags = pki.nsqd_flags();
    flags.push(format!("--https-address=127.0.0.1:{https_port}"));
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TlsNsqd {
        nsqd: Nsqd::start(&flags),
        pki,
        https_port,
    }
}

/// `curl --cacert` against the HTTPS listener: (status, body).
fn curl(t: &TlsNsqd, method: &str, path: &str, body: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--max-time", "10", "--cacert"])
        .arg(&t.pki.ca)
        .args(["-X", method, "--data-binary", body])
        .arg(format!("https://127.0.0.1:{}{path}", t.https_port))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn identify_tls(client: &mut RawClient, extra: Value) -> Value {
    let mut body = json!({"feature_negotiation": true, "tls_v1": true, "client_id": "tls-test"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    serde_json::from_slice(&client.identify(body)).expect("IDENTIFY JSON")
}

/// Connects, upgrades with `client_cert` (if any) and reads the `OK` sent over TLS.
fn tls_client(t: &TlsNsqd, client_cert: Option<&nsq_tests::tls::Pair>) -> RawClient {
    let mut plain = RawClient::connect(t.nsqd.tcp);
    let answer = identify_tls(&mut plain, json!({}));
    assert_eq!(answer["tls_v1"], true, "{answer}");
    let mut tls = upgrade(plain, t.pki.client_config(client_cert)).expect("TLS handshake");
    tls.expect_response(b"OK");
    tls
}

fn stats_client(stats: &Value, client_id: &str) -> Value {
    stats["producers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["client_id"] == client_id)
        .cloned()
        .unwrap_or_else(|| panic!("no client {client_id} in {stats}"))
}

#[test]
fn identify_upgrades_to_tls_and_stats_report_the_session() {
    let t = start(&[]);
    assert!(
        t.nsqd
            .log()
            .contains(&format!("HTTPS: listening on 127.0.0.1:{}", t.https_port)),
        "{}",
        t.nsqd.log()
    );
    let mut client = tls_client(&t, None);
    client.publish("tls_topic", b"over tls");

    let (status, body) = curl(&t, "GET", "/stats?format=json", "");
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).expect("stats JSON");
    let me = stats_client(&stats, "tls-test");
    assert_eq!(me["tls"], true, "{me}");
    assert_eq!(me["tls_version"], "TLS1.3", "{me}");
    // NSQ v1.3.0's cipher table predates TLS 1.3 and names its suites `Unknown <number>`.
    let suite = me["tls_cipher_suite"].as_str().unwrap_or_default();
    assert!(suite.starts_with("Unknown 48"), "{me}");
    assert_eq!(me["tls_negotiated_protocol"], "", "{me}");
    assert_eq!(me["tls_negotiated_protocol_is_mutual"], true, "{me}");

    // A client that does not ask for TLS goes on in plain text, and /stats says so.
    let mut plain = RawClient::connect(t.nsqd.tcp);
    let answer: Value = serde_json::from_slice(
        &plain.identify(json!({"feature_negotiation": true, "client_id": "plain-test"})),
    )
    .expect("JSON");
    assert_eq!(answer["tls_v1"], false);
    plain.publish("tls_topic", b"in the clear");
    let stats = http_get(&t.nsqd.url("/stats?format=json")).json();
    let other = stats_client(&stats, "plain-test");
    assert_eq!(other["tls"], false, "{other}");
    assert_eq!(other["tls_version"], "", "{other}");
    assert_eq!(other["tls_negotiated_protocol_is_mutual"], false, "{other}");

    // Both messages are there for a TLS subscriber.
    client.subscribe("tls_topic", "c");
    client.send_raw(b"RDY 10\n");
    let bodies: Vec<Vec<u8>> = (0..2).map(|_| client.message().2).collect();
    assert_eq!(bodies, vec![b"over tls".to_vec(), b"in the clear".to_vec()]);
}

#[test]
fn tls_required_refuses_plain_tcp_and_plain_http() {
    let t = start(&["--tls-required=true"]);
    let mut plain = RawClient::connect(t.nsqd.tcp);
    plain.send_raw(&nsq_tests::raw::with_body("PUB t", b"x"));
    assert_eq!(
        plain.expect_error("E_"),
        "E_INVALID cannot PUB in current state (TLS required)"
    );
    assert!(plain.is_closed(Duration::from_secs(5)));

    let refused = http_get(&t.nsqd.url("/ping"));
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.body,
        format!(
            r#"{{"message": "TLS_REQUIRED", "https_port": {}}}"#,
            t.https_port
        )
    );

    // Over TLS everything works: TCP after the upgrade, HTTPS /pub and /stats.
    let mut client = tls_client(&t, None);
    client.publish("required", b"tcp");
    assert_eq!(
        curl(&t, "POST", "/pub?topic=required", "https"),
        (200, "OK".into())
    );
    let (status, body) = curl(&t, "GET", "/stats?format=json&topic=required", "");
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(stats["topics"][0]["depth"], 2, "{stats}");
}

#[test]
fn tls_required_tcp_https_still_serves_plain_http() {
    let t = start(&["--tls-required=tcp-https"]);
    let mut plain = RawClient::connect(t.nsqd.tcp);
    plain.send_raw(b"NOP\n");
    assert_eq!(
        plain.expect_error("E_"),
        "E_INVALID cannot NOP in current state (TLS required)"
    );
    assert_eq!(http_get(&t.nsqd.url("/ping")).status, 200);
    assert_eq!(curl(&t, "GET", "/ping", "").0, 200);
}

#[test]
fn require_verify_accepts_only_certificates_from_the_ca() {
    let t = start(&["--tls-client-auth-policy=require-verify"]);
    // A certificate from the CA: in, and the session is TLS.
    let mut good = tls_client(&t, Some(&t.pki.client));
    good.publish("verified", b"ok");

    // No certificate, or one from another CA: the handshake fails and nothing gets in.
    for cert in [None, Some(&t.pki.stranger)] {
        let mut plain = RawClient::connect(t.nsqd.tcp);
        identify_tls(&mut plain, json!({}));
        match upgrade(plain, t.pki.client_config(cert)) {
            Err(_) => {}
            // TLS 1.3 clients finish before the server checks their certificate: then the
            // server's alert ends the connection instead of an OK.
            Ok(mut c) => assert!(
                !matches!(
                    c.try_frame(Duration::from_secs(5)),
                    Some(Frame::Response(_))
                ),
                "an unverifiable client certificate was accepted"
            ),
        }
    }
    assert!(
        t.nsqd.log().contains("TLS handshake failed"),
        "{}",
        t.nsqd.log()
    );
    // The verified client is unaffected.
    good.publish("verified", b"still ok");
}

#[test]
fn without_a_certificate_tls_is_not_offered() {
    let nsqd = Nsqd::start(&[]);
    let mut client = RawClient::connect(nsqd.tcp);
    let answer: Value = serde_json::from_slice(
        &client.identify(json!({"feature_negotiation": true, "tls_v1": true})),
    )
    .expect("JSON");
    assert_eq!(answer["tls_v1"], false);
    client.publish("plain", b"still plain");
    assert!(!nsqd.log().contains("HTTPS: listening"));
}

#[test]
fn bad_tls_flags_stop_nsqd_with_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    for (flags, expected) in [
        (
            vec!["--tls-required=true".to_string()],
            "cannot require TLS client connections without TLS key and cert",
        ),
        (
            vec![
                "--tls-cert=/nonexistent/cert.pem".to_string(),
                "--tls-key=/nonexistent/key.pem".to_string(),
            ],
            "failed to build TLS config",
        ),
    ] {
        let output = Command::new(nsq_tests::binary("nsqd"))
            .arg(format!("--data-path={}", dir.path().display()))
            .args(["--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0"])
            .args(&flags)
            .output()
            .expect("run nsqd");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} started");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
}

fn bench(t: &TlsNsqd, args: &[&str]) -> String {
    let ca = t.pki.ca.to_string_lossy().into_owned();
    let out = Command::new(nsq_tests::binary("nsq_bench"))
        .arg(format!("--nsqd-tcp-address={}", t.nsqd.tcp))
        .args(["--runfor", "1", "--tls", "--tls-root-ca-file", &ca])
        .args(args)
        .output()
        .expect("run nsq_bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn row(table: &str, name: &str) -> u64 {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} row in {table}"))
}

#[test]
fn nsq_bench_runs_over_tls() {
    let t = start(&["--tls-required=tcp-https"]);
    let table = bench(&t, &["--size", "100", "--batch-size", "20"]);
    assert!(row(&table, "published") > 0, "{table}");
    assert!(row(&table, "consumed") > 0, "{table}");
    let table = bench(&t, &["connect"]);
    assert!(row(&table, "connected") > 0, "{table}");
    assert!(t.nsqd.log().contains("upgrading connection to TLS"));
}
