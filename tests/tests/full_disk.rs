//! A full disk: nsqd on a small tmpfs the test mounts. Publishing until the filesystem is
//! full turns publishes into E_PUB_FAILED / HTTP 500; nothing acknowledged is lost; consumers
//! keep consuming; and once space comes back (a file deleted, or consumed segments
//! reclaimed) publishing resumes without a restart. Skips with a clear line where mounting
//! is not allowed.
//!
//! On a disk that is 100% full, consuming everything reclaims space (retention follows the
//! channels' in-memory floors, so it does not wait for a cursor persist that needs a free
//! block), and nsqd restarts and serves what it holds (opening removes the header-less segment
//! a failed roll left, instead of writing into it).

use nsq_server::protocol::{Command, Frame};
use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};

/// The size of the filesystem under test.
const FS_SIZE: &str = "8m";
/// Space the test takes up front and frees later.
const BALLAST: usize = 1 << 20;
/// Message size: big enough to fill 8 MiB in about a thousand publishes.
const BODY: usize = 8 * 1024;

/// A tmpfs mounted for the test; unmounted on drop (also when the test panics).
struct SmallFs {
    path: PathBuf,
}

impl SmallFs {
    fn mount(path: &Path, size: &str) -> Result<SmallFs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallFs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let ok = Process::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a process we failed to stop): detach it so nothing stays mounted.
            let _ = Process::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn body(n: usize) -> Vec<u8> {
    let mut b = format!("msg {n:08} ").into_bytes();
    b.resize(BODY, b'.');
    b
}

fn number(body: &[u8]) -> usize {
    std::str::from_utf8(&body[4..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a test message: {:?}", &body[..16.min(body.len())]))
}

/// Publishes numbered messages from `next` on over TCP until a publish fails; returns the
/// numbers acknowledged and the error text. The connection must be closed after the error
/// (E_PUB_FAILED is fatal in NSQ).
fn publish_until_full(nsqd: &Nsqd, next: &mut usize, acked: &mut Vec<usize>) -> String {
    let mut c = RawClient::connect(nsqd.tcp);
    for _ in 0..4000 {
        c.send(&Command::Pub {
            topic: "full".into(),
            body: body(*next).into(),
        });
        match c.frame() {
            Frame::Response(r) if &r[..] == b"OK" => acked.push(*next),
            Frame::Error(e) => {
                let text = String::from_utf8_lossy(&e).into_owned();
                assert!(
                    c.is_closed(Duration::from_secs(5)),
                    "connection left open after {text}"
                );
                *next += 1;
                return text;
            }
            other => panic!("PUB answered {other:?}"),
        }
        *next += 1;
    }
    panic!("a {FS_SIZE} filesystem took 4000 messages of {BODY} bytes without filling up");
}

/// Polls until a TCP PUB of message `n` is acknowledged again (space came back).
fn wait_until_publish_works(nsqd: &Nsqd, n: usize, acked: &mut Vec<usize>, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = RawClient::connect(nsqd.tcp);
        c.send(&Command::Pub {
            topic: "full".into(),
            body: body(n).into(),
        });
        match c.frame() {
            Frame::Response(r) if &r[..] == b"OK" => {
                acked.push(n);
                return;
            }
            Frame::Error(e) => assert!(
                Instant::now() < deadline,
                "publishing did not resume within 15 s after {why}: {}\n{}",
                String::from_utf8_lossy(&e),
                tail(&nsqd.log())
            ),
            other => panic!("PUB answered {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Consumes `topic`/`c` until every number in `want` has arrived (FINning each); returns
/// what arrived that was not in `want` (failed publishes that were kept anyway).
fn consume_all(c: &mut RawClient, want: &[usize]) -> Vec<usize> {
    let want: HashSet<usize> = want.iter().copied().collect();
    let mut got = HashSet::new();
    let mut extra = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want.is_subset(&got) {
        assert!(
            Instant::now() < deadline,
            "consumer got {} of {} acknowledged messages",
            want.intersection(&got).count(),
            want.len()
        );
        match c.try_frame(Duration::from_secs(1)) {
            Some(Frame::Message { id, body, .. }) => {
                c.send_raw(format!("FIN {}\n", String::from_utf8_lossy(&id)).as_bytes());
                let n = number(&body);
                if !want.contains(&n) {
                    extra.push(n);
                }
                got.insert(n);
            }
            Some(Frame::Response(r)) if &r[..] == b"_heartbeat_" => c.send_raw(b"NOP\n"),
            Some(other) => panic!("consumer got {other:?}"),
            None => {}
        }
    }
    extra
}

/// Mounts the small filesystem on `dir/data` (the data directory itself, so nsqd's log,
/// written beside it, stays off it), or says why the test is skipped.
fn mount_data_dir(dir: &Path) -> Option<(SmallFs, PathBuf)> {
    let data = dir.join("data");
    match SmallFs::mount(&data, FS_SIZE) {
        Ok(fs) => Some((fs, data)),
        Err(why) => {
            println!("skipping: cannot mount a small filesystem here ({why})");
            None
        }
    }
}

/// nsqd on `data` with small segments (so consumed ones can be reclaimed), and topic `full`
/// with channel `c` (so messages are kept until consumed).
fn start(data: &Path) -> Nsqd {
    let nsqd = Nsqd::on(data, &["--max-bytes-per-file=262144"]);
    for path in [
        "/topic/create?topic=full",
        "/channel/create?topic=full&channel=c",
    ] {
        assert_eq!(http_post(&nsqd.url(path), b"").status, 200, "{path}");
    }
    nsqd
}

fn consumer(nsqd: &Nsqd) -> RawClient {
    let mut c = RawClient::connect(nsqd.tcp);
    c.identify(json!({"heartbeat_interval": 1000}));
    c.subscribe("full", "c");
    c.send_raw(b"RDY 200\n");
    c
}

#[test]
fn full_disk_fails_publishes_keeps_acknowledged_and_resumes_when_a_file_is_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((_fs, data)) = mount_data_dir(dir.path()) else {
        return;
    };
    let ballast = data.join("ballast");
    std::fs::write(&ballast, vec![0u8; BALLAST]).expect("ballast");
    // Declared after the mount, so it is killed before the unmount, even on panic.
    let nsqd = start(&data);

    // 1. Fill it.
    let mut next = 0;
    let mut acked = Vec::new();
    let error = publish_until_full(&nsqd, &mut next, &mut acked);
    assert!(
        error.starts_with("E_PUB_FAILED"),
        "PUB on a full disk: {error}"
    );
    println!(
        "full after {} acknowledged messages ({} MB): {error}",
        acked.len(),
        (acked.len() * BODY) >> 20
    );
    let reply = http_post(&nsqd.url("/pub?topic=full"), &body(next));
    next += 1;
    assert_eq!(
        reply.status, 500,
        "HTTP /pub on a full disk: {}",
        reply.body
    );
    let reply = http_post(
        &nsqd.url("/mpub?topic=full"),
        &[body(next), body(next + 1)].join(&b'\n'),
    );
    next += 2;
    assert_eq!(
        reply.status, 500,
        "HTTP /mpub on a full disk: {}",
        reply.body
    );
    let mut mpub = RawClient::connect(nsqd.tcp);
    mpub.send(&Command::Mpub {
        topic: "full".into(),
        bodies: vec![body(next).into(), body(next + 1).into()],
    });
    next += 2;
    mpub.expect_error("E_MPUB_FAILED");
    // As NSQ: a failed publish marks nsqd unhealthy until the next one succeeds.
    let ping = http_get(&nsqd.url("/ping"));
    assert_eq!(ping.status, 500, "/ping on a full disk: {}", ping.body);
    // NSQ answers /ping in plain text, also when unhealthy.
    assert!(
        ping.body.starts_with("NOK - ") && ping.content_type.starts_with("text/plain"),
        "/ping on a full disk: {} ({})",
        ping.body,
        ping.content_type
    );

    // 2. Free space by deleting a file: publishing resumes, then fills up again.
    std::fs::remove_file(&ballast).expect("delete ballast");
    wait_until_publish_works(&nsqd, next, &mut acked, "deleting a file");
    next += 1;
    assert_eq!(http_get(&nsqd.url("/ping")).status, 200, "healthy again");
    let reply = http_post(&nsqd.url("/pub?topic=full"), &body(next));
    assert_eq!(
        reply.status, 200,
        "HTTP /pub after space came back: {}",
        reply.body
    );
    acked.push(next);
    next += 1;
    let before = acked.len();
    let error = publish_until_full(&nsqd, &mut next, &mut acked);
    assert!(
        error.starts_with("E_PUB_FAILED"),
        "PUB on a full disk: {error}"
    );
    println!(
        "after deleting {} MB: {} more acknowledged, then {error}",
        BALLAST >> 20,
        acked.len() - before
    );

    // 3. A consumer gets every acknowledged message while the disk is full.
    let mut consumer = consumer(&nsqd);
    let extra = consume_all(&mut consumer, &acked);
    println!(
        "consumer got all {} acknowledged messages; {} unacknowledged ones as well",
        acked.len(),
        extra.len()
    );
    assert!(
        !nsqd.log().contains("panicked"),
        "nsqd panicked:\n{}",
        tail(&nsqd.log())
    );
}

#[test]
fn full_disk_resumes_once_consumed_segments_are_reclaimed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((_fs, data)) = mount_data_dir(dir.path()) else {
        return;
    };
    let nsqd = start(&data);
    let mut next = 0;
    let mut acked = Vec::new();
    let error = publish_until_full(&nsqd, &mut next, &mut acked);
    assert!(
        error.starts_with("E_PUB_FAILED"),
        "PUB on a full disk: {error}"
    );
    let mut consumer = consumer(&nsqd);
    consume_all(&mut consumer, &acked);

    // Consumed segments are reclaimed and publishing resumes, without a restart.
    wait_until_publish_works(&nsqd, next, &mut acked, "consuming everything");
    next += 1;
    let reply = http_post(&nsqd.url("/pub?topic=full"), &body(next));
    assert_eq!(
        reply.status, 200,
        "HTTP /pub after space came back: {}",
        reply.body
    );
    acked.push(next);
    let extra = consume_all(&mut consumer, &acked[acked.len() - 2..]);
    assert!(extra.is_empty(), "unexpected messages {extra:?}");
    assert_eq!(http_get(&nsqd.url("/ping")).status, 200, "healthy again");

    // Segments went while the cursor file could not be written, so it may still name a floor
    // inside them. A crash now: nsqd starts, and what was acknowledged and not finished since
    // is delivered (finished messages that still exist may come again: at-least-once).
    let mut nsqd = nsqd;
    let pending: Vec<usize> = (next + 1..next + 4).collect();
    let mut publisher = RawClient::connect(nsqd.tcp);
    for &n in &pending {
        publisher.publish("full", &body(n));
    }
    drop(consumer);
    nsqd.kill9();
    nsqd.restart();
    let mut after_crash = self::consumer(&nsqd);
    let extra = consume_all(&mut after_crash, &pending);
    println!(
        "after kill -9: all {} unfinished delivered, {} finished ones again",
        pending.len(),
        extra.len()
    );
}

#[test]
fn nsqd_restarts_on_a_full_disk_and_serves_what_it_holds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((_fs, data)) = mount_data_dir(dir.path()) else {
        return;
    };
    let mut nsqd = start(&data);
    let mut next = 0;
    let mut acked = Vec::new();
    publish_until_full(&nsqd, &mut next, &mut acked);
    // A clean stop may fail to persist cursors (no space); a kill is what a crash looks like.
    nsqd.kill9();
    nsqd.restart();
    let mut consumer = consumer(&nsqd);
    consume_all(&mut consumer, &acked);
}

#[test]
fn a_new_topic_refused_on_a_full_disk_does_not_block_the_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((_fs, data)) = mount_data_dir(dir.path()) else {
        return;
    };
    let mut nsqd = start(&data);
    let mut next = 0;
    let mut acked = Vec::new();
    publish_until_full(&nsqd, &mut next, &mut acked);
    let created = http_post(&nsqd.url("/topic/create?topic=fresh"), b"");
    assert_eq!(created.status, 500, "{}", created.body);
    let published = http_post(&nsqd.url("/pub?topic=fresh2"), b"hello");
    assert_eq!(published.status, 500, "{}", published.body);
    assert!(!data.join("topics/fresh").exists(), "nothing left behind");
    assert!(!data.join("topics/fresh2").exists(), "nothing left behind");
    nsqd.kill9();
    nsqd.restart();
    let topics = http_get(&nsqd.url("/stats?format=json")).json();
    let names: Vec<&str> = topics["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["topic_name"].as_str())
        .collect();
    assert_eq!(names, vec!["full"]);
    let mut consumer = consumer(&nsqd);
    consume_all(&mut consumer, &acked);
}
