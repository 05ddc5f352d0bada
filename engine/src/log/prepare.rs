//! Preparing the active segment ahead of the writer under a strict sync policy: the bytes
//! past the last record are written with zeros and fsynced *before* records go there, so the
//! fsync that acknowledges a group has only data pages to flush. Appending past the file's
//! end makes every fsync also journal the new file size and extents, which measured here
//! (ext4) costs about twice as much per fsync as overwriting prepared space. `fallocate`
//! alone does not help: it leaves unwritten extents whose first write still journals.
//!
//! The log's end is its last valid record, never the file length: a run of zero bytes from
//! the end of the last record to the end of the file is prepared space (see FORMAT.md).

use super::append::Writer;
use super::LogCore;
use crate::error::{IoContext, Result};
use crate::fs::FsFile;
use std::io;

/// Bytes prepared at a time.
pub(super) const PREPARE_CHUNK: u64 = 256 * 1024;

/// Between groups with nothing queued, the writer thread prepares another chunk once less than
/// this much prepared space is left.
const IDLE_LOW_WATER: u64 = 128 * 1024;

/// Under sustained load the queue is never empty between groups, so waiting for an idle gap
/// would let prepared space run out and every group extend the file (each fsync then also
/// writes the inode: about twice its cost). Once less than this is left, the writer prepares
/// even with groups queued: one chunk's write and fsync delays one group, instead of every
/// fsync paying for a size change.
const BUSY_LOW_WATER: u64 = 32 * 1024;

/// Bytes read at a time when checking for a zero tail.
const ZERO_CHECK_CHUNK: usize = 64 * 1024;

impl LogCore {
    /// Under a strict sync policy, writes and fsyncs the next chunk of zeros past the last
    /// record when little prepared space is left in the active segment (and the segment is
    /// not about to roll). Called by the writer thread between groups: `idle` when nothing is
    /// queued, so the cost usually falls in a gap rather than on an acknowledgement; with
    /// groups queued only when space is nearly used up (see [`BUSY_LOW_WATER`]).
    /// A failure here is harmless (appends then extend the file as without preparation), so
    /// it only logs.
    pub(super) fn prepare_ahead(&self, idle: bool) {
        let low_water = if idle { IDLE_LOW_WATER } else { BUSY_LOW_WATER };
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.poisoned(&w).is_some() || w.prepared_end.saturating_sub(w.pos) >= low_water {
            return;
        }
        // Records past `max_bytes_per_file` roll the segment; space there would be cut off.
        let limit = self.config.max_bytes_per_file;
        let from = w.prepared_end.max(w.pos);
        if from >= limit {
            return;
        }
        let to = (from + PREPARE_CHUNK).min(limit);
        // Zeros written past a file that shrank would hide the shrink from the next append.
        if self.check_not_shrunk(&w).is_err() {
            return;
        }
        if let Err(e) = prepare(&*w.file, from, to) {
            tracing::warn!(
                topic = %self.topic,
                segment = %w.active.path.display(),
                error = %e,
                "preparing segment space failed; appends extend the file instead"
            );
            return;
        }
        w.prepared_end = to;
    }

    /// Cuts prepared space off the active segment (before sealing it, or after a failed
    /// write), so a sealed segment ends exactly at its last record.
    pub(super) fn cut_prepared(&self, w: &mut Writer) -> Result<()> {
        if w.prepared_end > w.pos {
            w.file.set_len(w.pos).at(&w.active.path)?;
        }
        w.prepared_end = w.pos;
        Ok(())
    }
}

/// Writes zeros over `[from, to)` of `file` and fsyncs them.
fn prepare(file: &dyn FsFile, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; (to - from) as usize];
    file.write_all_at(&zeros, from)?;
    file.sync_data()
}

/// Whether every byte of `file` in `[from, to)` is zero: the prepared, unused tail of a
/// segment (an empty range counts as one).
pub(crate) fn is_zero_tail(file: &dyn FsFile, from: u64, to: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; ZERO_CHECK_CHUNK];
    let mut pos = from;
    while pos < to {
        let want = ((to - pos) as usize).min(buf.len());
        let chunk = &mut buf[..want];
        file.read_exact_at(chunk, pos)?;
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += want as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FileSystem, OpenMode, RealFs};

    #[test]
    fn zero_tail_is_seen_only_when_every_byte_is_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = RealFs.open(&path, OpenMode::CreateNew).expect("open");
        file.write_all_at(b"abc", 0).expect("write");
        prepare(&*file, 3, 200_000).expect("prepare");
        assert_eq!(file.len().expect("len"), 200_000);
        assert!(is_zero_tail(&*file, 3, 200_000).expect("check"));
        assert!(is_zero_tail(&*file, 200_000, 200_000).expect("check"));
        assert!(!is_zero_tail(&*file, 0, 200_000).expect("check"));
        file.write_all_at(b"x", 150_000).expect("write");
        assert!(!is_zero_tail(&*file, 3, 200_000).expect("check"));
    }
}
