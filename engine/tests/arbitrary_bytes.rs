//! The fuzz targets' properties in the normal test suite (proptest, bounded): the segment
//! scanner and the on-disk decoders never panic on arbitrary bytes, and a data directory with a
//! damaged or arbitrary segment, index or cursor file opens (or refuses) without panicking,
//! and verifies sound after repair. `fuzz/` explores the same properties far longer.

mod common;

use common::*;
use nsq_engine::check::scan::scan_segment;
use nsq_engine::check::{repair, verify};
use nsq_engine::cursor::CursorFile;
use nsq_engine::fs::{FileSystem, OpenMode, SimFs};
use nsq_engine::{index, record, segment, ChannelStart, Engine, MessageId};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const TOPIC_DIR: &str = "/data/topics/t";

/// A sound directory: topic `t` with channel `c`, 30 messages over several segments.
fn template() -> SimFs {
    let (fs, clock) = sim();
    let engine = open(&fs, &clock);
    engine
        .create_channel("t", "c", ChannelStart::Default)
        .expect("channel");
    let topic = engine.topic("t").expect("topic");
    for i in 0..30 {
        topic
            .publish(&[format!("message {i} {}", "x".repeat(i * 30))], 0)
            .expect("publish");
    }
    engine.close().expect("close");
    fs
}

fn files(fs: &SimFs, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs
        .read_dir(Path::new(TOPIC_DIR))
        .expect("topic dir")
        .into_iter()
        .filter(|e| e.name.ends_with(suffix))
        .map(|e| Path::new(TOPIC_DIR).join(e.name))
        .collect();
    out.sort();
    out
}

fn write(fs: &SimFs, path: &Path, data: &[u8]) {
    let file = fs.open(path, OpenMode::CreateTruncate).expect("open");
    file.write_all_at(data, 0).expect("write");
}

/// Opens and drains channel `c`; `None` when the engine refuses to open.
fn open_and_drain(fs: &SimFs) -> Option<usize> {
    let (_, clock) = sim();
    let engine = Engine::open("/data", sim_options(fs, &clock)).ok()?;
    let mut delivered = 0;
    if let Some(channel) = engine.channel("t", "c") {
        let mut out = Vec::new();
        for _ in 0..100 {
            out.clear();
            match channel.take(engine.now(), 1, 60 * SEC, 16, &mut out) {
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

/// How a file of the template is damaged.
#[derive(Debug, Clone)]
enum Damage {
    ReplaceSegment(usize, Vec<u8>),
    Overwrite(usize, usize, Vec<u8>),
    Truncate(usize, usize),
    ReplaceIndex(usize, Vec<u8>),
    ReplaceCursor(Vec<u8>),
    RemoveSegment(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        (any::<usize>(), bytes.clone()).prop_map(|(i, b)| Damage::ReplaceSegment(i, b)),
        (any::<usize>(), any::<usize>(), bytes.clone())
            .prop_map(|(i, at, b)| Damage::Overwrite(i, at, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, at)| Damage::Truncate(i, at)),
        (any::<usize>(), bytes.clone()).prop_map(|(i, b)| Damage::ReplaceIndex(i, b)),
        bytes.prop_map(Damage::ReplaceCursor),
        any::<usize>().prop_map(Damage::RemoveSegment),
    ]
}

fn apply(fs: &SimFs, damage: &Damage) {
    let logs = files(fs, ".log");
    let indexes = files(fs, ".idx");
    let pick = |list: &[PathBuf], i: usize| list[i % list.len()].clone();
    match damage {
        Damage::ReplaceSegment(i, bytes) => write(fs, &pick(&logs, *i), bytes),
        Damage::Overwrite(i, at, bytes) => {
            let path = pick(&logs, *i);
            let mut data = fs.file_data(&path).expect("segment");
            let at = at % (data.len() + 1);
            let end = at + bytes.len();
            if end > data.len() {
                data.resize(end, 0);
            }
            data[at..end].copy_from_slice(bytes);
            write(fs, &path, &data);
        }
        Damage::Truncate(i, at) => {
            let path = pick(&logs, *i);
            let mut data = fs.file_data(&path).expect("segment");
            data.truncate(at % (data.len() + 1));
            write(fs, &path, &data);
        }
        Damage::ReplaceIndex(i, bytes) => write(fs, &pick(&indexes, *i), bytes),
        Damage::ReplaceCursor(bytes) => {
            write(fs, &Path::new(TOPIC_DIR).join("channels/c.cursor"), bytes)
        }
        Damage::RemoveSegment(i) => fs.remove_file(&pick(&logs, *i)).expect("remove"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scanner_and_decoders_take_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        first in prop_oneof![0u64..100, Just(u64::MAX), any::<u64>()],
    ) {
        let scan = scan_segment(&bytes, first);
        let len = bytes.len() as u64;
        for r in &scan.records {
            prop_assert!(r.position + r.len <= len);
        }
        for d in &scan.damage {
            prop_assert!(d.start < d.end && d.end <= len);
        }
        let path = Path::new("/x");
        let _ = record::decode(&bytes::Bytes::from(bytes.clone()), 4096);
        let _ = segment::decode_header(path, &bytes);
        let _ = index::decode_all(&bytes);
        if let Ok(cursor) = CursorFile::decode(path, &bytes) {
            prop_assert_eq!(CursorFile::decode(path, &cursor.encode()).ok(), Some(cursor));
        }
    }

    #[test]
    fn a_valid_segment_with_arbitrary_tail_scans_its_records(
        first in prop_oneof![0u64..100, Just(u64::MAX - 3)],
        tail in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut bytes = segment::encode_header(first);
        for i in 0..3 {
            let offset = first + i;
            record::encode(&mut bytes, offset, &MessageId::for_offset(1, offset), 1, 0, b"body");
        }
        bytes.extend_from_slice(&tail);
        let scan = scan_segment(&bytes, first);
        prop_assert!(scan.records.len() >= 3);
        prop_assert_eq!(scan.records[0].offset, first);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_directory_opens_or_refuses_and_repair_makes_it_sound(damage in damage()) {
        let fs = template();
        apply(&fs, &damage);
        let _ = open_and_drain(&fs);
        let _ = verify(&fs, Path::new("/data"), None, &mut |_| {});
        if repair(&fs, Path::new("/data"), None, false, &mut |_| {}).is_ok() {
            let report = verify(&fs, Path::new("/data"), None, &mut |_| {}).expect("verify");
            prop_assert!(report.is_sound(), "after repair: {:?}", report.findings);
            prop_assert!(open_and_drain(&fs).is_some(), "does not open after repair");
        }
    }
}

#[test]
fn the_undamaged_template_is_sound_and_delivers_everything() {
    let fs = template();
    assert!(
        files(&fs, ".log").len() > 2,
        "the template should span segments"
    );
    let report = verify(&fs, Path::new("/data"), None, &mut |_| {}).expect("verify");
    assert!(report.is_sound(), "{:?}", report.findings);
    assert_eq!(open_and_drain(&fs), Some(30));
}
