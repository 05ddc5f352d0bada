//! Segment files truncated under a running nsqd (another process, an operator's mistake, a
//! failing disk). A truncated sealed segment must not kill nsqd (it used to be memory-mapped:
//! SIGBUS, no log line); a truncated active segment must not swallow the publishes nsqd
//! acknowledges after it (it used to write on past a hole that recovery then cut off). Either
//! way the damaged topic fails loudly (one ERROR line naming the file; publishes refused with
//! E_PUB_FAILED / HTTP 500) and every other topic carries on.

use nsq_server::protocol::{Command, Frame};
use nsq_tests::{first_offset, http_get, http_post, segment_files, Nsqd, RawClient};
use std::path::Path;
use std::time::Duration;

/// Bytes of a segment header and of a record's header (engine/FORMAT.md).
const SEGMENT_HEADER: u64 = 32;
const RECORD_HEADER: u64 = 48;

fn body(i: usize) -> String {
    format!("message-{i:04}-{}", "x".repeat(60))
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment")
        .set_len(len)
        .expect("truncate");
}

fn create(nsqd: &Nsqd, topic: &str, channel: &str) {
    let created = http_post(&nsqd.url(&format!("/topic/create?topic={topic}")), b"");
    assert_eq!(created.status, 200, "{}", created.body);
    let created = http_post(
        &nsqd.url(&format!("/channel/create?topic={topic}&channel={channel}")),
        b"",
    );
    assert_eq!(created.status, 200, "{}", created.body);
}

fn publish_all(nsqd: &Nsqd, topic: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(10) {
        let lines: Vec<String> = chunk.iter().map(|&i| body(i)).collect();
        let reply = http_post(
            &nsqd.url(&format!("/mpub?topic={topic}")),
            lines.join("\n").as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

/// Everything `topic`/`channel` delivers (FIN'd) until it goes quiet or nsqd closes the
/// connection; the second value says whether it was closed.
fn drain(nsqd: &Nsqd, topic: &str, channel: &str) -> (Vec<String>, bool) {
    let mut client = RawClient::connect(nsqd.tcp);
    client.subscribe(topic, channel);
    client.send_raw(b"RDY 500\n");
    let mut got = Vec::new();
    loop {
        match client.try_frame(Duration::from_secs(2)) {
            Some(Frame::Message { id, body, .. }) => {
                got.push(String::from_utf8_lossy(&body).into_owned());
                let fin = format!("FIN {}\n", String::from_utf8_lossy(&id));
                if !client.try_send_raw(fin.as_bytes()) {
                    // nsqd closed the connection after sending this one; keep reading what
                    // it sent before closing.
                    continue;
                }
            }
            Some(Frame::Response(_)) => {}
            Some(Frame::Error(e)) => panic!("nsqd sent an error: {}", String::from_utf8_lossy(&e)),
            None => return (got, client.is_closed(Duration::from_millis(200))),
        }
    }
}

/// The publish refusals of a failed topic: E_PUB_FAILED on TCP (fatal, as in NSQ), 500 on HTTP.
fn assert_publishes_refused(nsqd: &Nsqd, topic: &str) {
    let mut client = RawClient::connect(nsqd.tcp);
    client.send(&Command::Pub {
        topic: topic.into(),
        body: "refused".into(),
    });
    let error = client.expect_error("E_PUB_FAILED");
    assert!(error.contains("truncated"), "{error}");
    let reply = http_post(&nsqd.url(&format!("/pub?topic={topic}")), b"refused too");
    assert_eq!(reply.status, 500, "{}", reply.body);
}

/// The ERROR line nsqd logged about `file`.
fn error_line(nsqd: &Nsqd, file: &Path) -> String {
    let name = file.display().to_string();
    let log = nsqd.log();
    log.lines()
        .find(|l| l.contains("ERROR") && l.contains(&name) && l.contains("truncated"))
        .unwrap_or_else(|| panic!("no ERROR line naming {name}:\n{log}"))
        .to_string()
}

#[test]
fn a_sealed_segment_truncated_under_nsqd_fails_its_topic_and_nothing_else() {
    let mut nsqd = Nsqd::start(&["--max-bytes-per-file=4096"]);
    create(&nsqd, "t", "first");
    create(&nsqd, "t", "c");
    create(&nsqd, "u", "c");
    publish_all(&nsqd, "t", 300);
    publish_all(&nsqd, "u", 300);
    // One channel reads every segment first (when sealed segments were memory-mapped, this
    // mapped them, and a read of a mapping's truncated pages raised SIGBUS).
    let (got, _) = drain(&nsqd, "t", "first");
    assert_eq!(got.len(), 300);
    let logs = segment_files(nsqd.data_path(), "t");
    assert!(logs.len() >= 4, "want 4+ segments, got {}", logs.len());
    let victim = logs[2].clone();
    truncate(&victim, 100);

    // The other channel gets everything before the truncated segment, then nsqd drops its
    // consumer (the channel cannot be read on), and stays up.
    let (got, closed) = drain(&nsqd, "t", "c");
    if let Some(status) = nsqd.exited() {
        panic!(
            "nsqd died reading the truncated segment ({status}):\n{}",
            nsqd.log()
        );
    }
    assert!(closed, "the consumer of the damaged topic is disconnected");
    let before: Vec<String> = (0..got.len()).map(body).collect();
    assert_eq!(got, before, "what is delivered is sound and in order");
    assert!(
        !got.is_empty() && got.len() < 300,
        "{} delivered",
        got.len()
    );
    error_line(&nsqd, &victim);
    assert_publishes_refused(&nsqd, "t");
    assert_eq!(
        http_get(&nsqd.url("/ping")).status,
        500,
        "unhealthy after refusing"
    );

    // The other topic is unaffected: all of it is delivered, and it takes publishes.
    let (got, closed) = drain(&nsqd, "u", "c");
    assert!(!closed);
    assert_eq!(got, (0..300).map(body).collect::<Vec<_>>());
    let reply = http_post(&nsqd.url("/pub?topic=u"), b"still fine");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(http_get(&nsqd.url("/ping")).status, 200, "healthy again");

    // After a restart the truncated segment is damage like any other (its index is empty at
    // this segment size, so opening does not need to scan it): readers skip what was lost,
    // with one line, and deliver everything after it.
    nsqd.terminate();
    nsqd.restart();
    let lost = first_offset(&logs[2])..first_offset(&logs[3]);
    let (got, _) = drain(&nsqd, "t", "c");
    let after: Vec<String> = (lost.end..300).map(body).collect();
    assert!(got.ends_with(&after), "{got:?}");
    let redelivered = &got[..got.len() - after.len()];
    assert!(
        redelivered
            .iter()
            .all(|m| (0..lost.start).map(body).any(|b| b == *m)),
        "only messages before the damage come again: {redelivered:?}"
    );
    let log = nsqd.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&victim.display().to_string()) && l.contains("skipped")),
        "{log}"
    );
}

#[test]
fn an_active_segment_truncated_under_nsqd_loses_no_publish_acknowledged_after_it() {
    active_segment_truncated(&[]);
}

/// The same under `--sync-every=1`, where the active segment's file runs past its records
/// (prepared space): the check is against the written end, not the file length.
#[test]
fn an_active_segment_with_prepared_space_truncated_under_nsqd_loses_nothing_acknowledged() {
    active_segment_truncated(&["--sync-every=1"]);
}

fn active_segment_truncated(flags: &[&str]) {
    let mut nsqd = Nsqd::start(flags);
    create(&nsqd, "t", "c");
    create(&nsqd, "u", "c");
    let mut client = RawClient::connect(nsqd.tcp);
    for i in 0..50 {
        client.publish("t", body(i).as_bytes());
    }
    let active = segment_files(nsqd.data_path(), "t")
        .pop()
        .expect("a segment");
    // Cut in the middle of record 25 of the 50 written (the file may be allocated beyond
    // them, so the cut is computed from the records, not the file length).
    let record = RECORD_HEADER + body(0).len() as u64;
    truncate(&active, SEGMENT_HEADER + 25 * record + 10);

    // The next publish finds the file shorter than what nsqd wrote: refused, not acknowledged
    // into a hole.
    client.send(&Command::Pub {
        topic: "t".into(),
        body: body(50).into(),
    });
    let error = client.expect_error("E_PUB_FAILED");
    assert!(error.contains("truncated"), "{error}");
    assert_publishes_refused(&nsqd, "t");
    error_line(&nsqd, &active);
    let reply = http_post(&nsqd.url("/pub?topic=u"), b"other topic");
    assert_eq!(reply.status, 200, "{}", reply.body);

    // After a crash and restart the topic recovers like any torn tail: the 25 records before
    // the cut are there, and no publish was acknowledged after it to go missing.
    nsqd.kill9();
    nsqd.restart();
    let (got, _) = drain(&nsqd, "t", "c");
    assert_eq!(got, (0..25).map(body).collect::<Vec<_>>());
    let reply = http_post(&nsqd.url("/pub?topic=t"), b"after the restart");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (got, _) = drain(&nsqd, "t", "c");
    assert_eq!(got, vec!["after the restart".to_string()]);
    let (got, _) = drain(&nsqd, "u", "c");
    assert_eq!(got, vec!["other topic".to_string()]);
}
