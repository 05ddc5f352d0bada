//! Looking at an nsqd data directory from a test: its segment files and their offsets.

use std::path::{Path, PathBuf};

/// The segment files (`*.log`) of `topic` under the data directory `data`, oldest first.
pub fn segment_files(data: &Path, topic: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(data.join("topics").join(topic))
        .expect("topic dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    out.sort();
    out
}

/// The first offset a segment holds, from its file name.
pub fn first_offset(segment: &Path) -> usize {
    segment
        .file_stem()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .expect("segment named by offset")
}
