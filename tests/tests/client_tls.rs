//! Our client library and tools over TLS and AUTH, against the real nsqd: a client
//! certificate under `require-verify`, an auth server run by the test, and the tools'
//! `--producer-opt`/`--consumer-opt` forms (`tls_v1,true`, `tls_root_ca_file,…`, `auth_secret,…`).

use nsq_tests::auth_server::{AuthServer, Behaviour};
use nsq_tests::tls::Pki;
use nsq_tests::{free_port, http_get, run_tool, Nsqd, Tool};
use nsq_tools::client::{Config, Consumer, Error, Message, Producer, TlsSettings};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const QUICK: Duration = Duration::from_secs(20);

fn secured_nsqd(pki: &Pki, auth: &AuthServer) -> Nsqd {
    let mut flags = pki.nsqd_flags();
    flags.push("--tls-client-auth-policy=require-verify".into());
    // TLS for TCP clients; plain HTTP stays open so the test can read /stats.
    flags.push("--tls-required=tcp-https".into());
    flags.push(format!("--https-address=127.0.0.1:{}", free_port()));
    flags.push(format!("--auth-http-address={}", auth.addr));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Nsqd::start(&flags)
}

fn grants() -> AuthServer {
    AuthServer::start(Behaviour::Grant {
        secret: "s3cret".into(),
        answer: json!({
            "ttl": 60, "identity": "tools",
            "authorizations": [{"topic": "^secure", "channels": [".*"], "permissions": ["publish", "subscribe"]}]
        }),
    })
}

fn tls_config(pki: &Pki, with_cert: bool) -> Config {
    Config {
        tls: Some(TlsSettings {
            root_ca_file: Some(pki.ca.clone()),
            cert: with_cert.then(|| pki.client.cert.clone()),
            key: with_cert.then(|| pki.client.key.clone()),
            ..TlsSettings::default()
        }),
        auth_secret: Some("s3cret".into()),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_speaks_tls_with_a_certificate_and_auth() {
    let (pki, auth) = (Pki::new(), grants());
    let nsqd = secured_nsqd(&pki, &auth);
    let addr = nsqd.tcp.to_string();

    let producer = Producer::new(&addr, tls_config(&pki, true));
    producer
        .publish("secure_t", "one")
        .await
        .expect("PUB over TLS");
    producer
        .multi_publish("secure_t", vec!["two", "three"])
        .await
        .expect("MPUB over TLS");
    let refused = producer.publish("elsewhere", "x").await;
    assert!(
        matches!(&refused, Err(e) if e.code() == Some("E_UNAUTHORIZED")),
        "{refused:?}"
    );
    producer.stop().await;

    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let consumer = Consumer::new(
        "secure_t",
        "c",
        Config {
            max_in_flight: 10,
            ..tls_config(&pki, true)
        },
        move |m: Message| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&m.body).into_owned());
                Ok(())
            }
        },
    )
    .expect("consumer");
    consumer.connect_to_nsqd(&addr).await.expect("SUB over TLS");
    let deadline = tokio::time::Instant::now() + QUICK;
    while got.lock().expect("lock").len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = http_get(&nsqd.url("/stats?format=json&topic=secure_t")).json();
    let client = &stats["topics"][0]["channels"][0]["clients"][0];
    assert_eq!(
        (client["tls"].clone(), client["authed"].clone()),
        (json!(true), json!(true)),
        "{stats}"
    );
    consumer.stop().await;
    let query = &auth.queries()[0];
    assert_eq!(
        (query["tls"].as_str(), query["common_name"].as_str()),
        ("true", "client-1")
    );

    // Without the client certificate, require-verify refuses the session.
    let stranger = Producer::new(&addr, tls_config(&pki, false));
    let refused = stranger.publish("secure_t", "x").await;
    assert!(matches!(refused, Err(Error::Tls(_))), "{refused:?}");
    // Without TLS at all, nsqd answers as NSQ does.
    let plain = Producer::new(
        &addr,
        Config {
            auth_secret: Some("s3cret".into()),
            ..Config::default()
        },
    );
    let refused = plain.publish("secure_t", "x").await;
    assert!(
        matches!(&refused, Err(e) if e.code() == Some("E_INVALID")),
        "{refused:?}"
    );
}

#[test]
fn tools_take_tls_and_auth_options() {
    let (pki, auth) = (Pki::new(), grants());
    let nsqd = secured_nsqd(&pki, &auth);
    let tcp = format!("--nsqd-tcp-address={}", nsqd.tcp);
    let ca = format!("tls_root_ca_file,{}", pki.ca.display());
    let cert = format!("tls_cert,{}", pki.client.cert.display());
    let key = format!("tls_key,{}", pki.client.key.display());
    let mut opts = ["tls_v1,true", &ca, &cert, &key, "auth_secret,s3cret"];

    let consumer_args: Vec<String> = opts
        .iter()
        .flat_map(|o| ["--consumer-opt".to_string(), o.to_string()])
        .collect();
    let mut tail_args: Vec<&str> = vec!["--topic=secure_tools", &tcp, "-n", "2"];
    tail_args.extend(consumer_args.iter().map(String::as_str));
    let mut tail = Tool::spawn("nsq_tail", &tail_args);

    let producer_args: Vec<String> = opts
        .iter()
        .flat_map(|o| ["--producer-opt".to_string(), o.to_string()])
        .collect();
    let mut args: Vec<&str> = vec!["--topic=secure_tools", &tcp];
    args.extend(producer_args.iter().map(String::as_str));
    // nsq_tail may not have subscribed yet: the topic keeps the messages for its channel
    // only once the channel exists, so wait for it.
    let deadline = std::time::Instant::now() + QUICK;
    loop {
        let stats = http_get(&nsqd.url("/stats?format=json&topic=secure_tools")).json();
        if stats["topics"][0]["channels"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nsq_tail did not subscribe: {}",
            tail.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run_tool("to_nsq", &args, b"r1\nr2\n", QUICK);
    assert!(out.status.success(), "{out:?}");
    let status = tail.wait(QUICK).expect("nsq_tail exits after -n 2");
    assert!(status.success(), "{}", tail.stderr());
    assert_eq!(tail.stdout().lines().collect::<Vec<_>>(), vec!["r1", "r2"]);

    // A wrong secret is a one-line error and a non-zero exit.
    opts[4] = "auth_secret,wrong";
    let producer_args: Vec<String> = opts
        .iter()
        .flat_map(|o| ["--producer-opt".to_string(), o.to_string()])
        .collect();
    let mut args: Vec<&str> = vec!["--topic=secure_tools", &tcp];
    args.extend(producer_args.iter().map(String::as_str));
    let out = run_tool("to_nsq", &args, b"r3\n", QUICK);
    assert!(!out.status.success());
    assert!(out.stderr.contains("E_AUTH_FAILED"), "{}", out.stderr);
    let out = run_tool(
        "to_nsq",
        &["--topic=t", &tcp, "--producer-opt", "tls_v1,maybe"],
        b"",
        QUICK,
    );
    assert!(
        !out.status.success() && out.stderr.contains("--producer-opt"),
        "{}",
        out.stderr
    );
}
