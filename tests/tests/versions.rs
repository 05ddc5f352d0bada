//! What the binaries say about themselves, as NSQ v1.3.0's do: `--version` in the shape client
//! test fixtures parse (`nsqd v1.3.0 (built w/go1.19.8)`), our own release in `--help` and
//! `/info`, and the bound addresses logged when asked for port 0.

use nsq_tests::{http_get, run_tool, Nsqd, Nsqlookupd, Tool};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const BINARIES: [&str; 7] = [
    "nsqd",
    "nsqlookupd",
    "nsq_tail",
    "nsq_to_file",
    "nsq_stat",
    "to_nsq",
    "nsq_log",
];

/// `NAME vX.Y.Z(-suffix)? (built w/[a-z0-9.-]+)`, the pattern NSQ's client fixtures use.
fn has_nsq_version_shape(line: &str, name: &str) -> bool {
    let Some(rest) = line.strip_prefix(&format!("{name} v")) else {
        return false;
    };
    let Some((version, built)) = rest.split_once(" (built w/") else {
        return false;
    };
    let (numbers, suffix) = version.split_once('-').unwrap_or((version, "x"));
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && !suffix.is_empty()
        && built.strip_suffix(')').is_some_and(|b| {
            !b.is_empty()
                && b.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        })
}

#[test]
fn the_shape_check_accepts_nsqs_own_line_and_refuses_the_old_ones() {
    assert!(has_nsq_version_shape(
        "nsqd v1.3.0 (built w/go1.19.8)",
        "nsqd"
    ));
    assert!(has_nsq_version_shape(
        "nsqd v1.3.0-rc1 (built w/rustc-1.87.0)",
        "nsqd"
    ));
    assert!(!has_nsq_version_shape("nsqd v1.3.0 (nsq-rs 0.1.0)", "nsqd"));
    assert!(!has_nsq_version_shape("nsqlookupd 0.1.0", "nsqlookupd"));
}

#[test]
fn every_binary_prints_nsqs_version_line_naming_the_compiler() {
    for name in BINARIES {
        let out = run_tool(name, &["--version"], b"", Duration::from_secs(10));
        assert!(out.status.success(), "{name}: {}", out.stderr);
        let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: {}", out.stdout);
        assert!(
            has_nsq_version_shape(lines[0], name),
            "{name}: {:?} is not `{name} vX.Y.Z (built w/...)`",
            lines[0]
        );
        assert!(
            lines[0].starts_with(&format!("{name} v1.3.0 (built w/rustc-")),
            "{}",
            lines[0]
        );
    }
}

#[test]
fn help_and_info_tell_our_own_release() {
    let own = format!("nsq-rs {}", env!("CARGO_PKG_VERSION"));
    for name in ["nsqd", "nsqlookupd"] {
        let help = run_tool(name, &["--help"], b"", Duration::from_secs(10));
        assert!(help.stdout.contains(&own), "{name}: {}", help.stdout);
    }
    let nsqd = Nsqd::start(&[]);
    let info = http_get(&nsqd.url("/info")).json();
    assert_eq!(info["version"], "1.3.0");
    assert_eq!(info["nsq_rs_version"], env!("CARGO_PKG_VERSION"));
    let lookupd = Nsqlookupd::start(&[]);
    let info = http_get(&lookupd.url("/info")).json();
    assert_eq!(info["version"], "1.3.0");
    assert_eq!(info["nsq_rs_version"], env!("CARGO_PKG_VERSION"));
}

/// The address after `"{what}: listening on "` in `log`, once logged.
fn listening_on(log: &str, what: &str) -> Option<SocketAddr> {
    let marker = format!("{what}: listening on ");
    log.lines()
        .find_map(|l| l.split_once(&marker))
        .and_then(|(_, addr)| addr.trim().parse().ok())
}

#[test]
fn nsqlookupd_on_port_0_logs_the_ports_it_bound() {
    let mut lookupd = Tool::spawn(
        "nsqlookupd",
        &["--tcp-address=127.0.0.1:0", "--http-address=127.0.0.1:0"],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let (tcp, http) = loop {
        let log = lookupd.stderr();
        if let (Some(tcp), Some(http)) = (listening_on(&log, "TCP"), listening_on(&log, "HTTP")) {
            break (tcp, http);
        }
        assert!(Instant::now() < deadline, "no listening lines: {log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(lookupd
        .stderr()
        .contains("nsqlookupd v1.3.0 (built w/rustc-"));
    assert_ne!(tcp.port(), 0);
    assert_ne!(http.port(), 0);
    // The logged ports are the live ones.
    assert_eq!(http_get(&format!("http://{http}/ping")).body, "OK");
    assert!(TcpStream::connect(tcp).is_ok());
    assert!(lookupd.terminate().success());
}
