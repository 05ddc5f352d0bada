//! nsq_to_http against our nsqd and a recording HTTP endpoint: every message POSTed with its
//! body, `--content-type` and `--header`s; GET with the body Go-query-escaped into `%s`;
//! an endpoint failing the first attempts gets each message again later (REQ'd, exactly as
//! many times as it failed), and nothing is FIN'd before it was accepted; round-robin and
//! multicast spread over two endpoints; bad flags fail in one line.

use nsq_tests::{http_get, http_post, run_tool, HttpSink, Nsqd, Received, Tool};
use std::collections::BTreeMap;
use std::time::Duration;

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    nsq_tests::wait::until(what, Duration::from_secs(60), done)
}

/// The channel's `(depth, in_flight_count, requeue_count)`.
fn channel(nsqd: &Nsqd, topic: &str, channel: &str) -> Option<(u64, u64, u64)> {
    let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={topic}"))).json();
    let channels = stats["topics"][0]["channels"].as_array()?.clone();
    let c = channels.iter().find(|c| c["channel_name"] == channel)?;
    Some((
        c["depth"].as_u64()?,
        c["in_flight_count"].as_u64()?,
        c["requeue_count"].as_u64()?,
    ))
}

fn publish(nsqd: &Nsqd, topic: &str, bodies: &[String]) {
    for body in bodies {
        let reply = http_post(&nsqd.url(&format!("/pub?topic={topic}")), body.as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

/// How many requests each body got, and with which statuses.
fn by_body(requests: &[Received]) -> BTreeMap<String, Vec<u16>> {
    let mut out: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for r in requests {
        out.entry(String::from_utf8_lossy(&r.body).into_owned())
            .or_default()
            .push(r.status);
    }
    out
}

fn start(nsqd: &Nsqd, topic: &str, extra: &[&str]) -> Tool {
    let mut args = vec![
        format!("--topic={topic}"),
        format!("--nsqd-tcp-address={}", nsqd.tcp),
        "--consumer-opt=default_requeue_delay,50ms".to_string(),
        "--consumer-opt=max_backoff_duration,200ms".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Tool::spawn("nsq_to_http", &args)
}

fn stop(mut tool: Tool) {
    let status = tool.terminate();
    assert!(status.success(), "{status}: {}", tool.stderr());
}

#[test]
fn posts_every_message_with_its_content_type_and_headers() {
    let nsqd = Nsqd::start(&[]);
    let sink = HttpSink::start(0);
    let bodies: Vec<String> = (0..50).map(|i| format!("{{\"event\":{i}}}")).collect();
    publish(&nsqd, "posts", &bodies);
    let post = format!("--post={}", sink.url("/ingest"));
    let tool = start(
        &nsqd,
        "posts",
        &[
            &post,
            "--content-type=application/json",
            "--header=X-Source: nsq",
            "--status-every=10",
        ],
    );
    wait_for("every message FIN'd", || {
        channel(&nsqd, "posts", "nsq_to_http").is_some_and(|(d, f, _)| d == 0 && f == 0)
            && sink.requests().len() >= bodies.len()
    });
    let requests = sink.requests();
    assert_eq!(requests.len(), bodies.len(), "each message sent once");
    let got = by_body(&requests);
    for body in &bodies {
        assert_eq!(got.get(body), Some(&vec![200]), "{body}");
    }
    for r in &requests {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/ingest"));
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["x-source"], "nsq");
        assert!(
            r.headers["user-agent"].starts_with("nsq_to_http v1."),
            "{r:?}"
        );
    }
    let log = tool.stderr();
    assert!(
        log.contains("[aggregate]: finished 10 - 99th: "),
        "status lines every 10 requests: {log}"
    );
    stop(tool);
}

#[test]
fn gets_put_the_escaped_body_in_the_url() {
    let nsqd = Nsqd::start(&[]);
    let sink = HttpSink::start(0);
    let bodies: Vec<String> = vec![
        "plain".into(),
        "a b/c?d=é&e=1".into(),
        "tilde~star*plus+".into(),
    ];
    publish(&nsqd, "gets", &bodies);
    let get = format!("--get={}", sink.url("/track?v=1&data=%s"));
    let tool = start(&nsqd, "gets", &[&get]);
    wait_for("every message sent", || {
        sink.requests().len() >= bodies.len()
    });
    let mut queries: Vec<String> = sink.requests().iter().map(|r| r.query.clone()).collect();
    queries.sort();
    let mut expected: Vec<String> = [
        "v=1&data=plain",
        "v=1&data=a+b%2Fc%3Fd%3D%C3%A9%26e%3D1",
        "v=1&data=tilde~star%2Aplus%2B",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.sort();
    assert_eq!(queries, expected);
    assert!(sink.requests().iter().all(|r| r.method == "GET"
        && r.path == "/track"
        && !r.headers.contains_key("content-type")));
    wait_for("every message FIN'd", || {
        channel(&nsqd, "gets", "nsq_to_http").is_some_and(|(d, f, _)| d == 0 && f == 0)
    });
    stop(tool);
}

#[test]
fn failed_requests_requeue_until_the_endpoint_accepts() {
    let nsqd = Nsqd::start(&[]);
    // Every message's first two attempts get 500.
    let sink = HttpSink::start(2);
    let bodies: Vec<String> = (0..20).map(|i| format!("retry-{i}")).collect();
    publish(&nsqd, "retries", &bodies);
    let post = format!("--post={}", sink.url("/flaky"));
    let tool = start(&nsqd, "retries", &[&post]);
    wait_for("every message accepted", || {
        let got = by_body(&sink.requests());
        bodies
            .iter()
            .all(|b| got.get(b).is_some_and(|s| s.contains(&200)))
    });
    wait_for("every message FIN'd", || {
        channel(&nsqd, "retries", "nsq_to_http").is_some_and(|(d, f, _)| d == 0 && f == 0)
    });
    let got = by_body(&sink.requests());
    assert_eq!(
        got.len(),
        bodies.len(),
        "only the published messages: {got:?}"
    );
    for body in &bodies {
        assert_eq!(
            got[body],
            vec![500, 500, 200],
            "{body}: twice failed, then accepted"
        );
    }
    let (_, _, requeued) = channel(&nsqd, "retries", "nsq_to_http").expect("channel");
    assert_eq!(requeued, 2 * bodies.len() as u64, "each failure was a REQ");
    stop(tool);
}

#[test]
fn a_get_answered_other_than_200_is_retried_as_nsq_does() {
    // NSQ accepts any 2xx for a POST but only 200 for a GET.
    let nsqd = Nsqd::start(&[]);
    let sink = HttpSink::answering(0, nsq_status(201));
    publish(&nsqd, "created", &["one".to_string()]);
    let get = format!("--get={}", sink.url("/g?d=%s"));
    let tool = start(&nsqd, "created", &[&get]);
    wait_for("a retry", || sink.requests().len() >= 2);
    let (_, _, requeued) = channel(&nsqd, "created", "nsq_to_http").expect("channel");
    assert!(requeued >= 1, "a 201 to a GET is a failure");
    stop(tool);
    let post_sink = HttpSink::answering(0, nsq_status(201));
    publish(&nsqd, "created_post", &["two".to_string()]);
    let post = format!("--post={}", post_sink.url("/p"));
    let tool = start(&nsqd, "created_post", &[&post]);
    wait_for("FIN'd", || {
        channel(&nsqd, "created_post", "nsq_to_http").is_some_and(|(d, f, _)| d == 0 && f == 0)
    });
    assert_eq!(
        post_sink.requests().len(),
        1,
        "a 201 to a POST is a success"
    );
    stop(tool);
}

fn nsq_status(code: u16) -> axum::http::StatusCode {
    axum::http::StatusCode::from_u16(code).expect("status")
}

#[test]
fn round_robin_splits_and_multicast_copies() {
    let nsqd = Nsqd::start(&[]);
    let (a, b) = (HttpSink::start(0), HttpSink::start(0));
    let bodies: Vec<String> = (0..10).map(|i| format!("rr-{i}")).collect();
    publish(&nsqd, "spread", &bodies);
    let (post_a, post_b) = (
        format!("--post={}", a.url("/a")),
        format!("--post={}", b.url("/b")),
    );
    let tool = start(
        &nsqd,
        "spread",
        &[&post_a, &post_b, "--mode=round-robin", "--n=1"],
    );
    wait_for("every message sent", || {
        a.requests().len() + b.requests().len() >= 10
    });
    wait_for("every message FIN'd", || {
        channel(&nsqd, "spread", "nsq_to_http").is_some_and(|(d, f, _)| d == 0 && f == 0)
    });
    assert_eq!((a.requests().len(), b.requests().len()), (5, 5));
    stop(tool);

    let (c, d) = (HttpSink::start(0), HttpSink::start(0));
    publish(&nsqd, "copies", &bodies);
    let (post_c, post_d) = (
        format!("--post={}", c.url("/c")),
        format!("--post={}", d.url("/d")),
    );
    let tool = start(&nsqd, "copies", &[&post_c, &post_d, "--mode=multicast"]);
    wait_for("every message FIN'd", || {
        channel(&nsqd, "copies", "nsq_to_http").is_some_and(|(d, f, _)| d == 0 && f == 0)
    });
    for sink in [&c, &d] {
        let got = by_body(&sink.requests());
        assert_eq!(got.len(), bodies.len(), "{got:?}");
    }
    stop(tool);
}

#[test]
fn bad_flags_fail_in_one_line() {
    let cases: &[&[&str]] = &[
        &[],
        &["--topic=t", "--nsqd-tcp-address=127.0.0.1:1"],
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--get=http://h/x",
        ],
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--post=http://h/",
            "--get=http://h/%s",
        ],
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--get=http://h/%s",
            "--content-type=a/b",
        ],
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--post=http://h/",
            "--mode=nope",
        ],
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--post=http://h/",
            "--header=bad",
        ],
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--post=http://h/",
            "--sample=2",
        ],
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--post=http://h/",
            "--n=0",
        ],
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--post=http://h/",
            "--consumer-opt=nope,1",
        ],
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--post=http://h/",
            "--http-client-request-timeout=soon",
        ],
        // Nothing listens there.
        &[
            "--topic=t",
            "--nsqd-tcp-address=127.0.0.1:1",
            "--post=http://h/",
        ],
    ];
    for args in cases {
        let out = run_tool("nsq_to_http", args, b"", Duration::from_secs(20));
        assert!(!out.status.success(), "{args:?}: {out:?}");
        let line = out.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{args:?}: {line:?}");
        assert!(line.starts_with("nsq_to_http: "), "{args:?}: {line:?}");
    }
}
