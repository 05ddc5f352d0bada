//! A data directory (on the simulated file system) whose segment, index or cursor file holds
//! damaged or arbitrary bytes: opening the engine and reading everything must never panic,
//! and after `repair` the directory must verify clean and open.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nsq_engine::check::{repair, verify};
use nsq_engine::fs::{FileSystem, OpenMode, SimFs};
use nsq_engine::{ChannelStart, Engine, ManualClock, Options, SyncPolicy};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const DATA: &str = "/data";
const TOPIC_DIR: &str = "/data/topics/t";

fn options(fs: &SimFs) -> Options {
    Options {
        fs: Arc::new(fs.clone()),
        clock: Arc::new(ManualClock::new(1_000_000_000_000)),
        max_bytes_per_file: 1024,
        index_interval_bytes: 128,
        sync: SyncPolicy::always(),
        ..Options::default()
    }
}

/// A sound directory: topic `t` with channel `c`, 40 messages over several segments.
fn template() -> SimFs {
    let fs = SimFs::new();
    let engine = Engine::open(DATA, options(&fs)).expect("open a fresh engine");
    engine
        .create_channel("t", "c", ChannelStart::Default)
        .expect("channel");
    let topic = engine.topic("t").expect("topic");
    for i in 0..40 {
        topic
            .publish(&[format!("message {i} {}", "x".repeat(i))], 0)
            .expect("publish");
    }
    engine.close().expect("close");
    fs
}

fn files(fs: &SimFs, dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs
        .read_dir(Path::new(dir))
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.name.ends_with(suffix))
        .map(|e| Path::new(dir).join(e.name))
        .collect();
    out.sort();
    out
}

fn write(fs: &SimFs, path: &Path, data: &[u8]) {
    let file = fs
        .open(path, OpenMode::CreateTruncate)
        .expect("open for writing");
    file.write_all_at(data, 0).expect("write");
}

/// Opens the engine and reads the whole channel; errors are fine, panics are not.
fn open_and_read(fs: &SimFs) -> Option<usize> {
    let engine = Engine::open(DATA, options(fs)).ok()?;
    let mut delivered = 0;
    if let Some(channel) = engine.channel("t", "c") {
        let mut out = Vec::new();
        // Bounded: the template holds 40 messages, damage cannot make more than a few more.
        for _ in 0..100 {
            out.clear();
            match channel.take(engine.now(), 1, 60_000_000_000, 16, &mut out) {
                Ok(0) | Err(_) => break,
                Ok(n) => delivered += n,
            }
            for d in &out {
                let _ = channel.finish(1, &d.id);
            }
        }
    }
    let _ = engine.close();
    Some(delivered)
}

fuzz_target!(|data: &[u8]| {
    let [mode, which, hi, lo, rest @ ..] = data else {
        return;
    };
    let fs = template();
    let logs = files(&fs, TOPIC_DIR, ".log");
    let indexes = files(&fs, TOPIC_DIR, ".idx");
    let pick = |list: &[PathBuf]| list[usize::from(*which) % list.len()].clone();
    let at = usize::from(u16::from_be_bytes([*hi, *lo]));
    match mode % 6 {
        // A segment replaced by arbitrary bytes.
        0 => write(&fs, &pick(&logs), rest),
        // A segment with some bytes overwritten (possibly past its end).
        1 => {
            let path = pick(&logs);
            let mut bytes = fs.file_data(&path).unwrap_or_default();
            let at = at % (bytes.len() + 1);
            let end = at + rest.len();
            if end > bytes.len() {
                bytes.resize(end, 0);
            }
            bytes[at..end].copy_from_slice(rest);
            write(&fs, &path, &bytes);
        }
        // A segment cut short, arbitrary bytes appended.
        2 => {
            let path = pick(&logs);
            let mut bytes = fs.file_data(&path).unwrap_or_default();
            bytes.truncate(at % (bytes.len() + 1));
            bytes.extend_from_slice(rest);
            write(&fs, &path, &bytes);
        }
        // An index file replaced.
        3 => write(&fs, &pick(&indexes), rest),
        // The cursor file replaced.
        4 => write(&fs, Path::new("/data/topics/t/channels/c.cursor"), rest),
        // A segment removed, another overwritten with bytes from the rest.
        _ => {
            let path = pick(&logs);
            let _ = fs.remove_file(&path);
            let other = &logs[(usize::from(*which) + 1) % logs.len()];
            if other != &path && !rest.is_empty() {
                let mut bytes = fs.file_data(other).unwrap_or_default();
                let at = at % (bytes.len() + 1);
                let end = (at + rest.len()).min(bytes.len());
                bytes[at..end].copy_from_slice(&rest[..end - at]);
                write(&fs, other, &bytes);
            }
        }
    }
    let _ = open_and_read(&fs);
    let _ = verify(&fs, Path::new(DATA), None, &mut |_| {});
    // Repair may refuse (e.g. a meta it cannot rebuild); when it succeeds, the promise is
    // that verify then passes and the engine opens.
    if repair(&fs, Path::new(DATA), None, false, &mut |_| {}).is_ok() {
        let report = verify(&fs, Path::new(DATA), None, &mut |_| {}).expect("verify after repair");
        assert!(
            report.is_sound(),
            "verify after repair found {:?}",
            report.findings
        );
        assert!(
            open_and_read(&fs).is_some(),
            "the engine does not open after repair"
        );
    }
});
