//! The HTTP side of the tools over HTTPS: an `https://` nsqd address (nsqd's `--https-address`
//! listener) works in `nsq_stat`, trusting the CA that `SSL_CERT_FILE` names (as Go's tools
//! do); an untrusted certificate or a plain port is a one-line error. NSQ's own nsq_stat
//! refuses any scheme in an address ("address should not contain scheme"); ours takes
//! `http://` and `https://`, and bare `host:port` stays plain HTTP.

use nsq_tests::tls::Pki;
use nsq_tests::{free_port, http_post, run_tool_with_env, Nsqd, ToolOutput};
use std::ffi::OsStr;
use std::time::Duration;

const QUICK: Duration = Duration::from_secs(20);

struct HttpsNsqd {
    nsqd: Nsqd,
    pki: Pki,
    https_port: u16,
}

/// nsqd with TLS and an HTTPS listener, holding topic `s` with channel `c` and 3 messages.
fn start() -> HttpsNsqd {
    let pki = Pki::new();
    let https_port = free_port();
    let mut flags = pki.nsqd_flags();
    flags.push(format!("--https-address=127.0.0.1:{https_port}"));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nsqd = Nsqd::start(&flags);
    for path in ["/topic/create?topic=s", "/channel/create?topic=s&channel=c"] {
        assert_eq!(http_post(&nsqd.url(path), b"").status, 200);
    }
    assert_eq!(
        http_post(&nsqd.url("/mpub?topic=s"), b"1\n2\n3").status,
        200
    );
    HttpsNsqd {
        nsqd,
        pki,
        https_port,
    }
}

fn nsq_stat(address: &str, cert_file: &OsStr) -> ToolOutput {
    let flag = format!("--nsqd-http-address={address}");
    run_tool_with_env(
        "nsq_stat",
        &[
            "--topic=s",
            "--channel=c",
            &flag,
            "--count=1",
            "--interval=100ms",
        ],
        &[("SSL_CERT_FILE", cert_file)],
        b"",
        QUICK,
    )
}

/// The `msgs` column of the first row (total messages of the channel).
fn messages(out: &ToolOutput) -> Option<String> {
    out.stdout
        .lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().nth(11))
        .map(str::to_string)
}

#[test]
fn nsq_stat_reads_stats_over_https() {
    let t = start();
    let out = nsq_stat(
        &format!("https://127.0.0.1:{}", t.https_port),
        t.pki.ca.as_os_str(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(messages(&out).as_deref(), Some("3"), "{}", out.stdout);
    // http:// and a bare address are the plain listener.
    for address in [format!("http://{}", t.nsqd.http), t.nsqd.http.to_string()] {
        let out = nsq_stat(&address, t.pki.ca.as_os_str());
        assert!(out.status.success(), "{address}: {out:?}");
        assert_eq!(messages(&out).as_deref(), Some("3"), "{address}");
    }
}

#[test]
fn untrusted_certificates_and_plain_ports_are_one_line_errors() {
    let t = start();
    let https = format!("https://127.0.0.1:{}", t.https_port);
    // Trusting nothing: the server certificate cannot be verified.
    let out = nsq_stat(&https, OsStr::new("/nonexistent/ca.pem"));
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains(&https), "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    // TLS spoken to the plain HTTP port.
    let plain = format!("https://{}", t.nsqd.http);
    let out = nsq_stat(&plain, t.pki.ca.as_os_str());
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.starts_with("nsq_stat: "), "{}", out.stderr);
}
