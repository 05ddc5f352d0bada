//! `nsq_log`: offline inspection of an `nsq-engine` data directory.
//!
//! Every subcommand opens the data directory with [`Engine::open`], which takes its `LOCK`
//! (so it refuses to run next to a live nsqd) and runs the engine's ordinary recovery. After
//! that the tools only read: they drop the engine instead of calling [`Engine::close`], so
//! nothing new (cursors, metadata) is written.
//!
//! - [`stat`]: topics and channels with their offsets, sizes, lag and ages.
//! - [`dump`]: the records of one topic's log.
//! - [`check`]: `verify` reads every byte and reports problems; `repair` fixes them. These
//!   do not open the engine (whose recovery would already change files); they take the lock.

pub mod check;
pub mod dump;
pub mod format;
pub mod stat;

use clap::{Parser, Subcommand};
use nsq_engine::{Engine, Options};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `nsq_log`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "nsq_log",
    version = nsq_server::version::VERSION_TEXT,
    about = "Inspect an nsq-engine data directory offline (stop nsqd first)"
)]
pub struct Cli {
    /// The data directory (nsqd's --data-path).
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    pub data_path: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `nsq_log`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Topics and channels: offsets, retained messages and bytes, segments, lag and ages.
    Stat(stat::StatArgs),
    /// Prints the records of a topic's log.
    Dump(dump::DumpArgs),
    /// Checks every record, index, cursor and FIN journal; exits 1 with a report when anything
    /// is wrong (crash leftovers nsqd resolves by itself are listed as notes, exit 0).
    Verify(check::VerifyArgs),
    /// Repairs what verify finds: quarantines unreadable bytes, rebuilds indexes, clamps
    /// cursors, cuts and cleans FIN journals.
    Repair(check::RepairArgs),
}

/// What can make `nsq_log` fail. Every message fits on one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory does not exist (the tools never create one).
    #[error("data directory {} does not exist", path.display())]
    MissingDataDir {
        /// The path given.
        path: PathBuf,
    },
    /// The path is not a directory, or holds neither a `meta` file nor a `topics` directory.
    #[error("{} is not an nsq data directory (no meta file and no topics directory)", path.display())]
    NotADataDir {
        /// The path given.
        path: PathBuf,
    },
    /// A running nsqd (or another tool) holds the data directory's lock.
    #[error("data directory {} is locked by another process (stop nsqd first)", path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The engine failed (I/O error, corrupt data, ...).
    #[error(transparent)]
    Engine(#[from] nsq_engine::Error),
    /// The topic asked for is not in the data directory.
    #[error("topic {0} not found")]
    TopicNotFound(String),
    /// A `--since` value that is neither RFC 3339 nor Unix nanoseconds.
    #[error("invalid time {value:?}: expected RFC 3339 (e.g. 2024-05-01T12:00:00Z) or Unix nanoseconds ({reason})")]
    InvalidTime {
        /// The value given.
        value: String,
        /// Why it did not parse.
        reason: String,
    },
    /// A start offset below the oldest retained offset.
    #[error("offset {requested} is before the oldest retained offset {first}")]
    BeforeRetention {
        /// The offset asked for.
        requested: u64,
        /// The oldest offset the log still holds.
        first: u64,
    },
    /// A start offset past the end of the log.
    #[error("offset {requested} is past the end of the log (next offset {end})")]
    PastEnd {
        /// The offset asked for.
        requested: u64,
        /// One past the newest offset.
        end: u64,
    },
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),
    /// `verify` found problems (the report has been printed).
    #[error("{problems} problem(s) found; `nsq_log repair` fixes them")]
    Unsound {
        /// How many.
        problems: usize,
    },
    /// Encoding JSON output failed.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// Whether this is a write to a closed pipe (`nsq_log dump | head`), which is no failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Output(e)
    }
}

/// Result with `nsq_log`'s [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Opens the data directory at `path` for reading: checks that it exists and looks like a
/// data directory (so the tools never create one), then opens it with the engine's default
/// options, which takes the lock and runs recovery.
pub fn open_data_dir(path: &Path) -> Result<Engine> {
    let path = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::MissingDataDir {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(nsq_engine::Error::io(path, e).into()),
    };
    if !path.is_dir() || !(path.join("meta").is_file() || path.join("topics").is_dir()) {
        return Err(Error::NotADataDir { path });
    }
    match Engine::open(&path, Options::default()) {
        Ok(engine) => Ok(engine),
        Err(nsq_engine::Error::Locked { path }) => Err(Error::Locked { path }),
        Err(e) => Err(e.into()),
    }
}

/// Writes what the engine's recovery did, one `recovered: ...` line per event.
pub fn report_recovery(engine: &Engine, diag: &mut dyn Write) -> Result<()> {
    for event in engine.recovery_events() {
        writeln!(diag, "recovered: {event}")?;
    }
    Ok(())
}

/// Runs `nsq_log`: results go to `out`, recovery reports to `diag` (stderr).
pub fn run(cli: &Cli, out: &mut dyn Write, diag: &mut dyn Write) -> Result<()> {
    match &cli.command {
        Command::Stat(args) => stat::run(&cli.data_path, args, out, diag),
        Command::Dump(args) => dump::run(&cli.data_path, args, out, diag),
        Command::Verify(args) => check::verify(&cli.data_path, args, out),
        Command::Repair(args) => check::repair(&cli.data_path, args, out),
    }
}
