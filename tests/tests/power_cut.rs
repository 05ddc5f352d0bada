//! Power cuts on a real nsqd: with `--sync-every=1`, nsqd is killed with SIGKILL at a random
//! moment and then everything it had not fsynced is thrown away, as a power cut would (nsqd
//! journals each fsync's file length when `NSQD_TEST_SYNC_JOURNAL` is set; the test cuts every
//! segment and index back to its last fsynced length and drops files never fsynced). After
//! the restart every acknowledged message is in every channel.

use bytes::BytesMut;
use nsq_server::protocol::{decode_frame, Command, Frame, MAGIC_V2};
use nsq_tests::{http_post, Nsqd, RawClient};
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOPICS: [&str; 2] = ["pc1", "pc2"];
const CHANNELS: [&str; 2] = ["a", "b"];

/// Publishes batches of `batch` (PUB for 1, else MPUB) until the server dies or `stop`;
/// returns the acknowledged bodies.
fn publisher(
    addr: SocketAddr,
    topic: &'static str,
    tag: String,
    batch: usize,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acked = Vec::new();
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return acked;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(MAGIC_V2).is_err() {
        return acked;
    }
    let mut buf = BytesMut::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let bodies: Vec<String> = (n..n + batch).map(|i| format!("{tag}-{i}")).collect();
        n += batch;
        let mut out = BytesMut::new();
        let mut encoded: Vec<bytes::Bytes> = bodies
            .iter()
            .map(|b| b.clone().into_bytes().into())
            .collect();
        let command = match encoded.pop() {
            Some(body) if encoded.is_empty() => Command::Pub {
                topic: topic.into(),
                body,
            },
            last => Command::Mpub {
                topic: topic.into(),
                bodies: encoded.into_iter().chain(last).collect(),
            },
        };
        command.encode(&mut out);
        if stream.write_all(&out).is_err() {
            return acked;
        }
        let frame = loop {
            match decode_frame(&mut buf, 1 << 20) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(_) => return acked,
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return acked,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        match frame {
            Frame::Response(r) if &r[..] == b"OK" => acked.extend(bodies),
            _ => return acked,
        }
    }
    acked
}

/// Applies a power cut to the stopped nsqd's data: every `.log`/`.idx` file is cut back to its
/// last fsynced length (files never fsynced are removed). Returns the bytes thrown away.
fn power_cut(data: &Path, journal: &Path, durable: &mut HashMap<PathBuf, u64>) -> u64 {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    for line in text.lines() {
        if let Some((len, path)) = line.split_once('\t') {
            if let Ok(len) = len.parse() {
                durable.insert(PathBuf::from(path), len);
            }
        }
    }
    std::fs::write(journal, b"").expect("reset the journal");
    let mut dropped = 0;
    for topic in TOPICS {
        let Ok(entries) = std::fs::read_dir(data.join("topics").join(topic)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.extension().is_some_and(|e| e == "log" || e == "idx") {
                continue;
            }
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match durable.get(&path) {
                Some(&synced) if synced < len => {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(synced))
                        .expect("cut back");
                    dropped += len - synced;
                }
                Some(_) => {}
                None => {
                    std::fs::remove_file(&path).expect("drop a never-synced file");
                    dropped += len;
                }
            }
        }
    }
    dropped
}

/// What a channel delivers (FIN'd): until everything in `want` arrived (then briefly more,
/// to see duplicates), or 5 s of silence.
fn drain(
    addr: SocketAddr,
    topic: &str,
    channel: &str,
    want: &HashSet<String>,
    seen: &mut HashSet<String>,
) {
    let mut client = RawClient::connect(addr);
    client.subscribe(topic, channel);
    client.send_raw(b"RDY 2500\n");
    let mut quiet = Duration::from_secs(5);
    while let Some(frame) = client.try_frame(quiet) {
        if let Frame::Message { id, body, .. } = frame {
            seen.insert(String::from_utf8_lossy(&body).into_owned());
            client.send_raw(format!("FIN {}\n", String::from_utf8_lossy(&id)).as_bytes());
        }
        if want.iter().all(|b| seen.contains(b)) {
            quiet = Duration::from_millis(200);
        }
    }
}

#[test]
fn sync_every_1_loses_nothing_acknowledged_to_a_power_cut() {
    power_cut_rounds(2, 10);
}

/// Group commit under load: 32 connections publishing single messages (16 per topic), so
/// most fsyncs cover many publishers' messages, and still nothing acknowledged is lost.
#[test]
fn sync_every_1_with_32_single_message_publishers_loses_nothing_acknowledged() {
    power_cut_rounds(16, 1);
}

/// Five rounds of: `publishers_per_topic` connections per topic publish batches of `batch`,
/// nsqd is killed at a random moment, unsynced data is thrown away, nsqd restarts, and every
/// channel must deliver everything acknowledged so far.
fn power_cut_rounds(publishers_per_topic: usize, batch: usize) {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("dir");
    let journal = dir.path().join("fsync.journal");
    let journal_text = journal.to_string_lossy().into_owned();
    let mut nsqd = Nsqd::start_with_env(
        &["--sync-every=1", "--max-bytes-per-file=65536"],
        &[("NSQD_TEST_SYNC_JOURNAL", &journal_text)],
    );
    for topic in TOPICS {
        http_post(&nsqd.url(&format!("/topic/create?topic={topic}")), b"");
        for channel in CHANNELS {
            let reply = http_post(
                &nsqd.url(&format!("/channel/create?topic={topic}&channel={channel}")),
                b"",
            );
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
    let mut durable = HashMap::new();
    let mut acked: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut delivered: HashMap<(&str, &str), HashSet<String>> = HashMap::new();
    for round in 0..5 {
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let topics = TOPICS
            .iter()
            .cycle()
            .take(TOPICS.len() * publishers_per_topic);
        for (i, topic) in topics.enumerate() {
            let (addr, stop, results) = (nsqd.tcp, stop.clone(), results.clone());
            let topic: &'static str = topic;
            threads.push(std::thread::spawn(move || {
                let got = publisher(addr, topic, format!("r{round}p{i}"), batch, stop);
                results.lock().expect("results").push((topic, got));
            }));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..800)));
        nsqd.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("publisher");
        }
        let mut round_acked = 0;
        for (topic, got) in results.lock().expect("results").drain(..) {
            round_acked += got.len();
            acked.entry(topic).or_default().extend(got);
        }
        let dropped = power_cut(nsqd.data_path(), &journal, &mut durable);
        nsqd.restart();
        for topic in TOPICS {
            for channel in CHANNELS {
                let seen = delivered.entry((topic, channel)).or_default();
                drain(nsqd.tcp, topic, channel, &acked[topic], seen);
                let missing: Vec<&String> =
                    acked[topic].iter().filter(|b| !seen.contains(*b)).collect();
                assert!(
                    missing.is_empty(),
                    "round {round}: {} acknowledged messages lost in {topic}/{channel}, e.g. {:?}\n{}",
                    missing.len(),
                    missing.first(),
                    nsqd.log()
                );
            }
        }
        println!("round {round}: {round_acked} acknowledged, {dropped} unsynced bytes thrown away, 0 lost");
    }
}
