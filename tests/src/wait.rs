//! Bounded waits for a condition the test polls (a stats figure, a lookupd listing).

use crate::{http_get, Nsqd, Nsqlookupd};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Polls `done` every 25 ms until it holds; fails the test naming `what` after `limit`.
pub fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// [`until`] for async tests: sleeps on the runtime instead of blocking it.
pub async fn until_async(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `lookupd` lists exactly `nsqds` (by TCP port) as producers of `topic`.
pub fn lookupd_lists(lookupd: &Nsqlookupd, topic: &str, nsqds: &[&Nsqd], limit: Duration) {
    let want: BTreeSet<u64> = nsqds.iter().map(|n| u64::from(n.tcp.port())).collect();
    let mut have = BTreeSet::new();
    until(
        &format!("lookupd to list {want:?} for {topic}"),
        limit,
        || {
            let reply = http_get(&lookupd.url(&format!("/lookup?topic={topic}")));
            have = if reply.status == 200 {
                reply.json()["producers"]
                    .as_array()
                    .map(|ps| ps.iter().filter_map(|p| p["tcp_port"].as_u64()).collect())
                    .unwrap_or_default()
            } else {
                BTreeSet::new()
            };
            have == want
        },
    );
}
