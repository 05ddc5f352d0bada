//! One segment of a topic log as the running engine holds it.

use crate::error::{Error, IoContext, Result};
use crate::fs::{FileSystem, FsFile, OpenMode};
use crate::index::IndexEntry;
use crate::record::RECORD_HEADER_LEN;
use crate::segment::HEADER_LEN;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// A segment: sealed (immutable) or the active one being appended. Both are read with
/// positional reads (`pread`), never through a memory map: a file truncated behind nsqd's back
/// then yields a short read, which is reported, instead of a SIGBUS that kills the process.
#[derive(Debug)]
pub(crate) struct Segment {
    pub first_offset: u64,
    pub path: PathBuf,
    pub index_path: PathBuf,
    /// Open handle: the writer's while the segment is active (kept once it is sealed), or one
    /// opened read-only on demand; dropped when a reader leaves a sealed segment, so caught-up
    /// channels hold no descriptors of old segments.
    file: RwLock<Option<Arc<dyn FsFile>>>,
    sealed: AtomicBool,
    /// Bytes readers may see (complete records, and with strict sync only fsynced ones).
    visible_len: AtomicU64,
    /// One past the last offset readers may see in this segment.
    end_offset: AtomicU64,
    /// In-memory copy of the sparse index.
    pub index: RwLock<Vec<IndexEntry>>,
    first_timestamp: OnceLock<i64>,
}

impl Segment {
    pub fn new_active(
        first_offset: u64,
        path: PathBuf,
        index_path: PathBuf,
        file: Arc<dyn FsFile>,
        visible_len: u64,
        end_offset: u64,
        index: Vec<IndexEntry>,
    ) -> Self {
        Segment {
            first_offset,
            path,
            index_path,
            file: RwLock::new(Some(file)),
            sealed: AtomicBool::new(false),
            visible_len: AtomicU64::new(visible_len),
            end_offset: AtomicU64::new(end_offset),
            index: RwLock::new(index),
            first_timestamp: OnceLock::new(),
        }
    }

    pub fn new_sealed(
        first_offset: u64,
        path: PathBuf,
        index_path: PathBuf,
        len: u64,
        end_offset: u64,
        index: Vec<IndexEntry>,
    ) -> Self {
        Segment {
            first_offset,
            path,
            index_path,
            file: RwLock::new(None),
            sealed: AtomicBool::new(true),
            visible_len: AtomicU64::new(len),
            end_offset: AtomicU64::new(end_offset),
            index: RwLock::new(index),
            first_timestamp: OnceLock::new(),
        }
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    pub fn visible_len(&self) -> u64 {
        self.visible_len.load(Ordering::Acquire)
    }

    pub fn end_offset(&self) -> u64 {
        self.end_offset.load(Ordering::Acquire)
    }

    /// Makes more of the active segment visible to readers.
    pub fn publish(&self, len: u64, end_offset: u64) {
        self.visible_len.fetch_max(len, Ordering::AcqRel);
        self.end_offset.fetch_max(end_offset, Ordering::AcqRel);
    }

    /// Marks the segment immutable (its visible length and end offset are final).
    pub fn seal(&self, len: u64, end_offset: u64) {
        self.publish(len, end_offset);
        self.sealed.store(true, Ordering::Release);
    }

    /// Closes the handle of a sealed segment a reader has finished with; a later read opens
    /// it again. The active segment keeps the writer's handle.
    pub fn release_handle(&self) {
        if self.is_sealed() {
            *self.file.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    fn handle(&self, fs: &dyn FileSystem) -> Result<Arc<dyn FsFile>> {
        if let Some(file) = &*self.file.read().unwrap_or_else(|e| e.into_inner()) {
            return Ok(file.clone());
        }
        let opened = fs.open(&self.path, OpenMode::Read).at(&self.path)?;
        let mut slot = self.file.write().unwrap_or_else(|e| e.into_inner());
        Ok(slot.get_or_insert(opened).clone())
    }

    pub fn index_snapshot_floor_by_offset(&self, offset: u64) -> Option<IndexEntry> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        crate::index::floor_by_offset(&index, offset).copied()
    }

    pub fn index_snapshot_floor_by_time(&self, timestamp: i64) -> Option<IndexEntry> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        crate::index::floor_by_time(&index, timestamp).copied()
    }

    /// Bytes `[pos, pos + want)` of the segment, clamped to what is visible, read with one
    /// positional read. A file shorter than what readers may see (truncated behind nsqd's
    /// back) fails with [`Error::Shrunk`].
    pub fn read_bytes(&self, fs: &dyn FileSystem, pos: u64, want: usize) -> Result<Bytes> {
        let visible = self.visible_len();
        if pos >= visible {
            return Ok(Bytes::new());
        }
        let want = want.min((visible - pos) as usize);
        let file = self.handle(fs)?;
        let mut buf = vec![0u8; want];
        match file.read_exact_at(&mut buf, pos) {
            Ok(()) => Ok(Bytes::from(buf)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Shrunk {
                path: self.path.clone(),
                found: file.len().at(&self.path)?,
                written: visible,
            }),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    /// Publish time of the segment's first record (None while it has none).
    pub fn first_timestamp(&self, fs: &dyn FileSystem) -> Result<Option<i64>> {
        if let Some(t) = self.first_timestamp.get() {
            return Ok(Some(*t));
        }
        if self.visible_len() <= HEADER_LEN {
            return Ok(None);
        }
        let bytes = self.read_bytes(fs, HEADER_LEN, RECORD_HEADER_LEN)?;
        if bytes.len() < RECORD_HEADER_LEN {
            return Err(Error::corrupt(
                &self.path,
                HEADER_LEN,
                "first record truncated",
            ));
        }
        // Only the header is read, so the checksum is not checked here; readers check it.
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&bytes[32..40]);
        let ts = i64::from_be_bytes(ts);
        Ok(Some(*self.first_timestamp.get_or_init(|| ts)))
    }
}
