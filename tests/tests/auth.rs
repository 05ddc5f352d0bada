//! AUTH end to end: the real nsqd binary against an auth server the test runs
//! (`nsq_tests::auth_server`). Texts and JSON are those NSQ v1.3.0 answers to the same steps.

use nsq_tests::auth_server::{AuthServer, Behaviour};
use nsq_tests::raw::with_body;
use nsq_tests::tls::{upgrade, Pki, CLIENT_CN};
use nsq_tests::{free_port, http_get, Nsqd, RawClient};
use serde_json::{json, Value};
use std::time::Duration;

/// Publish on `orders`, subscribe to `orders`/`billing`, for `ttl` seconds.
fn grants(ttl: i64) -> Value {
    json!({
        "ttl": ttl,
        "identity": "test-user",
        "identity_url": "http://auth.example/test-user",
        "authorizations": [
            {"topic": "^orders$", "channels": [".*"], "permissions": ["publish"]},
            {"topic": "^orders$", "channels": ["^billing$"], "permissions": ["subscribe"]}
        ]
    })
}

fn granting(ttl: i64) -> AuthServer {
    AuthServer::start(Behaviour::Grant {
        secret: "s3cret".into(),
        answer: grants(ttl),
    })
}

fn nsqd_for(auth: &AuthServer, extra: &[&str]) -> Nsqd {
    let flag = format!("--auth-http-address={}", auth.addr);
    let mut flags = vec![flag.as_str()];
    flags.extend_from_slice(extra);
    Nsqd::start(&flags)
}

fn auth(client: &mut RawClient, secret: &str) {
    client.send_raw(&with_body("AUTH", secret.as_bytes()));
}

fn authed_client(nsqd: &Nsqd) -> RawClient {
    let mut client = RawClient::connect(nsqd.tcp);
    auth(&mut client, "s3cret");
    let answer: Value = match client.frame() {
        nsq_server::protocol::Frame::Response(r) => serde_json::from_slice(&r).expect("JSON"),
        other => panic!("AUTH answered {other:?}"),
    };
    assert_eq!(
        answer,
        json!({"identity": "test-user", "identity_url": "http://auth.example/test-user", "permission_count": 2})
    );
    client
}

#[test]
fn permissions_are_enforced_as_nsq_does() {
    let server = granting(60);
    let nsqd = nsqd_for(&server, &[]);

    let mut client = RawClient::connect(nsqd.tcp);
    let answer: Value =
        serde_json::from_slice(&client.identify(json!({"feature_negotiation": true})))
            .expect("JSON");
    assert_eq!(answer["auth_required"], true);
    client.send_raw(&with_body("PUB orders", b"x"));
    assert_eq!(
        client.expect_error("E_"),
        "E_AUTH_FIRST AUTH required before PUB"
    );

    let mut client = RawClient::connect(nsqd.tcp);
    client.send_raw(b"SUB orders billing\n");
    assert_eq!(
        client.expect_error("E_"),
        "E_AUTH_FIRST AUTH required before SUB"
    );

    let mut client = RawClient::connect(nsqd.tcp);
    auth(&mut client, "wrong");
    assert_eq!(client.expect_error("E_"), "E_AUTH_FAILED AUTH failed");
    assert!(client.is_closed(Duration::from_secs(5)));

    let mut publisher = authed_client(&nsqd);
    publisher.publish("orders", b"allowed");
    publisher.send_raw(&with_body("MPUB orders", &{
        let mut b = 2u32.to_be_bytes().to_vec();
        for m in [b"m1", b"m2"] {
            b.extend_from_slice(&(m.len() as u32).to_be_bytes());
            b.extend_from_slice(m);
        }
        b
    }));
    publisher.expect_response(b"OK");
    auth(&mut publisher, "s3cret");
    assert_eq!(publisher.expect_error("E_"), "E_INVALID AUTH already set");

    let mut other = authed_client(&nsqd);
    other.send_raw(&with_body("PUB payments", b"x"));
    assert_eq!(
        other.expect_error("E_"),
        r#"E_UNAUTHORIZED AUTH failed for PUB on "payments" """#
    );

    let mut subscriber = authed_client(&nsqd);
    subscriber.send_raw(b"SUB orders audit\n");
    assert_eq!(
        subscriber.expect_error("E_"),
        r#"E_UNAUTHORIZED AUTH failed for SUB on "orders" "audit""#
    );
    let mut subscriber = authed_client(&nsqd);
    subscriber.subscribe("orders", "billing");
    subscriber.send_raw(b"RDY 5\n");
    assert_eq!(subscriber.message().2, b"allowed");

    let stats = http_get(&nsqd.url("/stats?format=json&topic=orders")).json();
    let client = &stats["topics"][0]["channels"][0]["clients"][0];
    assert_eq!(client["authed"], true, "{client}");
    assert_eq!(client["auth_identity"], "test-user", "{client}");
    assert_eq!(client["auth_identity_url"], "http://auth.example/test-user");

    let queries = server.queries();
    let first = &queries[0];
    assert_eq!(first["remote_ip"], "127.0.0.1");
    assert_eq!(first["tls"], "false");
    assert_eq!(first["common_name"], "");
}

#[test]
fn no_authorizations_is_unauthorized() {
    let server = AuthServer::start(Behaviour::Grant {
        secret: "empty".into(),
        answer: json!({"ttl": 60, "identity": "nobody", "authorizations": []}),
    });
    let nsqd = nsqd_for(&server, &[]);
    let mut client = RawClient::connect(nsqd.tcp);
    auth(&mut client, "empty");
    assert_eq!(
        client.expect_error("E_"),
        "E_UNAUTHORIZED AUTH no authorizations found"
    );
}

#[test]
fn expired_answers_are_asked_for_again() {
    let server = granting(1);
    let nsqd = nsqd_for(&server, &[]);
    let mut client = authed_client(&nsqd);
    client.publish("orders", b"first");
    assert_eq!(server.queries().len(), 1, "a fresh answer is cached");
    std::thread::sleep(Duration::from_millis(1200));
    client.publish("orders", b"after the ttl");
    let queries = server.queries();
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert_eq!(queries[1]["secret"], "s3cret");
}

#[test]
fn broken_auth_servers_fail_that_client_only() {
    let hanging = AuthServer::start(Behaviour::Hang);
    let garbage = AuthServer::start(Behaviour::Garbage);
    let down = format!("127.0.0.1:{}", free_port());
    for (address, expected_log) in [
        (garbage.addr.to_string(), "bad answer"),
        (hanging.addr.to_string(), "AUTH failed"),
        (down.clone(), "AUTH failed"),
    ] {
        let nsqd = Nsqd::start(&[
            &format!("--auth-http-address={address}"),
            "--http-client-request-timeout=2s",
        ]);
        let mut client = RawClient::connect(nsqd.tcp);
        auth(&mut client, "anything");
        // While that client waits for its auth server, others are served.
        let mut other = RawClient::connect(nsqd.tcp);
        let answer: Value =
            serde_json::from_slice(&other.identify(json!({"feature_negotiation": true})))
                .expect("JSON");
        assert_eq!(answer["auth_required"], true);
        if address == hanging.addr.to_string() {
            // Answered while that client still waits (its auth request times out after 2 s).
            assert!(client.try_frame(Duration::from_millis(10)).is_none());
        }
        assert_eq!(client.expect_error("E_"), "E_AUTH_FAILED AUTH failed");
        let log = nsqd.log();
        assert!(log.contains(expected_log), "{address}: {log}");
        assert!(
            log.contains(&format!("failed auth against {address}")),
            "{log}"
        );
        assert_eq!(http_get(&nsqd.url("/ping")).status, 200, "nsqd stays up");
    }
}

#[test]
fn auth_over_tls_sends_the_certificate_common_name() {
    let server = granting(60);
    let pki = Pki::new();
    let mut flags = pki.nsqd_flags();
    flags.push("--tls-client-auth-policy=require-verify".into());
    flags.push(format!("--https-address=127.0.0.1:{}", free_port()));
    flags.push(format!("--auth-http-address=http://{}/auth", server.addr));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let nsqd = Nsqd::start(&flags);
    let mut plain = RawClient::connect(nsqd.tcp);
    let answer: Value = serde_json::from_slice(
        &plain.identify(json!({"feature_negotiation": true, "tls_v1": true})),
    )
    .expect("JSON");
    assert_eq!(
        (answer["tls_v1"].clone(), answer["auth_required"].clone()),
        (json!(true), json!(true))
    );
    let mut client = upgrade(plain, pki.client_config(Some(&pki.client))).expect("handshake");
    client.expect_response(b"OK");
    auth(&mut client, "s3cret");
    match client.frame() {
        nsq_server::protocol::Frame::Response(_) => {}
        other => panic!("AUTH answered {other:?}"),
    }
    client.publish("orders", b"tls and auth");
    let query = &server.queries()[0];
    assert_eq!(query["tls"], "true");
    assert_eq!(query["common_name"], CLIENT_CN);
}
