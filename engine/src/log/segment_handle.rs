//! One segment of a topic log as the running engine holds it.

use crate::error::{Error, IoContext, Result};
use crate::fs::{FileSystem, FsFile};
use crate::index::IndexEntry;
use crate::record::RECORD_HEADER_LEN;
use crate::segment::HEADER_LEN;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// A segment: sealed (immutable, read through a memory map) or the active one being appended.
#[derive(Debug)]
pub(crate) struct Segment {
    pub first_offset: u64,
    pub path: PathBuf,
    pub index_path: PathBuf,
    /// Open handle while the segment is active; dropped when it is sealed.
    file: RwLock<Option<Arc<dyn FsFile>>>,
    mapped: OnceLock<Bytes>,
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
            mapped: OnceLock::new(),
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
            mapped: OnceLock::new(),
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

    /// Marks the segment immutable; readers switch to the memory map.
    pub fn seal(&self, len: u64, end_offset: u64) {
        self.publish(len, end_offset);
        self.sealed.store(true, Ordering::Release);
        *self.file.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn index_snapshot_floor_by_offset(&self, offset: u64) -> Option<IndexEntry> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        crate::index::floor_by_offset(&index, offset).copied()
    }

    pub fn index_snapshot_floor_by_time(&self, timestamp: i64) -> Option<IndexEntry> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        crate::index::floor_by_time(&index, timestamp).copied()
    }

    /// Bytes `[pos, pos + want)` of the segment, clamped to what is visible. Sealed segments
    /// are served from the memory map without copying; the active one with a positional read.
    pub fn read_bytes(&self, fs: &dyn FileSystem, pos: u64, want: usize) -> Result<Bytes> {
        let visible = self.visible_len();
        if pos >= visible {
            return Ok(Bytes::new());
        }
        let want = want.min((visible - pos) as usize);
        if !self.is_sealed() {
            let handle = self.file.read().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(file) = handle {
                let mut buf = vec![0u8; want];
                file.read_exact_at(&mut buf, pos).at(&self.path)?;
                return Ok(Bytes::from(buf));
            }
        }
        let map = self.map(fs)?;
        let end = (pos as usize).saturating_add(want).min(map.len());
        if (pos as usize) > end {
            return Err(Error::corrupt(
                &self.path,
                pos,
                "segment file is shorter than recorded",
            ));
        }
        Ok(map.slice(pos as usize..end))
    }

    fn map(&self, fs: &dyn FileSystem) -> Result<Bytes> {
        if let Some(m) = self.mapped.get() {
            return Ok(m.clone());
        }
        let m = fs.map(&self.path).at(&self.path)?;
        Ok(self.mapped.get_or_init(|| m).clone())
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
