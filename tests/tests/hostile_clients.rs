//! Slow and hostile clients against a real nsqd: thousands of idle connections, subscribers
//! that never read their socket, clients that stall halfway through a command or send
//! garbage. nsqd's memory stays bounded and every other client keeps being served.

use nsq_server::protocol::Frame;
use nsq_tests::{http_get, http_post, Nsqd, RawClient};
use serde_json::json;
use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A generous ceiling for nsqd's resident memory in these tests (a debug build).
const RSS_LIMIT_KB: u64 = 200 * 1024;

/// nsqd's resident set size in KiB, from /proc/<pid>/status.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// How many file descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Raises this process's open-file limit to at least `want` (nsqd inherits it); `Err` with
/// the reason when the hard limit does not allow it.
fn raise_fd_limit(want: u64) -> Result<u64, String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if limit.rlim_cur >= want {
        return Ok(limit.rlim_cur);
    }
    if limit.rlim_max < want {
        return Err(format!(
            "the hard open-file limit is {} and {want} are needed",
            limit.rlim_max
        ));
    }
    limit.rlim_cur = want;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(want)
}

/// Samples nsqd's RSS every 50 ms until dropped; `max()` is the peak seen so far.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(rss_kb(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn max(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fin(c: &mut RawClient, id: &[u8; 16]) {
    c.send_raw(format!("FIN {}\n", String::from_utf8_lossy(id)).as_bytes());
}

/// A consumer thread on `topic`/`channel` that FINs everything and returns the distinct
/// bodies once it has `want` of them (or after `within` of trying).
fn consume(
    nsqd: &Nsqd,
    topic: &str,
    channel: &str,
    rdy: u32,
    want: usize,
    within: Duration,
) -> JoinHandle<HashSet<Vec<u8>>> {
    let mut c = RawClient::connect(nsqd.tcp);
    c.identify(json!({"heartbeat_interval": 1000}));
    c.subscribe(topic, channel);
    c.send_raw(format!("RDY {rdy}\n").as_bytes());
    std::thread::spawn(move || {
        let deadline = Instant::now() + within;
        let mut seen = HashSet::new();
        while seen.len() < want && Instant::now() < deadline {
            match c.try_frame(Duration::from_secs(2)) {
                Some(Frame::Message { id, body, .. }) => {
                    fin(&mut c, &id);
                    seen.insert(body.to_vec());
                }
                Some(Frame::Response(r)) if &r[..] == b"_heartbeat_" => c.send_raw(b"NOP\n"),
                Some(other) => panic!("consumer got {other:?}"),
                None => {}
            }
        }
        seen
    })
}

/// The clients `/stats` lists on `topic`/`channel`.
fn channel_clients(nsqd: &Nsqd, topic: &str, channel: &str) -> usize {
    let stats = http_get(&nsqd.url(&format!(
        "/stats?format=json&topic={topic}&channel={channel}"
    )))
    .json();
    stats["topics"][0]["channels"][0]["clients"]
        .as_array()
        .map_or(0, Vec::len)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

#[test]
fn two_thousand_idle_connections_do_not_stop_traffic() {
    const IDLE: usize = 2000;
    const MESSAGES: usize = 1000;
    if let Err(why) = raise_fd_limit(2 * IDLE as u64 + 1024) {
        println!("skipping: cannot open {IDLE} connections here ({why})");
        return;
    }
    let nsqd = Nsqd::start(&[]);
    let pid = nsqd.pid();
    let baseline = rss_kb(pid);

    // A third say nothing, a third only the magic, a third stop halfway through a PUB.
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut s = TcpStream::connect(nsqd.tcp).expect("idle connection");
        match i % 3 {
            0 => {}
            1 => s.write_all(b"  V2").expect("magic"),
            _ => s
                .write_all(b"  V2PUB idle\n\x00\x00\x00\x40half a body")
                .expect("half a PUB"),
        }
        idle.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_fds(pid) < IDLE {
        assert!(
            Instant::now() < deadline,
            "nsqd holds only {} fds of {IDLE} connections",
            open_fds(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let with_idle = rss_kb(pid);
    // Buffers grow only once a connection carries traffic: an idle one costs a few KB (it
    // cost ~22 KB with eager 96 KB of buffers; NSQ's Go nsqd, ~24 KB).
    let per_connection = with_idle.saturating_sub(baseline) / IDLE as u64;
    assert!(
        per_connection < 16,
        "{per_connection} KB of memory per idle connection"
    );
    let sampler = RssSampler::start(pid);

    // Normal traffic beside them: TCP and HTTP publishers, one consumer that must get all.
    let consumer = consume(&nsqd, "live", "c", 100, MESSAGES, Duration::from_secs(30));
    let mut publisher = RawClient::connect(nsqd.tcp);
    for i in 0..MESSAGES {
        let body = format!("message {i}");
        if i % 10 == 0 {
            let reply = http_post(&nsqd.url("/pub?topic=live"), body.as_bytes());
            assert_eq!(reply.status, 200, "HTTP /pub: {}", reply.body);
        } else {
            publisher.publish("live", body.as_bytes());
        }
    }
    let seen = consumer.join().expect("consumer thread");
    assert_eq!(
        seen.len(),
        MESSAGES,
        "the consumer got {} of {MESSAGES} messages",
        seen.len()
    );
    assert_eq!(http_get(&nsqd.url("/ping")).status, 200);
    // nsqd rightly drops connections silent for 30 s (no magic) or 60 s (missed heartbeats);
    // before that, all must still be there.
    if opened.elapsed() < Duration::from_secs(25) {
        assert!(open_fds(pid) >= IDLE, "nsqd dropped idle connections early");
    }
    let peak = sampler.max().max(with_idle);
    println!(
        "nsqd RSS: {} at start, {} with {IDLE} idle connections, peak {} under traffic",
        mb(baseline),
        mb(with_idle),
        mb(peak)
    );
    assert!(
        peak < RSS_LIMIT_KB,
        "nsqd's RSS reached {} with {IDLE} idle connections",
        mb(peak)
    );
    drop(idle);
}

#[test]
fn subscribers_that_never_read_are_bounded_and_others_keep_receiving() {
    const MESSAGES: usize = 200;
    const SIZE: usize = 256 * 1024;
    const HELD: usize = 5;
    // Tighter than RSS_LIMIT_KB: before takes were sized by bytes, each of these subscribers
    // held its whole backlog (25 MB) in nsqd's output buffer, about 140 MB here.
    const LIMIT_KB: u64 = 100 * 1024;
    let nsqd = Nsqd::start(&[]);
    let pid = nsqd.pid();
    let sampler = RssSampler::start(pid);

    // Half the messages wait as a backlog before anyone subscribes (so a subscriber's first
    // RDY finds far more than fits its socket), the other half arrive while they are on.
    let reply = http_post(&nsqd.url("/topic/create?topic=big"), b"");
    assert_eq!(reply.status, 200, "create topic: {}", reply.body);
    for channel in ["live", "dropped"]
        .into_iter()
        .map(String::from)
        .chain((0..HELD).map(|i| format!("stuck{i}")))
    {
        let reply = http_post(
            &nsqd.url(&format!("/channel/create?topic=big&channel={channel}")),
            b"",
        );
        assert_eq!(reply.status, 200, "create {channel}: {}", reply.body);
    }
    let mut publisher = RawClient::connect(nsqd.tcp);
    let publish = |publisher: &mut RawClient, range: std::ops::Range<usize>| {
        for i in range {
            let mut body = vec![b'x'; SIZE];
            body[..8].copy_from_slice(&(i as u64).to_be_bytes());
            publisher.publish("big", &body);
        }
    };
    publish(&mut publisher, 0..MESSAGES / 2);

    // Subscribers that never read: some with the default heartbeat (their writes may stall
    // for 30 s, so nsqd holds them for this whole test), one with a 1 s heartbeat and
    // message timeout (nsqd gives up writing to it after 1 s and closes it).
    let subscribed = Instant::now();
    let mut held = Vec::new();
    for i in 0..HELD {
        let mut c = RawClient::connect(nsqd.tcp);
        c.identify(json!({}));
        c.subscribe("big", &format!("stuck{i}"));
        c.send_raw(b"RDY 1000\n");
        held.push(c);
    }
    let mut dropped = RawClient::connect(nsqd.tcp);
    dropped.identify(json!({"heartbeat_interval": 1000, "msg_timeout": 1000}));
    dropped.subscribe("big", "dropped");
    dropped.send_raw(b"RDY 1000\n");
    let live = consume(&nsqd, "big", "live", 50, MESSAGES, Duration::from_secs(40));
    publish(&mut publisher, MESSAGES / 2..MESSAGES);
    let seen = live.join().expect("live consumer");
    assert_eq!(
        seen.len(),
        MESSAGES,
        "the live channel got {} of {MESSAGES} while {} subscribers did not read",
        seen.len(),
        HELD + 1
    );

    // The 1 s client is closed by nsqd; what it held times out and a new consumer of its
    // channel gets every message.
    let deadline = Instant::now() + Duration::from_secs(10);
    while channel_clients(&nsqd, "big", "dropped") > 0 {
        assert!(
            Instant::now() < deadline,
            "nsqd kept a client that does not read with a 1 s heartbeat: {}",
            nsqd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = consume(
        &nsqd,
        "big",
        "dropped",
        50,
        MESSAGES,
        Duration::from_secs(20),
    )
    .join()
    .expect("second consumer");
    assert_eq!(
        again.len(),
        MESSAGES,
        "after the non-reader was dropped its channel delivered {} of {MESSAGES}",
        again.len()
    );
    // Their writes time out after the default 30 s heartbeat interval; before that, nsqd
    // holds them.
    for i in (0..HELD).filter(|_| subscribed.elapsed() < Duration::from_secs(25)) {
        assert_eq!(
            channel_clients(&nsqd, "big", &format!("stuck{i}")),
            1,
            "a default-heartbeat non-reader is still held"
        );
    }
    let peak = sampler.max();
    println!(
        "nsqd RSS peak {} while {} MB went to a live channel and {} subscribers with RDY 1000 did not read",
        mb(peak),
        MESSAGES * SIZE / (1 << 20),
        HELD + 1
    );
    assert!(
        peak < LIMIT_KB,
        "nsqd's RSS reached {} with subscribers that do not read",
        mb(peak)
    );
    drop(held);
    drop(dropped);
}

#[test]
fn stalled_and_garbage_clients_do_not_disturb_others() {
    let nsqd = Nsqd::start(&[]);
    let consumer = consume(&nsqd, "calm", "c", 10, 100, Duration::from_secs(20));

    // Half a PUB (the body is promised 16 bytes, 4 arrive), and half a command line.
    let mut half_pub = RawClient::connect(nsqd.tcp);
    half_pub.send_raw(b"PUB calm\n\x00\x00\x00\x10half");
    let mut half_line = RawClient::connect(nsqd.tcp);
    half_line.send_raw(b"SUB cal");

    // Garbage after the magic: E_INVALID, then closed.
    let mut garbage = RawClient::connect(nsqd.tcp);
    garbage.send_raw(b"\x00\xff\x13garbage \x7f\x80\n");
    garbage.expect_error("E_INVALID");
    assert!(
        garbage.is_closed(Duration::from_secs(5)),
        "garbage client left open"
    );

    // A command line that never ends: refused once it passes the line limit, then closed.
    let mut endless = RawClient::connect(nsqd.tcp);
    endless.send_raw(&vec![b'A'; 20 * 1024]);
    endless.expect_error("E_INVALID");
    assert!(
        endless.is_closed(Duration::from_secs(5)),
        "endless line left open"
    );

    // A body size far past --max-msg-size is refused before anything is buffered.
    let mut huge = RawClient::connect(nsqd.tcp);
    huge.send_raw(b"PUB calm\n\x7f\xff\xff\xff");
    huge.expect_error("E_BAD_MESSAGE");
    assert!(
        huge.is_closed(Duration::from_secs(5)),
        "huge body left open"
    );

    // Not protocol V2 at all: E_BAD_PROTOCOL, then closed.
    let mut http = RawClient::connect_without_magic(nsqd.tcp);
    http.send_raw(b"GET / HTTP/1.1\r\n\r\n");
    http.expect_error("E_BAD_PROTOCOL");
    assert!(
        http.is_closed(Duration::from_secs(5)),
        "non-V2 client left open"
    );

    // Everyone else is served meanwhile.
    let mut publisher = RawClient::connect(nsqd.tcp);
    for i in 0..100 {
        publisher.publish("calm", format!("calm {i}").as_bytes());
    }
    let seen = consumer.join().expect("consumer");
    assert_eq!(seen.len(), 100, "the consumer got {} of 100", seen.len());

    // The stalled clients were only waiting: finishing their commands works.
    half_pub.send_raw(b" of a body..");
    half_pub.expect_response(b"OK");
    half_line.send_raw(b"m c\n");
    half_line.expect_response(b"OK");
    assert_eq!(http_get(&nsqd.url("/ping")).status, 200);
}

#[test]
fn running_out_of_file_descriptors_does_not_spin_or_stop_nsqd() {
    const LIMIT: u64 = 200;
    const CLIENTS: usize = 300;
    let nsqd = Nsqd::start(&[]);
    let pid = nsqd.pid();
    let limit = libc::rlimit {
        rlim_cur: LIMIT,
        rlim_max: LIMIT,
    };
    // SAFETY: prlimit reads the struct we pass and writes nothing (old limits not asked for).
    let set = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    if set != 0 {
        println!(
            "skipping: cannot lower nsqd's open-file limit ({})",
            std::io::Error::last_os_error()
        );
        return;
    }

    // More connections than nsqd may have files: the kernel queues the rest, accept fails.
    let mut flood = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut s = TcpStream::connect(nsqd.tcp).expect("connect");
        s.write_all(b"  V2").expect("magic");
        flood.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nsqd.log().contains("accept failed") {
        assert!(
            Instant::now() < deadline,
            "nsqd never ran out of descriptors: {} open",
            open_fds(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Failing accepts back off instead of spinning: a few dozen log lines a second, not
    // thousands.
    let failures = || nsqd.log().matches("accept failed").count();
    let before = failures();
    std::thread::sleep(Duration::from_secs(1));
    let per_second = failures() - before;
    println!("with {CLIENTS} connections against a limit of {LIMIT} files: {per_second} failed accepts logged in 1 s");
    assert!(
        per_second < 200,
        "nsqd retries accept in a tight loop: {per_second} failures in 1 s"
    );

    // Once the flood is gone, everything works again.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(15);
    while open_fds(pid) > 100 || http_get(&nsqd.url("/ping")).status != 200 {
        assert!(
            Instant::now() < deadline,
            "nsqd did not recover: {} fds open",
            open_fds(pid)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let consumer = consume(&nsqd, "after", "c", 10, 20, Duration::from_secs(15));
    let mut publisher = RawClient::connect(nsqd.tcp);
    for i in 0..20 {
        publisher.publish("after", format!("after {i}").as_bytes());
    }
    assert_eq!(consumer.join().expect("consumer").len(), 20);
}

/// Sends `signal` (a `kill` name) to `pid`.
fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Resumes a stopped nsqd when dropped, so a failing assertion cannot leave it stopped.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        send_signal(self.0, "CONT");
    }
}

#[test]
fn a_connection_flood_waits_in_the_accept_backlog() {
    // While nsqd is stopped the kernel still completes handshakes, up to the listen backlog;
    // past it, SYNs are dropped and clients wait out retransmits. NSQ (Go) asks for the
    // system's maximum (net.core.somaxconn), and so must we (128 was too small).
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(128);
    let flood = somaxconn.min(1000);
    if let Err(why) = raise_fd_limit(2 * flood as u64 + 1024) {
        println!("skipping: cannot open {flood} connections here ({why})");
        return;
    }
    let nsqd = Nsqd::start(&[]);
    send_signal(nsqd.pid(), "STOP");
    let resume = Resume(nsqd.pid());
    let mut clients = Vec::with_capacity(flood);
    for i in 0..flood {
        let connected = TcpStream::connect_timeout(&nsqd.tcp, Duration::from_secs(3));
        let s = connected.unwrap_or_else(|e| {
            panic!("connection {i} of {flood} found no room in the accept backlog: {e}")
        });
        clients.push(s);
    }
    drop(resume);
    // Every queued connection is then served.
    for (i, s) in clients.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(b"  V2PUB flood\n\x00\x00\x00\x01x")
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
    }
    for (i, s) in clients.iter_mut().enumerate() {
        let mut frame = [0u8; 10];
        std::io::Read::read_exact(s, &mut frame).unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(&frame[4..], b"\x00\x00\x00\x00OK", "client {i}");
    }
    let stats = http_get(&nsqd.url("/stats?format=json&topic=flood")).json();
    assert_eq!(
        stats["topics"][0]["message_count"].as_u64(),
        Some(flood as u64)
    );
}
