//! [`SyncJournalFs`]: the real file system, plus a journal line for every fsync, so a test can
//! emulate a power cut on a real process: after `kill -9`, cut every segment and index file
//! back to the length it had at its last fsync (and drop files never fsynced). Test-only in
//! spirit; nsqd enables it through an environment variable, never by default.
//!
//! The length journaled is the end of the data written, not of the file: zeros the log writes
//! ahead of its records (prepared space, `log/prepare.rs`) do not count, so cutting a file
//! back drops the records a power cut could lose even when they went into prepared space.

use super::{DirEntry, FileSystem, FsFile, FsLock, OpenMode, RealFs};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// [`RealFs`] that appends `<length>\t<path>` to a journal file after each successful fsync.
#[derive(Debug, Clone)]
pub struct SyncJournalFs {
    journal: Arc<Mutex<File>>,
}

impl SyncJournalFs {
    /// Journals into `path` (appending; created if missing).
    pub fn new(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(SyncJournalFs {
            journal: Arc::new(Mutex::new(file)),
        })
    }
}

#[derive(Debug)]
struct JournaledFile {
    inner: Arc<dyn FsFile>,
    /// End of the last write that was not all zeros (cut back by `set_len`).
    data_end: AtomicU64,
    /// The longest length an fsync has covered (cut back by `set_len`). A flush's fsync can
    /// run beside the writer thread's and finish after it; the journal records this, so a
    /// later line never undoes an earlier, longer one.
    synced_end: AtomicU64,
    path: PathBuf,
    journal: Arc<Mutex<File>>,
}

impl FsFile for JournaledFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }

    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(data, pos)?;
        if data.iter().any(|&b| b != 0) {
            self.data_end
                .fetch_max(pos + data.len() as u64, Ordering::AcqRel);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        self.data_end.fetch_min(len, Ordering::AcqRel);
        self.synced_end.fetch_min(len, Ordering::AcqRel);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn sync_data(&self) -> io::Result<()> {
        // Measure before syncing: bytes written concurrently after this point are not covered.
        let len = self.inner.len()?.min(self.data_end.load(Ordering::Acquire));
        self.inner.sync_data()?;
        let len = self.synced_end.fetch_max(len, Ordering::AcqRel).max(len);
        let mut journal = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(journal, "{len}\t{}", self.path.display())
    }
}

/// The file's length without the zero bytes at its end.
fn end_of_data(file: &dyn FsFile) -> io::Result<u64> {
    let mut end = file.len()?;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let want = (end as usize).min(buf.len());
        let start = end - want as u64;
        file.read_exact_at(&mut buf[..want], start)?;
        match buf[..want].iter().rposition(|&b| b != 0) {
            Some(i) => return Ok(start + i as u64 + 1),
            None => end = start,
        }
    }
    Ok(0)
}

impl FileSystem for SyncJournalFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let inner = RealFs.open(path, mode)?;
        let data_end = AtomicU64::new(end_of_data(&*inner)?);
        Ok(Arc::new(JournaledFile {
            inner,
            data_end,
            synced_end: AtomicU64::new(0),
            path: path.to_path_buf(),
            journal: self.journal.clone(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        RealFs.read_dir(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        RealFs.exists(path)
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn FsLock>> {
        RealFs.lock_exclusive(path)
    }
}
