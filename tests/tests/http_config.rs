//! nsqd's HTTP router details against NSQ v1.3.0: `/config/:opt` GET and PUT, OPTIONS,
//! repeated parameters, empty filters and trailing-slash redirects.

use nsq_tests::http::{call, expect_error};
use nsq_tests::{http_get, http_post, Nsqd};
use std::time::{Duration, Instant};

#[test]
fn config_reads_options_by_nsq_name() {
    let nsqd = Nsqd::start(&["--max-msg-size=100", "--msg-timeout=30s"]);
    let get = |opt: &str| call("GET", &nsqd.url(&format!("/config/{opt}")), b"");
    let size = get("max_msg_size");
    assert_eq!(
        (size.body.as_str(), size.nsq_type.as_str()),
        ("100", "nsq; version=1.0")
    );
    assert_eq!(get("msg_timeout").body, "30000000000");
    assert_eq!(get("nsqlookupd_tcp_addresses").body, "[]");
    assert_eq!(get("log_level").body, "2");
    // Strings come back as plain text, as NSQ answers.
    assert_eq!(get("tcp_address").body, nsqd.tcp.to_string());
    assert_eq!(get("broadcast_address").body, "127.0.0.1");
    expect_error(&nsqd, "GET", "/config/bogus", b"", 400, "INVALID_OPTION");
    expect_error(
        &nsqd,
        "GET",
        "/config/max-msg-size",
        b"",
        400,
        "INVALID_OPTION",
    );
    let a = call("POST", &nsqd.url("/config/log_level"), b"");
    assert_eq!((a.status, a.allow.as_str()), (405, "GET, OPTIONS, PUT"));

    let put = call(
        "PUT",
        &nsqd.url("/config/nsqlookupd_tcp_addresses"),
        b"[\"127.0.0.1:1\"]",
    );
    assert_eq!((put.status, put.body.as_str()), (200, "[\"127.0.0.1:1\"]"));
    assert_eq!(get("nsqlookupd_tcp_addresses").body, "[\"127.0.0.1:1\"]");
    expect_error(
        &nsqd,
        "PUT",
        "/config/nsqlookupd_tcp_addresses",
        b"x",
        400,
        "INVALID_VALUE",
    );
    assert_eq!(
        call("PUT", &nsqd.url("/config/nsqlookupd_tcp_addresses"), b"[]").status,
        200
    );
    expect_error(
        &nsqd,
        "PUT",
        "/config/max_msg_size",
        b"5",
        400,
        "INVALID_OPTION",
    );

    // The log level changes at run time, as in NSQ: a plain level name in, the number out.
    let put = call("PUT", &nsqd.url("/config/log_level"), b"debug");
    assert_eq!((put.status, put.body.as_str()), (200, "1"));
    assert_eq!(get("log_level").body, "1");
    expect_error(
        &nsqd,
        "PUT",
        "/config/log_level",
        b"loud",
        400,
        "INVALID_VALUE",
    );
    assert_eq!(get("log_level").body, "1");
    // Debug lines now reach the log: each TCP command is one, as in NSQ.
    let mut client = nsq_tests::RawClient::connect(nsqd.tcp);
    client.send_raw(b"NOP\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !nsqd.log().contains("[NOP]") {
        assert!(
            Instant::now() < deadline,
            "no debug line after PUT log_level=debug:\n{}",
            nsqd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        call("PUT", &nsqd.url("/config/log_level"), b"warn").body,
        "3"
    );
}

#[test]
fn router_details_match_nsq() {
    let nsqd = Nsqd::start(&[]);
    // OPTIONS lists the allowed methods.
    let options = call("OPTIONS", &nsqd.url("/pub"), b"");
    assert_eq!(
        (options.status, options.allow.as_str()),
        (200, "OPTIONS, POST")
    );
    let options = call("OPTIONS", &nsqd.url("/stats"), b"");
    assert_eq!(
        (options.status, options.allow.as_str()),
        (200, "GET, OPTIONS")
    );
    // A repeated parameter keeps its first value, as Go's URL.Query().Get.
    assert_eq!(
        http_post(&nsqd.url("/pub?topic=first&topic=second"), b"x").body,
        "OK"
    );
    let stats = http_get(&nsqd.url("/stats?format=json&topic=first")).json();
    assert_eq!(stats["topics"][0]["message_count"], 1);
    // An empty filter is no filter.
    let unfiltered = http_get(&nsqd.url("/stats?format=json&topic=first&channel=")).json();
    assert_eq!(unfiltered["topics"][0]["topic_name"], "first");
    // A trailing slash redirects to the route: 301 for GET, 307 (method kept) otherwise.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let r = agent
        .get(&nsqd.url("/ping/"))
        .call()
        .expect("301 is not an error");
    assert_eq!((r.status(), r.header("Location")), (301, Some("/ping")));
    let r = agent
        .post(&nsqd.url("/pub/?topic=x"))
        .send_bytes(b"y")
        .expect("307 is not an error");
    assert_eq!(
        (r.status(), r.header("Location")),
        (307, Some("/pub?topic=x"))
    );
    expect_error(&nsqd, "GET", "/nope/", b"", 404, "NOT_FOUND");
}
