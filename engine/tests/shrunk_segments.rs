//! A segment file truncated behind the running engine's back: reading it reports
//! `Error::Shrunk` (no fault, no garbage), the topic refuses appends from then on rather than
//! acknowledge into a file it no longer trusts, other topics carry on, and after a reopen no
//! append that was acknowledged after the truncation is missing.

mod common;

use common::*;
use nsq_engine::fs::{FileSystem, OpenMode, SimFs};
use nsq_engine::record::record_len;
use nsq_engine::{Engine, Error, Options, SyncPolicy};
use std::path::Path;

/// Cuts the file at `path` to `len` bytes, as `truncate(1)` from another process would.
fn truncate(fs: &SimFs, path: &Path, len: u64) {
    let file = fs.open(path, OpenMode::ReadWrite).expect("open");
    file.set_len(len).expect("truncate");
}

fn options(fs: &SimFs, clock: &std::sync::Arc<nsq_engine::ManualClock>, strict: bool) -> Options {
    let mut options = sim_options(fs, clock);
    if !strict {
        options.sync = SyncPolicy {
            every: 10_000,
            ..options.sync
        };
    }
    options
}

fn body(i: usize) -> String {
    format!("message-{i:04}-{}", "b".repeat(80))
}

#[test]
fn a_sealed_segment_truncated_under_the_engine_fails_its_topic_only() {
    for strict in [true, false] {
        let (fs, clock) = sim();
        let engine = Engine::open("/data", options(&fs, &clock, strict)).expect("open");
        let t = engine.create_topic("t").expect("topic");
        let u = engine.create_topic("u").expect("topic");
        for i in 0..100 {
            t.publish(&[body(i)], 0).expect("publish t");
            u.publish(&[body(i)], 0).expect("publish u");
        }
        let segments = segment_files(&fs, "t");
        assert!(segments.len() >= 3, "the workload should roll segments");
        let victim = segments[1].clone();
        truncate(&fs, &victim, 100);

        match read_log(&engine, "t") {
            Err(Error::Shrunk {
                path,
                found,
                written,
            }) => {
                assert_eq!(path, victim);
                assert_eq!(found, 100);
                assert!(written > 100 + record_len(body(0).len()) as u64);
            }
            other => panic!("strict={strict}: expected Error::Shrunk, got {other:?}"),
        }
        let refused = t
            .publish(&["after"], 0)
            .expect_err("the topic refuses appends");
        assert!(
            matches!(&refused, Error::Poisoned { cause, .. } if cause.contains(&victim.display().to_string())),
            "{refused}"
        );
        // The other topic is untouched: it reads whole and takes appends.
        assert_eq!(read_log(&engine, "u").expect("u reads").len(), 100);
        u.publish(&["after"], 0).expect("u still takes appends");
        assert_eq!(read_log(&engine, "u").expect("u reads").len(), 101);
    }
}

#[test]
fn the_active_segment_truncated_under_the_engine_takes_no_more_appends() {
    for strict in [true, false] {
        let (fs, clock) = sim();
        let engine = Engine::open("/data", options(&fs, &clock, strict)).expect("open");
        let t = engine.create_topic("t").expect("topic");
        let u = engine.create_topic("u").expect("topic");
        for i in 0..10 {
            t.publish(&[body(i)], 0).expect("publish");
        }
        let active = segment_files(&fs, "t").pop().expect("a segment");
        // The end of what was written (the file may be allocated further): cut into the last
        // record.
        let written = 32 + 10 * record_len(body(0).len()) as u64;
        truncate(&fs, &active, written - 50);

        let first = t.publish(&["after the cut"], 0).expect_err("refused");
        assert!(
            matches!(&first, Error::Shrunk { path, found, written: w } if *path == active && *found == written - 50 && *w == written),
            "strict={strict}: {first}"
        );
        let second = t.publish(&["again"], 0).expect_err("still refused");
        assert!(matches!(second, Error::Poisoned { .. }), "{second}");
        u.publish(&["fine"], 0)
            .expect("the other topic takes appends");
        // Closing writes what it can; with unsynced appends it reports the failed topic.
        let closed = engine.close();
        assert!(strict || closed.is_err(), "{closed:?}");

        // Reopening recovers the file as any torn tail: the cut record is gone, every record
        // before it is there, and no append acknowledged after the cut existed to be lost.
        let engine = Engine::open("/data", options(&fs, &clock, strict)).expect("reopen");
        let bodies: Vec<Vec<u8>> = read_log(&engine, "t")
            .expect("reads")
            .into_iter()
            .map(|m| m.body.to_vec())
            .collect();
        let expected: Vec<Vec<u8>> = (0..9).map(|i| body(i).into_bytes()).collect();
        assert_eq!(bodies, expected, "strict={strict}");
        let t = engine.topic("t").expect("topic");
        assert_eq!(
            t.publish(&["next"], 0)
                .expect("appends resume")
                .first_offset,
            9
        );
        assert_eq!(read_log(&engine, "u").expect("u reads").len(), 1);
    }
}
