//! The data directory's metadata file: which topics and channels exist, their paused flags,
//! id salts and retention overrides. Replaced atomically on every change.

use crate::error::{Error, IoContext, Result};
use crate::framed;
use crate::fs::FileSystem;
use crate::options::Retention;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Magic bytes of the metadata file.
pub const META_MAGIC: &[u8; 8] = b"NSQRMETA";
/// Metadata format version (the framing's, see [`crate::framed`]).
pub const META_VERSION: u32 = framed::VERSION;

/// Everything the metadata file records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Durable topics.
    pub topics: Vec<TopicMeta>,
}

/// One durable topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Added to offsets to make message ids (see [`crate::id`]).
    pub salt: u64,
    /// Whether delivery is paused.
    pub paused: bool,
    /// Where the first durable channel starts by default (moved by emptying the topic or
    /// deleting its last channel).
    pub backlog_start: u64,
    /// Retention override for this topic.
    pub retention: Option<Retention>,
    /// Durable channels.
    pub channels: Vec<ChannelMeta>,
}

impl TopicMeta {
    /// A `salt` that means "derive the salt from the log's records" (a topic found on disk
    /// that meta did not name: its message ids must stay what they were).
    pub const SALT_FROM_LOG: u64 = u64::MAX;

    /// A topic found in the directory but missing from meta, taken back in with its defaults
    /// and its salt read from its log when opened.
    pub fn adopted(name: String) -> Self {
        TopicMeta {
            name,
            salt: Self::SALT_FROM_LOG,
            paused: false,
            backlog_start: 0,
            retention: None,
            channels: Vec::new(),
        }
    }
}

/// One durable channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMeta {
    /// Channel name.
    pub name: String,
    /// Whether delivery is paused.
    pub paused: bool,
}

impl Meta {
    /// Reads the metadata file; a missing file is an empty data directory.
    pub fn load(fs: &dyn FileSystem, path: &Path) -> Result<Meta> {
        match fs.read_all(path) {
            Ok(bytes) => framed::decode(path, META_MAGIC, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes the metadata file atomically and durably.
    pub fn store(&self, fs: &dyn FileSystem, path: &Path) -> Result<()> {
        fs.write_atomic(path, &framed::encode(META_MAGIC, self))
            .at(path)
    }
}
