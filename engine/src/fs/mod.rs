//! The file-system layer every byte of the engine goes through.
//!
//! The engine never calls `std::fs` directly: it talks to a [`FileSystem`], so tests can swap
//! the real one ([`RealFs`]) for [`SimFs`], an in-memory file system that remembers what was
//! fsynced, can simulate a power cut (everything not fsynced is thrown away) and can inject
//! write, fsync and out-of-space errors.

mod journal;
mod real;
mod sim;

pub use journal::SyncJournalFs;
pub use real::RealFs;
pub use sim::{SimFaults, SimFs};

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How [`FileSystem::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading only.
    Read,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Create a new file for reading and writing; fails if it already exists.
    CreateNew,
    /// Create the file or truncate it to zero length, for reading and writing.
    CreateTruncate,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's file name (not the full path).
    pub name: String,
    /// Whether the entry is a directory.
    pub is_dir: bool,
}

/// An open file. All I/O is positional, so readers and one writer can share a handle.
// `len` is fallible I/O, not a container size, so an `is_empty` companion would add nothing.
#[allow(clippy::len_without_is_empty)]
pub trait FsFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `data` at `pos`, extending the file if needed.
    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `pos`, failing with `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, pos)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file is shorter than expected",
                ));
            }
            buf = &mut buf[n..];
            pos += n as u64;
        }
        Ok(())
    }
}

/// A held exclusive lock on a file; released when dropped.
pub trait FsLock: Send + Sync + Debug {}

/// The operations the engine needs from a file system.
pub trait FileSystem: Send + Sync + Debug {
    /// Opens (or creates) the file at `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>>;
    /// Creates a directory and all its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Lists a directory.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything below it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Renames a file or directory, replacing a file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals, renames) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether something exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Takes an exclusive, non-blocking lock on the file at `path` (created if missing).
    /// Fails with `WouldBlock` when another holder has it.
    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn FsLock>>;

    /// Creates a directory and its missing parents, and makes each new entry durable by
    /// fsyncing the directory that holds it: a directory whose files a promise depends on
    /// must not vanish in a power cut.
    fn create_dir_durable(&self, path: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(path);
        while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty()) {
            if self.exists(dir) {
                break;
            }
            missing.push(dir);
            at = dir.parent();
        }
        self.create_dir_all(path)?;
        for dir in missing.iter().rev() {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                self.sync_dir(parent)?;
            }
        }
        Ok(())
    }

    /// Reads a whole file into memory.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.open(path, OpenMode::Read)?;
        let len = file.len()?;
        let len = usize::try_from(len).map_err(|_| io::Error::other("file too large to read"))?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// Replaces the file at `path` atomically and durably: writes a temporary file, fsyncs it,
    /// renames it over `path` and fsyncs the directory. After a crash either the old or the new
    /// content is there, never a mix.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let tmp = tmp_path(path);
        let file = self.open(&tmp, OpenMode::CreateTruncate)?;
        file.write_all_at(data, 0)?;
        file.sync_data()?;
        drop(file);
        self.rename(&tmp, path)?;
        match path.parent() {
            Some(dir) => self.sync_dir(dir),
            None => Ok(()),
        }
    }
}

/// The temporary file name [`FileSystem::write_atomic`] writes before its rename.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}
