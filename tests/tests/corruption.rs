//! nsqd on damaged data directories: for each kind of damage it either starts and serves
//! every sound message (logging one clear line about the damage) or refuses to start with one
//! line pointing at `nsq_log repair`; it never panics and never serves garbage; after
//! `nsq_log repair` it serves every intact message.

use nsq_server::protocol::Frame;
use nsq_tests::{binary, first_offset, http_post, segment_files, Nsqd, RawClient};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const MESSAGES: usize = 300;

fn body(i: usize) -> String {
    format!("event-{i:04}-{}", "z".repeat(i % 40))
}

/// nsqd with topic `t` holding MESSAGES messages in small segments, channel `c`, stopped.
fn stopped_nsqd() -> Nsqd {
    let mut nsqd = Nsqd::start(&["--max-bytes-per-file=4096"]);
    assert_eq!(
        http_post(&nsqd.url("/topic/create?topic=t"), b"").status,
        200
    );
    assert_eq!(
        http_post(&nsqd.url("/channel/create?topic=t&channel=c"), b"").status,
        200
    );
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(10) {
        let lines: Vec<String> = chunk.iter().map(|&i| body(i)).collect();
        let reply = http_post(&nsqd.url("/mpub?topic=t"), lines.join("\n").as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert!(nsqd.terminate().success());
    nsqd
}

fn segments(data: &Path) -> Vec<PathBuf> {
    segments_at_least(data, 4)
}

fn segments_at_least(data: &Path, min: usize) -> Vec<PathBuf> {
    let out = segment_files(data, "t");
    assert!(out.len() >= min, "want {min}+ segments, got {}", out.len());
    out
}

/// Everything channel `c` delivers (FIN'd), until it goes quiet.
fn drain(nsqd: &Nsqd) -> Vec<String> {
    let mut client = RawClient::connect(nsqd.tcp);
    client.subscribe("t", "c");
    client.send_raw(b"RDY 500\n");
    let mut got = Vec::new();
    while let Some(frame) = client.try_frame(Duration::from_secs(2)) {
        match frame {
            Frame::Message { id, body, .. } => {
                got.push(String::from_utf8_lossy(&body).into_owned());
                client.send_raw(format!("FIN {}\n", String::from_utf8_lossy(&id)).as_bytes());
            }
            Frame::Response(_) => {}
            Frame::Error(e) => panic!("nsqd sent an error: {}", String::from_utf8_lossy(&e)),
        }
    }
    got
}

fn expect_all_but(got: &[String], lost: &[usize]) {
    let want: Vec<String> = (0..MESSAGES)
        .filter(|i| !lost.contains(i))
        .map(body)
        .collect();
    let got_set: BTreeSet<&String> = got.iter().collect();
    let want_set: BTreeSet<&String> = want.iter().collect();
    assert_eq!(got_set, want_set, "delivered set");
    assert_eq!(got.len(), want.len(), "no duplicates");
}

fn nsq_log(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary("nsq_log"))
        .arg("--data-path")
        .arg(data)
        .args(args)
        .output()
        .expect("run nsq_log")
}

/// Repairs the stopped nsqd's directory and checks that verify then passes.
fn repair(nsqd: &Nsqd) {
    let out = nsq_log(nsqd.data_path(), &["repair"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "repair: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(nsq_log(nsqd.data_path(), &["verify"]).status.success());
}

fn assert_no_panic(nsqd: &Nsqd) {
    assert!(
        !nsqd.log().contains("panicked"),
        "nsqd panicked:\n{}",
        nsqd.log()
    );
}

#[test]
fn flipped_bit_in_a_sealed_segment_costs_one_message() {
    let mut nsqd = stopped_nsqd();
    let victim = segments(nsqd.data_path())[1].clone();
    let mut bytes = std::fs::read(&victim).expect("read");
    bytes[32 + 48 + 2] ^= 0x08;
    std::fs::write(&victim, &bytes).expect("write");
    nsqd.restart();
    expect_all_but(&drain(&nsqd), &[first_offset(&victim)]);
    let log = nsqd.log();
    assert!(
        log.lines()
            .any(|l| l.contains("corrupt data") && l.contains("nsq_log repair")),
        "one clear line about the damage:\n{log}"
    );
    assert_no_panic(&nsqd);
    assert!(nsqd.terminate().success());
    repair(&nsqd);
}

#[test]
fn torn_tail_and_truncated_index_are_recovered_on_start() {
    let mut nsqd = stopped_nsqd();
    let segs = segments(nsqd.data_path());
    let last = segs.last().expect("last");
    let len = std::fs::metadata(last).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .and_then(|f| f.set_len(len - 3))
        .expect("tear the tail");
    // A torn index entry (the index is a hint; nsqd rebuilds it from the records).
    let index = segs[0].with_extension("idx");
    let mut junk = std::fs::read(&index).expect("read index");
    junk.extend_from_slice(&[0xab; 7]);
    std::fs::write(&index, &junk).expect("damage the index");
    nsqd.restart();
    expect_all_but(&drain(&nsqd), &[MESSAGES - 1]);
    assert!(
        nsqd.log().contains("recovery"),
        "recovery is logged:\n{}",
        nsqd.log()
    );
    assert_no_panic(&nsqd);
}

#[test]
fn zero_filled_block_and_missing_segment_lose_only_what_they_held() {
    let mut nsqd = stopped_nsqd();
    let segs = segments(nsqd.data_path());
    let mut bytes = std::fs::read(&segs[1]).expect("read");
    for b in &mut bytes[400..700] {
        *b = 0;
    }
    std::fs::write(&segs[1], &bytes).expect("write");
    std::fs::remove_file(&segs[2]).expect("remove a middle segment");
    let gone: Vec<usize> = (first_offset(&segs[2])..first_offset(&segs[3])).collect();
    nsqd.restart();
    let got = drain(&nsqd);
    let delivered: BTreeSet<&String> = got.iter().collect();
    for i in &gone {
        assert!(!delivered.contains(&body(*i)));
    }
    let zeroed_lost = MESSAGES - gone.len() - got.len();
    assert!(
        (1..=6).contains(&zeroed_lost),
        "a 300-byte hole lost {zeroed_lost}"
    );
    assert_no_panic(&nsqd);
    assert!(nsqd.terminate().success());
    repair(&nsqd);
}

#[test]
fn cursor_past_the_log_is_clamped_on_start() {
    let mut nsqd = stopped_nsqd();
    nsqd.restart();
    expect_all_but(&drain(&nsqd), &[]);
    assert!(nsqd.terminate().success());
    // Consumed segments are reclaimed; cut the one left back to a few records, as a power cut
    // would cut unsynced data, leaving the channel's cursor past the end of the log.
    let segs = segments_at_least(nsqd.data_path(), 1);
    let last = segs.last().expect("last");
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .and_then(|f| f.set_len(200))
        .expect("cut the log");
    std::fs::remove_file(last.with_extension("idx")).expect("remove the index");
    nsqd.restart();
    let reply = http_post(&nsqd.url("/pub?topic=t"), b"after");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(drain(&nsqd), vec!["after".to_string()]);
    assert!(
        nsqd.log().contains("pointed past the end of the log"),
        "the clamp is logged:\n{}",
        nsqd.log()
    );
    assert_no_panic(&nsqd);
}

#[test]
fn damaged_meta_refuses_to_start_until_repaired() {
    damaged_meta_is_repaired(|bytes| {
        let at = bytes.len() - 3;
        bytes[at] ^= 0xff;
    });
}

#[test]
fn flipped_bit_in_metas_version_field_is_damage_that_repair_fixes() {
    // Once "format version 8193, this build reads up to 1": a brick no tool would touch.
    damaged_meta_is_repaired(|bytes| bytes[10] ^= 0x20);
}

fn damaged_meta_is_repaired(damage: impl Fn(&mut Vec<u8>)) {
    let mut nsqd = stopped_nsqd();
    let meta = nsqd.data_path().join("meta");
    let mut bytes = std::fs::read(&meta).expect("read");
    damage(&mut bytes);
    std::fs::write(&meta, &bytes).expect("write");
    let out = Command::new(binary("nsqd"))
        .arg("--data-path")
        .arg(nsqd.data_path())
        .arg(format!("--tcp-address={}", nsqd.tcp))
        .arg(format!("--http-address={}", nsqd.http))
        .output()
        .expect("run nsqd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("nsq_log repair") && last.contains("meta"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    repair(&nsqd);
    nsqd.restart();
    expect_all_but(&drain(&nsqd), &[]);
}

#[test]
fn missing_meta_loses_no_channel() {
    let mut nsqd = stopped_nsqd();
    nsqd.restart();
    assert_eq!(
        http_post(&nsqd.url("/channel/create?topic=t&channel=other"), b"").status,
        200
    );
    expect_all_but(&drain(&nsqd), &[]);
    assert!(nsqd.terminate().success());
    std::fs::remove_file(nsqd.data_path().join("meta")).expect("remove meta");
    let verify = nsq_log(nsqd.data_path(), &["verify"]);
    let said = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(!verify.status.success(), "verify must report it: {said}");
    assert!(said.contains("meta is missing"), "{said}");
    nsqd.restart();
    // Channel c finished everything before: nothing comes back. The other channel was created
    // after the messages were published (NSQ: it sees only newer ones) and keeps its place too.
    assert_eq!(drain(&nsqd), Vec::<String>::new());
    let stats = nsq_tests::http_get(&nsqd.url("/stats?format=json&topic=t")).json();
    let channels: Vec<&str> = stats["topics"][0]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c["channel_name"].as_str())
        .collect();
    assert_eq!(channels, vec!["c", "other"], "{stats}");
    assert_no_panic(&nsqd);
    assert!(nsqd.terminate().success());
    assert!(nsq_log(nsqd.data_path(), &["verify"]).status.success());
}
