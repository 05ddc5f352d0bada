//! Crash tests of the real nsqd process: publishers over TCP (PUB and MPUB) and HTTP (/pub and
//! /mpub) record every message nsqd acknowledged with `OK`, a consumer FINs as it goes, and
//! nsqd is killed with SIGKILL at a random moment. After a restart on the same data directory
//! every acknowledged message must be in every channel (nothing lost); duplicates (messages
//! delivered again after the crash) are allowed, and counted and printed.
//!
//! Also: messages FIN'd before a clean SIGTERM are not delivered again after the restart.

use bytes::{Bytes, BytesMut};
use nsq_server::protocol::{decode_frame, Command, Frame, MAGIC_V2};
use nsq_tests::{http_get, http_post, Nsqd};
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const TOPIC: &str = "crash";
const CHANNELS: [&str; 2] = ["live", "idle"];

/// A V2 connection that reports a dead server as an error instead of panicking: the point of
/// these tests is that the server dies under it.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let mut stream = TcpStream::connect(addr)?;
        let _ = stream.set_nodelay(true);
        stream.write_all(MAGIC_V2)?;
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
        })
    }

    fn send(&mut self, command: &Command) -> io::Result<()> {
        let mut buf = BytesMut::new();
        command.encode(&mut buf);
        self.stream.write_all(&buf)
    }

    fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next frame other than a heartbeat (answered with NOP); `Ok(None)` after `wait` of
    /// silence; an error once the connection is gone.
    fn frame(&mut self, wait: Duration) -> io::Result<Option<Frame>> {
        self.stream.set_read_timeout(Some(wait))?;
        loop {
            match decode_frame(&mut self.buf, 64 << 20) {
                Ok(Some(Frame::Response(r))) if &r[..] == b"_heartbeat_" => {
                    self.send_raw(b"NOP\n")?;
                    continue;
                }
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn subscribe(addr: SocketAddr, channel: &str, rdy: u32) -> io::Result<Conn> {
        let mut conn = Conn::connect(addr)?;
        conn.send(&Command::Sub {
            topic: TOPIC.to_string(),
            channel: channel.to_string(),
        })?;
        match conn.frame(Duration::from_secs(10))? {
            Some(Frame::Response(r)) if &r[..] == b"OK" => {}
            other => panic!("SUB answered {other:?}"),
        }
        conn.send_raw(format!("RDY {rdy}\n").as_bytes())?;
        Ok(conn)
    }
}

/// What the publishers got acknowledged, and what the consumer saw before the crash.
#[derive(Default)]
struct Record {
    acked: HashSet<Bytes>,
    /// Bodies sent whose answer never came (the crash cut them off): may or may not be there.
    unacked: HashSet<Bytes>,
    /// The unanswered MPUBs, to see whether a crash can keep part of one.
    unacked_batches: Vec<Vec<Bytes>>,
}

impl Record {
    fn lost_answer(&mut self, bodies: Vec<Bytes>) {
        if bodies.len() > 1 {
            self.unacked_batches.push(bodies.clone());
        }
        self.unacked.extend(bodies);
    }
}

fn tcp_publisher(
    addr: SocketAddr,
    name: String,
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
) {
    let Ok(mut conn) = Conn::connect(addr) else {
        return;
    };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Every fourth command is an MPUB of 10.
        let bodies: Vec<Bytes> = if seq.is_multiple_of(4) {
            (0..10)
                .map(|i| Bytes::from(format!("{name}-{seq}-{i}")))
                .collect()
        } else {
            vec![Bytes::from(format!("{name}-{seq}"))]
        };
        seq += 1;
        let command = if bodies.len() == 1 {
            Command::Pub {
                topic: TOPIC.to_string(),
                body: bodies[0].clone(),
            }
        } else {
            Command::Mpub {
                topic: TOPIC.to_string(),
                bodies: bodies.clone(),
            }
        };
        let answer = conn
            .send(&command)
            .and_then(|()| conn.frame(Duration::from_secs(10)));
        let mut r = record.lock().expect("record");
        match answer {
            Ok(Some(Frame::Response(ok))) if &ok[..] == b"OK" => r.acked.extend(bodies),
            // A stopping nsqd refuses publishes (E_PUB_FAILED / E_MPUB_FAILED): not acked.
            Ok(Some(Frame::Error(e))) if stop.load(Ordering::Relaxed) || e.starts_with(b"E_") => {
                assert!(
                    e.starts_with(b"E_PUB_FAILED") || e.starts_with(b"E_MPUB_FAILED"),
                    "{name}: publish answered {}",
                    String::from_utf8_lossy(&e)
                );
                r.lost_answer(bodies);
                return;
            }
            Ok(Some(other)) => panic!("{name}: publish answered {other:?}"),
            Ok(None) | Err(_) => {
                r.lost_answer(bodies);
                return;
            }
        }
    }
}

fn http_publisher(
    nsqd_url: String,
    name: String,
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (path, bodies): (&str, Vec<Bytes>) = if seq.is_multiple_of(4) {
            (
                "mpub",
                (0..10)
                    .map(|i| Bytes::from(format!("{name}-{seq}-{i}")))
                    .collect(),
            )
        } else {
            ("pub", vec![Bytes::from(format!("{name}-{seq}"))])
        };
        seq += 1;
        let payload = bodies
            .iter()
            .map(|b| &b[..])
            .collect::<Vec<_>>()
            .join(&b"\n"[..]);
        let reply = http_post(&format!("{nsqd_url}/{path}?topic={TOPIC}"), &payload);
        let mut r = record.lock().expect("record");
        match reply.status {
            200 if reply.body == "OK" => r.acked.extend(bodies),
            200 => panic!("{name}: {path} answered {}", reply.body),
            0 => {
                r.lost_answer(bodies);
                return;
            }
            status => {
                // A response other than OK may only come from a dying server; never counted
                // as acknowledged.
                r.lost_answer(bodies);
                assert!(
                    status >= 500,
                    "{name}: {path} answered {status} {}",
                    reply.body
                );
                return;
            }
        }
    }
}

/// Consumes channel `live` and FINs everything until the connection dies; returns the bodies
/// received.
fn live_consumer(addr: SocketAddr) -> Vec<Bytes> {
    let mut seen = Vec::new();
    let Ok(mut conn) = Conn::subscribe(addr, CHANNELS[0], 50) else {
        return seen;
    };
    loop {
        match conn.frame(Duration::from_secs(30)) {
            Ok(Some(Frame::Message { id, body, .. })) => {
                seen.push(body);
                let mut fin = b"FIN ".to_vec();
                fin.extend_from_slice(&id);
                fin.push(b'\n');
                if conn.send_raw(&fin).is_err() {
                    return seen;
                }
            }
            Ok(Some(other)) => panic!("live consumer got {other:?}"),
            Ok(None) | Err(_) => return seen,
        }
    }
}

/// After the restart: receives and FINs everything on `channel` until every body in `must`
/// has been seen (including `seen_before`) and the channel then stays quiet for a moment.
fn drain(
    addr: SocketAddr,
    channel: &str,
    must: &HashSet<Bytes>,
    seen_before: &HashSet<Bytes>,
) -> Vec<Bytes> {
    let mut conn = Conn::subscribe(addr, channel, 500).expect("subscribe after restart");
    let mut seen = Vec::new();
    let mut missing: HashSet<&Bytes> = must.difference(seen_before).collect();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut quiet_since: Option<Instant> = None;
    while Instant::now() < deadline {
        match conn
            .frame(Duration::from_millis(100))
            .expect("drain connection")
        {
            Some(Frame::Message { id, body, .. }) => {
                missing.remove(&body);
                seen.push(body);
                let mut fin = b"FIN ".to_vec();
                fin.extend_from_slice(&id);
                fin.push(b'\n');
                conn.send_raw(&fin).expect("FIN");
                quiet_since = None;
            }
            Some(other) => panic!("drain of {channel} got {other:?}"),
            None => {
                if missing.is_empty() {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(600) {
                        break;
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "LOST after kill -9: {} acknowledged messages never came back on {channel}, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    seen
}

fn create_topology(nsqd: &Nsqd) {
    for path in [
        format!("/topic/create?topic={TOPIC}"),
        format!("/channel/create?topic={TOPIC}&channel={}", CHANNELS[0]),
        format!("/channel/create?topic={TOPIC}&channel={}", CHANNELS[1]),
    ] {
        let reply = http_post(&nsqd.url(&path), b"");
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
}

/// Starts 3 TCP and 2 HTTP publishers named after `tag`, recording into `record` until `stop`.
fn start_publishers(
    nsqd: &Nsqd,
    tag: &str,
    stop: &Arc<AtomicBool>,
    record: &Arc<Mutex<Record>>,
) -> Vec<thread::JoinHandle<()>> {
    let mut publishers = Vec::new();
    for i in 0..3 {
        let (addr, stop, record) = (nsqd.tcp, stop.clone(), record.clone());
        let name = format!("{tag}-tcp{i}");
        publishers.push(thread::spawn(move || {
            tcp_publisher(addr, name, stop, record)
        }));
    }
    for i in 0..2 {
        let (url, stop, record) = (nsqd.url(""), stop.clone(), record.clone());
        let name = format!("{tag}-http{i}");
        publishers.push(thread::spawn(move || {
            http_publisher(url, name, stop, record)
        }));
    }
    publishers
}

/// Rounds of: publish from 3 TCP and 2 HTTP publishers while one channel is consumed, kill -9
/// at a random moment, restart, drain both channels and check nothing acknowledged is lost.
fn kill9_rounds(flags: &[&str], rounds: usize) {
    let seed: u64 = rand::random();
    println!("{flags:?}: seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut nsqd = Nsqd::start(flags);
    create_topology(&nsqd);
    let mut all_acked = HashSet::new();
    // Per channel: every body ever delivered (to count deliveries of the same body twice).
    let mut ever: HashMap<&str, HashSet<Bytes>> = HashMap::new();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Record::default()));
        let consumer = {
            let addr = nsqd.tcp;
            thread::spawn(move || live_consumer(addr))
        };
        let publishers = start_publishers(&nsqd, &format!("r{round}"), &stop, &record);
        thread::sleep(Duration::from_millis(rng.gen_range(100..900)));
        nsqd.kill9();
        stop.store(true, Ordering::Relaxed);
        for p in publishers {
            p.join().expect("publisher thread");
        }
        let live_before = consumer.join().expect("consumer thread");
        let record = std::mem::take(&mut *record.lock().expect("record"));
        assert!(
            !record.acked.is_empty(),
            "round {round}: nothing was acknowledged"
        );
        all_acked.extend(record.acked.iter().cloned());

        nsqd.restart();
        let mut dups = Vec::new();
        let mut unacked_present = 0;
        let mut idle_after = HashSet::new();
        for (i, channel) in CHANNELS.iter().enumerate() {
            let mut delivered = ever.remove(channel).unwrap_or_default();
            let mut dup = 0;
            if i == 0 {
                for b in &live_before {
                    dup += usize::from(!delivered.insert(b.clone()));
                }
            }
            let after = drain(nsqd.tcp, channel, &all_acked, &delivered);
            for b in after {
                if record.unacked.contains(&b) && i == 1 {
                    unacked_present += 1;
                    idle_after.insert(b.clone());
                }
                dup += usize::from(!delivered.insert(b));
            }
            dups.push(dup);
            ever.insert(channel, delivered);
        }
        // An unanswered MPUB should be kept whole or not at all; count any kept in part.
        let partial_mpubs = record
            .unacked_batches
            .iter()
            .filter(|batch| {
                let kept = batch.iter().filter(|b| idle_after.contains(*b)).count();
                kept > 0 && kept < batch.len()
            })
            .count();
        println!(
            "{flags:?} round {round}: acked {} (lost 0), live consumer got {} before the kill, \
             duplicates after restart: live {} idle {}, unacknowledged but kept {unacked_present} of {} \
             (MPUBs kept in part: {partial_mpubs})",
            record.acked.len(),
            live_before.len(),
            dups[0],
            dups[1],
            record.unacked.len()
        );
    }
    let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={TOPIC}")));
    assert_eq!(stats.status, 200);
    assert!(nsqd.terminate().success(), "clean exit after the rounds");
}

#[test]
fn kill9_loses_nothing_acknowledged_default_sync() {
    // With the two below: 20 kill -9 rounds in all (power_cut.rs adds power cuts).
    kill9_rounds(&[], 8);
}

#[test]
fn kill9_loses_nothing_acknowledged_sync_every_1() {
    kill9_rounds(&["--sync-every=1"], 8);
}

#[test]
fn kill9_loses_nothing_acknowledged_small_segments() {
    // Segments roll every ~100 KB and consumed ones are deleted while the crashes happen.
    kill9_rounds(&["--max-bytes-per-file=100000"], 4);
}

/// A DPUB'd message and a message REQ'd with a delay keep their delay across a stop (SIGKILL
/// or SIGTERM): delivered after the restart, and not before their time.
#[test]
fn deferred_and_requeued_messages_survive_a_stop() {
    for kill in [true, false] {
        let mut nsqd = Nsqd::start(&[]);
        let t0 = Instant::now();
        let reply = http_post(
            &nsqd.url(&format!("/pub?topic={TOPIC}&defer=2500")),
            b"deferred",
        );
        assert_eq!(reply.body, "OK");
        let reply = http_post(&nsqd.url(&format!("/pub?topic={TOPIC}")), b"requeued");
        assert_eq!(reply.body, "OK");
        let mut consumer = Conn::subscribe(nsqd.tcp, "c", 5).expect("subscribe");
        let id = match consumer.frame(Duration::from_secs(10)).expect("message") {
            Some(Frame::Message { id, body, .. }) if &body[..] == b"requeued" => id,
            other => panic!("expected the undeferred message, got {other:?}"),
        };
        let mut req = b"REQ ".to_vec();
        req.extend_from_slice(&id);
        req.extend_from_slice(b" 2500\n");
        consumer.send_raw(&req).expect("REQ");
        // REQ has no answer: wait until nsqd shows it, then until the cursor is persisted
        // (every second), since that is what a kill -9 keeps.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={TOPIC}"))).json();
            if stats["topics"][0]["channels"][0]["deferred_count"] == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "REQ not applied: {stats}");
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(1500));
        if kill {
            nsqd.kill9();
        } else {
            assert!(nsqd.terminate().success());
        }
        drop(consumer);
        nsqd.restart();
        let mut consumer = Conn::subscribe(nsqd.tcp, "c", 5).expect("subscribe");
        let mut got = HashMap::new();
        while got.len() < 2 {
            match consumer.frame(Duration::from_secs(10)).expect("message") {
                Some(Frame::Message { body, attempts, .. }) => {
                    // Never before its time (measured from before the publish, so lenient).
                    assert!(
                        t0.elapsed() >= Duration::from_millis(2400),
                        "{body:?} delivered after {:?}, before its 2.5 s delay",
                        t0.elapsed()
                    );
                    got.insert(body, attempts);
                }
                other => panic!("kill={kill}: expected the delayed messages, got {other:?}"),
            }
        }
        assert_eq!(got.get(&b"deferred"[..]), Some(&1), "kill={kill}");
        assert_eq!(got.get(&b"requeued"[..]), Some(&2), "kill={kill}");
    }
}

#[test]
fn sigterm_under_load_exits_0_and_loses_nothing() {
    let mut nsqd = Nsqd::start(&[]);
    create_topology(&nsqd);
    let stop = Arc::new(AtomicBool::new(false));
    let record = Arc::new(Mutex::new(Record::default()));
    let consumer = {
        let addr = nsqd.tcp;
        thread::spawn(move || live_consumer(addr))
    };
    let publishers = start_publishers(&nsqd, "term", &stop, &record);
    thread::sleep(Duration::from_millis(500));
    let status = nsqd.terminate();
    stop.store(true, Ordering::Relaxed);
    assert!(
        status.success(),
        "SIGTERM under load: {status}\n{}",
        nsqd.log()
    );
    for p in publishers {
        p.join().expect("publisher thread");
    }
    let live_before: HashSet<Bytes> = consumer.join().expect("consumer").into_iter().collect();
    let record = std::mem::take(&mut *record.lock().expect("record"));
    assert!(!record.acked.is_empty());

    nsqd.restart();
    let live_after = drain(nsqd.tcp, CHANNELS[0], &record.acked, &live_before);
    let idle = drain(nsqd.tcp, CHANNELS[1], &record.acked, &HashSet::new());
    let dups = live_after
        .iter()
        .filter(|b| live_before.contains(*b))
        .count();
    println!(
        "SIGTERM under load: acked {}, live consumer got {} before, {} after ({dups} again), \
         idle got {}",
        record.acked.len(),
        live_before.len(),
        live_after.len(),
        idle.len()
    );
    assert!(nsqd.terminate().success());
}

#[test]
fn finished_before_sigterm_is_not_redelivered() {
    let mut nsqd = Nsqd::start(&[]);
    create_topology(&nsqd);
    let bodies: Vec<Bytes> = (0..200).map(|i| Bytes::from(format!("m{i}"))).collect();
    let mut publisher = Conn::connect(nsqd.tcp).expect("connect");
    for chunk in bodies.chunks(20) {
        publisher
            .send(&Command::Mpub {
                topic: TOPIC.to_string(),
                bodies: chunk.to_vec(),
            })
            .expect("MPUB");
        match publisher.frame(Duration::from_secs(10)).expect("answer") {
            Some(Frame::Response(ok)) if &ok[..] == b"OK" => {}
            other => panic!("MPUB answered {other:?}"),
        }
    }
    // Take all 200 in flight on `live`, FIN 150 of them, and leave 50 unfinished.
    let mut consumer = Conn::subscribe(nsqd.tcp, CHANNELS[0], 200).expect("subscribe");
    let mut finished = HashSet::new();
    let mut unfinished = HashSet::new();
    while finished.len() + unfinished.len() < 200 {
        match consumer.frame(Duration::from_secs(10)).expect("message") {
            Some(Frame::Message { id, body, .. }) => {
                if finished.len() < 150 {
                    let mut fin = b"FIN ".to_vec();
                    fin.extend_from_slice(&id);
                    fin.push(b'\n');
                    consumer.send_raw(&fin).expect("FIN");
                    finished.insert(body);
                } else {
                    unfinished.insert(body);
                }
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }
    // FIN has no answer: wait until nsqd shows it processed them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = http_get(&nsqd.url(&format!("/stats?format=json&topic={TOPIC}"))).json();
        let in_flight = stats["topics"][0]["channels"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["channel_name"] == CHANNELS[0]))
            .map(|c| c["in_flight_count"].clone());
        if in_flight == Some(serde_json::json!(50)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "in_flight_count is {in_flight:?}, not 50"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(nsqd.terminate().success(), "SIGTERM exits 0");
    drop(consumer);
    drop(publisher);

    nsqd.restart();
    let after = drain(nsqd.tcp, CHANNELS[0], &unfinished, &HashSet::new());
    let redelivered: Vec<_> = after.iter().filter(|b| finished.contains(*b)).collect();
    assert!(
        redelivered.is_empty(),
        "{} messages FIN'd before SIGTERM came back, e.g. {:?}",
        redelivered.len(),
        &redelivered[..redelivered.len().min(5)]
    );
    assert_eq!(after.len(), 50, "exactly the 50 unfinished ones come back");
    // The idle channel still has all 200.
    let idle = drain(
        nsqd.tcp,
        CHANNELS[1],
        &bodies.iter().cloned().collect(),
        &HashSet::new(),
    );
    assert_eq!(idle.len(), 200);
    assert!(nsqd.terminate().success());
}
