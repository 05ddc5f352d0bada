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
    /// Whether the topic is paused.
    pub paused: bool,
    /// While paused: the offset its channels do not read past (`None` in metadata written
    /// before format version 3, where a pause stopped every channel: open takes the log's end).
    pub pause_mark: Option<u64>,
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
            pause_mark: None,
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

/// A topic as metadata before format version 3 recorded it (no pause mark).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TopicMetaV2 {
    name: String,
    salt: u64,
    paused: bool,
    backlog_start: u64,
    retention: Option<Retention>,
    channels: Vec<ChannelMeta>,
}

impl From<TopicMetaV2> for TopicMeta {
    fn from(old: TopicMetaV2) -> Self {
        TopicMeta {
            name: old.name,
            salt: old.salt,
            paused: old.paused,
            pause_mark: None,
            backlog_start: old.backlog_start,
            retention: old.retention,
            channels: old.channels,
        }
    }
}

impl Meta {
    /// Decodes a metadata file's bytes (any format version up to this build's).
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Meta> {
        framed::decode_with(path, META_MAGIC, bytes, |version, payload| {
            if version >= 3 {
                bincode::deserialize(payload)
            } else {
                let topics: Vec<TopicMetaV2> = bincode::deserialize(payload)?;
                Ok(Meta {
                    topics: topics.into_iter().map(TopicMeta::from).collect(),
                })
            }
        })
    }

    /// Reads the metadata file; a missing file is an empty data directory.
    pub fn load(fs: &dyn FileSystem, path: &Path) -> Result<Meta> {
        match fs.read_all(path) {
            Ok(bytes) => Meta::decode(path, &bytes),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_2_metadata_reads_with_no_pause_mark() {
        let old = vec![TopicMetaV2 {
            name: "t".into(),
            salt: 7,
            paused: true,
            backlog_start: 3,
            retention: None,
            channels: vec![ChannelMeta {
                name: "c".into(),
                paused: false,
            }],
        }];
        let mut bytes = framed::encode(META_MAGIC, &old);
        bytes[8..12].copy_from_slice(&2u32.to_be_bytes());
        let header_crc = crc32fast::hash(&bytes[..20]);
        bytes[20..24].copy_from_slice(&header_crc.to_be_bytes());
        let meta = Meta::decode(Path::new("meta"), &bytes).expect("version 2 reads");
        assert_eq!(meta.topics, vec![TopicMeta::from(old[0].clone())]);
        assert!(meta.topics[0].paused);
        assert_eq!(meta.topics[0].pause_mark, None);
        assert_eq!(meta.topics[0].backlog_start, 3);

        let new = Meta {
            topics: vec![TopicMeta {
                pause_mark: Some(9),
                ..meta.topics[0].clone()
            }],
        };
        let bytes = framed::encode(META_MAGIC, &new);
        assert_eq!(Meta::decode(Path::new("meta"), &bytes).expect("v3"), new);
    }
}
