//! One topic's file logger (a thread: file I/O and fsync block). Writes each message as a
//! line, and FINs messages only once the file holding them is synced, so a crash loses
//! nothing (messages not yet FIN'd are redelivered: duplicates, never gaps).

use super::filename::NameFormat;
use super::Error;
use crate::client::Message;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Plain output is buffered in whole lines up to this size, so a crash never leaves half a
/// line written by us (a torn line can only come from a write cut short by the kernel).
const PLAIN_BUFFER: usize = 64 * 1024;

/// What the logger thread is told.
pub enum Event {
    /// A message to write (its auto-response is disabled; the logger FINs it).
    Message(Message),
    /// SIGHUP: sync and close the current file (the next message opens a new one).
    Hup,
    /// The consumer is stopping: sync as soon as the queue is idle.
    Stopping,
    /// The consumer has stopped: sync, close, exit.
    Terminate,
}

/// The flags that shape the output.
#[derive(Debug, Clone)]
pub struct LoggerOptions {
    /// `--output-dir`.
    pub output_dir: PathBuf,
    /// `--work-dir`.
    pub work_dir: PathBuf,
    /// `--gzip-level` when `--gzip`.
    pub gzip: Option<u32>,
    /// `--rotate-size` (0: off).
    pub rotate_size: u64,
    /// `--rotate-interval` (zero: off).
    pub rotate_interval: Duration,
    /// `--sync-interval`.
    pub sync_interval: Duration,
    /// `--skip-empty-files`.
    pub skip_empty_files: bool,
    /// `--max-in-flight`: a full batch is synced at once.
    pub max_in_flight: usize,
}

enum Output {
    Plain(File, Vec<u8>),
    Gzip(Option<GzEncoder<File>>),
}

struct Current {
    out: Output,
    path: PathBuf,
    opened: Instant,
    size: u64,
}

/// The state of one topic's output.
pub struct FileLogger {
    opts: LoggerOptions,
    format: NameFormat,
    label: String,
    current: Option<Current>,
    name: String,
    rev: u32,
}

impl FileLogger {
    /// A logger for `label` (`topic/channel`, for logs) writing names from `format`.
    pub fn new(opts: LoggerOptions, format: NameFormat, label: String) -> FileLogger {
        FileLogger {
            opts,
            format,
            label,
            current: None,
            name: String::new(),
            rev: 0,
        }
    }

    /// Runs until `Terminate` (or every sender is gone). `starved` says whether the
    /// consumer waits for answers before it can receive more: then the batch is synced.
    pub fn run(mut self, events: Receiver<Event>, starved: impl Fn() -> bool) -> Result<(), Error> {
        let mut pending: Vec<Message> = Vec::new();
        let mut next_tick = Instant::now() + self.opts.sync_interval;
        let mut stopping = false;
        // An event taken early to see whether more were queued.
        let mut stash: Option<Event> = None;
        loop {
            let (mut sync, mut close, mut exit) = (false, false, false);
            let wait = if stopping && !pending.is_empty() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            let event = match stash.take() {
                Some(event) => Ok(event),
                None => events.recv_timeout(wait),
            };
            match event {
                Ok(Event::Message(m)) => {
                    if self.needs_rotation() {
                        self.update_file()?;
                        sync = true;
                    }
                    self.write(&m.body)?;
                    pending.push(m);
                    sync |= pending.len() >= self.opts.max_in_flight;
                }
                Ok(Event::Hup) => (sync, close) = (true, true),
                Ok(Event::Stopping) => (stopping, sync) = (true, true),
                Ok(Event::Terminate) | Err(RecvTimeoutError::Disconnected) => {
                    (sync, close, exit) = (true, true, true)
                }
                Err(RecvTimeoutError::Timeout) if stopping && !pending.is_empty() => sync = true,
                Err(RecvTimeoutError::Timeout) => {
                    next_tick = Instant::now() + self.opts.sync_interval;
                    if self.needs_rotation() {
                        if self.opts.skip_empty_files {
                            close = true;
                        } else {
                            self.update_file()?;
                        }
                    }
                    sync = true;
                }
            }
            // A starved consumer waits for FINs, but only sync once the queue is empty: the
            // messages already here belong in this batch.
            if !sync && !pending.is_empty() && starved() {
                match events.try_recv() {
                    Ok(event) => stash = Some(event),
                    Err(_) => sync = true,
                }
            }
            if sync && !pending.is_empty() {
                tracing::info!("[{}] syncing {} records to disk", self.label, pending.len());
                self.sync()?;
                for m in pending.drain(..) {
                    m.finish();
                }
            }
            if close {
                self.close()?;
            }
            if exit {
                return Ok(());
            }
        }
    }

    fn write(&mut self, body: &[u8]) -> Result<(), Error> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        current.size += body.len() as u64 + 1;
        let path = &current.path;
        match &mut current.out {
            Output::Plain(file, buf) => {
                buf.extend_from_slice(body);
                buf.push(b'\n');
                if buf.len() >= PLAIN_BUFFER {
                    file.write_all(buf).map_err(|e| Error::io(path, e))?;
                    buf.clear();
                }
            }
            Output::Gzip(Some(encoder)) => {
                encoder
                    .write_all(body)
                    .and_then(|()| encoder.write_all(b"\n"))
                    .map_err(|e| Error::io(path, e))?;
            }
            Output::Gzip(None) => {}
        }
        Ok(())
    }

    /// Makes everything written durable. Gzip ends the current member (a file is a series
    /// of complete gzip members, each one's trailer covering synced messages).
    fn sync(&mut self) -> Result<(), Error> {
        self.sync_and(true)
    }

    /// `sync`; with `!more`, no new gzip member is begun (the file is about to close).
    fn sync_and(&mut self, more: bool) -> Result<(), Error> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let path = &current.path;
        match &mut current.out {
            Output::Plain(file, buf) => {
                file.write_all(buf).map_err(|e| Error::io(path, e))?;
                buf.clear();
                file.sync_data().map_err(|e| Error::io(path, e))?;
            }
            Output::Gzip(slot) => {
                if let Some(encoder) = slot.take() {
                    let file = encoder.finish().map_err(|e| Error::io(path, e))?;
                    file.sync_data().map_err(|e| Error::io(path, e))?;
                    if more {
                        let level = Compression::new(self.opts.gzip.unwrap_or(6));
                        *slot = Some(GzEncoder::new(file, level));
                    }
                }
            }
        }
        Ok(())
    }

    fn needs_rotation(&self) -> bool {
        let Some(current) = &self.current else {
            return true;
        };
        if self.format.current() != self.name {
            tracing::info!("[{}] new filename, rotating...", self.label);
            return true;
        }
        if !self.opts.rotate_interval.is_zero()
            && current.opened.elapsed() > self.opts.rotate_interval
        {
            tracing::info!("[{}] rotate interval passed, rotating...", self.label);
            return true;
        }
        if self.opts.rotate_size > 0 && current.size > self.opts.rotate_size {
            tracing::info!(
                "[{}] {} currently {} bytes (> {}), rotating...",
                self.label,
                current.path.display(),
                current.size,
                self.opts.rotate_size
            );
            return true;
        }
        false
    }

    /// Syncs, closes and (with a separate work dir) moves the current file to the output
    /// dir without overwriting anything: link, then unlink, bumping `<REV>` on a clash.
    fn close(&mut self) -> Result<(), Error> {
        self.sync_and(false)?;
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        drop(current.out);
        if self.opts.work_dir == self.opts.output_dir {
            return Ok(());
        }
        let mut rev = self.rev;
        loop {
            let dst = self
                .opts
                .output_dir
                .join(NameFormat::with_rev(&self.name, rev));
            create_parent(&dst)?;
            match std::fs::hard_link(&current.path, &dst) {
                Ok(()) => {
                    std::fs::remove_file(&current.path).map_err(|e| Error::io(&current.path, e))?;
                    sync_dir(&dst);
                    tracing::info!(
                        "[{}] moved finished file {} to {}",
                        self.label,
                        current.path.display(),
                        dst.display()
                    );
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    tracing::warn!(
                        "[{}] destination file already exists: {}",
                        self.label,
                        dst.display()
                    );
                    rev += 1;
                }
                Err(e) => return Err(Error::io(&dst, e)),
            }
        }
    }

    /// Closes the current file and opens the next: a new name starts at rev 0, the same
    /// name takes the next free rev (in the work dir and in the output dir).
    fn update_file(&mut self) -> Result<(), Error> {
        self.close()?;
        let name = self.format.current();
        if name != self.name {
            self.rev = 0;
        } else {
            self.rev += 1;
        }
        self.name = name;
        let exclusive = self.opts.gzip.is_some() || !self.opts.rotate_interval.is_zero();
        loop {
            let relative = NameFormat::with_rev(&self.name, self.rev);
            let path = self.opts.work_dir.join(&relative);
            create_parent(&path)?;
            if self.opts.work_dir != self.opts.output_dir {
                let finished = self.opts.output_dir.join(&relative);
                if finished.exists() {
                    self.rev += 1;
                    continue;
                }
            }
            let mut open = OpenOptions::new();
            open.read(true).write(true);
            if exclusive {
                open.create_new(true);
            } else {
                open.create(true).append(true);
            }
            let mut file = match open.open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    self.rev += 1;
                    continue;
                }
                Err(e) => return Err(Error::io(&path, e)),
            };
            let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            if self.opts.rotate_size > 0 && size > self.opts.rotate_size {
                self.rev += 1;
                continue;
            }
            if !exclusive && size > 0 {
                end_torn_line(&mut file, size).map_err(|e| Error::io(&path, e))?;
            }
            tracing::info!("[{}] opening {}", self.label, path.display());
            let out = match self.opts.gzip {
                Some(level) => Output::Gzip(Some(GzEncoder::new(file, Compression::new(level)))),
                None => Output::Plain(file, Vec::with_capacity(PLAIN_BUFFER)),
            };
            self.current = Some(Current {
                out,
                path,
                opened: Instant::now(),
                size,
            });
            return Ok(());
        }
    }
}

/// A file appended to after a crash may end in a line cut short; end it, so the next
/// message starts on a line of its own.
fn end_torn_line(file: &mut File, size: u64) -> std::io::Result<()> {
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(size - 1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
    }
    Ok(())
}

fn create_parent(path: &Path) -> Result<(), Error> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
        }
        _ => Ok(()),
    }
}

/// Makes a rename durable; best effort (some filesystems refuse to fsync a directory).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::to_file::NameOptions;

    fn logger(dir: &Path, gzip: Option<u32>) -> FileLogger {
        let opts = LoggerOptions {
            output_dir: dir.to_path_buf(),
            work_dir: dir.to_path_buf(),
            gzip,
            rotate_size: 0,
            rotate_interval: Duration::ZERO,
            sync_interval: Duration::from_secs(30),
            skip_empty_files: false,
            max_in_flight: 10,
        };
        let format = NameFormat::compute(
            &NameOptions {
                filename_format: "<TOPIC><REV>.log",
                datetime_format: "%Y",
                host_identifier: "",
                needs_rev: gzip.is_some(),
                gzip: gzip.is_some(),
            },
            "t",
            "host",
        )
        .unwrap();
        FileLogger::new(opts, format, "t/c".to_string())
    }

    #[test]
    fn appending_after_a_crash_ends_a_torn_line_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.log"), b"whole\npart").unwrap();
        let mut l = logger(dir.path(), None);
        l.update_file().unwrap();
        l.write(b"next").unwrap();
        l.close().unwrap();
        let text = std::fs::read_to_string(dir.path().join("t.log")).unwrap();
        assert_eq!(text, "whole\npart\nnext\n");
    }

    #[test]
    fn gzip_takes_the_next_free_rev_and_ends_a_member_per_sync() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t-000000.log.gz"), b"left by a killed run").unwrap();
        let mut l = logger(dir.path(), Some(6));
        l.update_file().unwrap();
        l.write(b"a").unwrap();
        l.sync().unwrap();
        l.write(b"b").unwrap();
        l.close().unwrap();
        let raw = std::fs::read(dir.path().join("t-000001.log.gz")).unwrap();
        // Two complete gzip members, each readable on its own.
        let members = raw.windows(3).filter(|w| w == &[0x1f, 0x8b, 0x08]).count();
        assert_eq!(members, 2);
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a\nb\n");
    }
}
