//! The command-line tools as users run them: `--version`, `--help`, one-line errors with a
//! non-zero exit for bad flags and unreachable servers; `to_nsq` publishing stdin to every
//! nsqd, `nsq_tail` printing it, `nsq_stat` printing NSQ's table through nsqd and lookupd.

use nsq_tests::{http_get, http_post, run_tool, Nsqd, Nsqlookupd, Tool};
use std::collections::BTreeSet;
use std::time::Duration;

const TOOLS: [&str; 5] = [
    "nsq_to_file",
    "to_nsq",
    "nsq_tail",
    "nsq_stat",
    "nsq_to_http",
];
const QUICK: Duration = Duration::from_secs(20);

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    nsq_tests::wait::until(what, Duration::from_secs(30), done)
}

fn assert_one_line_failure(tool: &str, args: &[&str]) -> String {
    let out = run_tool(tool, args, b"", QUICK);
    assert!(!out.status.success(), "{tool} {args:?} succeeded: {out:?}");
    let line = out.stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "{tool} {args:?}: {line:?}");
    assert!(
        line.starts_with(&format!("{tool}: ")),
        "{tool} {args:?}: {line:?}"
    );
    line.to_string()
}

#[test]
fn every_tool_has_version_help_and_one_line_errors() {
    for tool in TOOLS {
        let version = run_tool(tool, &["--version"], b"", QUICK);
        assert!(version.status.success(), "{tool}: {version:?}");
        assert!(
            version.stdout.starts_with(&format!("{tool} v")),
            "{version:?}"
        );
        let go_style = run_tool(tool, &["-version"], b"", QUICK);
        assert_eq!(go_style.stdout, version.stdout);
        let help = run_tool(tool, &["--help"], b"", QUICK);
        assert!(help.status.success(), "{tool}: {help:?}");
        assert!(help.stdout.contains("--version"), "{tool}: {}", help.stdout);
        assert_one_line_failure(tool, &["--no-such-flag"]);
        // Nothing to connect to.
        assert_one_line_failure(tool, &[]);
    }
    let help = run_tool("nsq_to_file", &["--help"], b"", QUICK).stdout;
    for flag in [
        "--topic-pattern",
        "--rotate-size",
        "--gzip-level",
        "--work-dir",
        "--sync-interval",
        "--log-prefix",
    ] {
        assert!(help.contains(flag), "{flag} missing from {help}");
    }
    let line = assert_one_line_failure(
        "to_nsq",
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--producer-opt=nope,1",
        ],
    );
    assert!(line.contains("--producer-opt"), "{line}");
    assert!(help.contains("[default: nsq_to_file]"), "{help}");
    let nowhere = "127.0.0.1:1";
    let line = assert_one_line_failure(
        "nsq_to_file",
        &[
            "--topic=t",
            &format!("--nsqd-tcp-address={nowhere}"),
            "--output-dir=/tmp",
        ],
    );
    assert!(line.contains("refused"), "{line}");
    assert_one_line_failure("to_nsq", &["--topic=t", "--nsqd-tcp-address", nowhere]);
    assert_one_line_failure(
        "nsq_tail",
        &["--topic=t", "--lookupd-http-address", nowhere],
    );
    assert_one_line_failure(
        "nsq_stat",
        &["--topic=t", "--channel=c", "--nsqd-http-address", nowhere],
    );
    assert_one_line_failure(
        "to_nsq",
        &["--topic=t", "--delimiter=ab", "--nsqd-tcp-address=x:1"],
    );
    assert_one_line_failure("nsq_stat", &["--topic=t", "--channel=c", "--interval=soon"]);
    assert_one_line_failure(
        "nsq_to_file",
        &[
            "--topic=t",
            "--nsqd-tcp-address=x:1",
            "--gzip",
            "--filename-format=<TOPIC>.log",
        ],
    );
}

fn wait_channel(nsqd: &Nsqd, topic: &str) {
    wait_for("tail's channel", || {
        let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
        stats["topics"][0]["channels"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    });
}

#[test]
fn to_nsq_publishes_to_every_nsqd_and_nsq_tail_prints_it() {
    let a = Nsqd::start(&[]);
    let b = Nsqd::start(&[]);
    let tcp_a = format!("--nsqd-tcp-address={}", a.tcp);
    let tail = Tool::spawn(
        "nsq_tail",
        &[
            "--topic=red",
            "--topic=blue",
            &tcp_a,
            // Go's flag package takes -n as --n too.
            "--n=5",
            "--print-topic",
        ],
    );
    wait_channel(&a, "red");
    wait_channel(&a, "blue");

    // Comma-delimited, the last record unterminated, an empty record skipped.
    let tcp_b = format!("--nsqd-tcp-address={}", b.tcp);
    let args = [
        "--topic=red",
        "--delimiter=,",
        &tcp_a,
        &tcp_b,
        "--producer-opt=dial_timeout,3s",
        "--producer-opt=heartbeat_interval,10s",
    ];
    let out = run_tool("to_nsq", &args, b"r1,r2,,r3", QUICK);
    assert!(out.status.success(), "{out:?}");
    let out = run_tool(
        "to_nsq",
        &["--topic=blue", &tcp_a, "--rate=50"],
        b"b1\nb2\n",
        QUICK,
    );
    assert!(out.status.success(), "{out:?}");

    let mut tail = tail;
    let status = tail.wait(QUICK).expect("nsq_tail exits after -n 5");
    assert!(status.success(), "{}", tail.stderr());
    let lines: BTreeSet<String> = tail.stdout().lines().map(str::to_string).collect();
    let expected: BTreeSet<String> = ["red | r1", "red | r2", "red | r3", "blue | b1", "blue | b2"]
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(lines, expected);
    let order: Vec<String> = tail
        .stdout()
        .lines()
        .filter(|l| l.starts_with("red"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        order,
        ["red | r1", "red | r2", "red | r3"],
        "one handler: arrival order"
    );

    // nsqd b got the same three messages.
    let stats = http_get(&b.url("/stats?format=json&topic=red")).json();
    assert_eq!(stats["topics"][0]["message_count"], 3);
}

#[test]
fn nsq_stat_prints_the_rolling_table_from_nsqd_and_lookupd() {
    let lookupd = Nsqlookupd::start(&[]);
    let nsqd = Nsqd::start(&[&format!("--lookupd-tcp-address={}", lookupd.tcp)]);
    assert_eq!(
        http_post(&nsqd.url("/topic/create?topic=s"), b"").status,
        200
    );
    assert_eq!(
        http_post(&nsqd.url("/channel/create?topic=s&channel=c"), b"").status,
        200
    );
    assert_eq!(
        http_post(&nsqd.url("/mpub?topic=s"), b"1\n2\n3").status,
        200
    );
    let http = format!("--nsqd-http-address={}", nsqd.http);
    let out = run_tool(
        "nsq_stat",
        &[
            "--topic=s",
            "--channel=c",
            &http,
            "--interval=100ms",
            "--count=2",
        ],
        b"",
        QUICK,
    );
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(lines[0].starts_with("------rate------+"));
    assert_eq!(
        lines[1],
        "ingress  egress |   total     mem    disk inflt   def |     req     t-o         msgs clients"
    );
    let fields: Vec<&str> = lines[3].split_whitespace().collect();
    // ingress egress | total mem disk inflt def | req t-o msgs clients
    assert_eq!(fields[3], "3", "{}", lines[3]);
    assert_eq!(fields[11], "3", "{}", lines[3]);

    wait_for("registration", || {
        http_get(&lookupd.url("/lookup?topic=s")).status == 200
    });
    let via = format!("--lookupd-http-address={}", lookupd.http);
    let out = run_tool(
        "nsq_stat",
        &[
            "--topic=s",
            "--channel=c",
            &via,
            "--interval=100ms",
            "--count=1",
        ],
        b"",
        QUICK,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout
            .lines()
            .nth(2)
            .map(|l| l.split_whitespace().nth(3)),
        Some(Some("3"))
    );
}
