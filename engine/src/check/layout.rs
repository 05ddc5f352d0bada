//! Finding a data directory's files: topics (from `meta` and from `topics/`), their segments
//! in offset order, and their channels' cursor files.

use crate::error::{Error, Result};
use crate::fs::{FileSystem, FsLock};
use crate::meta::{Meta, TopicMeta};
use crate::name;
use crate::segment;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One topic's files.
#[derive(Debug, Clone)]
pub struct TopicFiles {
    /// The topic name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its id salt from `meta` (`None` for a directory `meta` does not know).
    pub salt: Option<u64>,
    /// Segment first offsets and paths, in offset order.
    pub segments: Vec<(u64, PathBuf)>,
    /// Durable channel names from `meta`.
    pub channels: Vec<String>,
}

/// Takes the data directory's lock, failing with [`Error::Locked`] while nsqd holds it.
pub fn lock(fs: &dyn FileSystem, data: &Path) -> Result<Box<dyn FsLock>> {
    fs.lock_exclusive(&data.join("LOCK"))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked {
                path: data.to_path_buf(),
            },
            _ => Error::io(data.join("LOCK"), e),
        })
}

/// Every topic (or just `only`) with its files. A damaged `meta` is returned as the error.
pub fn list_topics(
    fs: &dyn FileSystem,
    data: &Path,
    only: Option<&str>,
) -> Result<Vec<TopicFiles>> {
    let meta_path = data.join("meta");
    let meta = if fs.exists(&meta_path) {
        Meta::load(fs, &meta_path)?
    } else {
        Meta::default()
    };
    let mut topics: BTreeMap<String, TopicFiles> = BTreeMap::new();
    let topics_dir = data.join("topics");
    for t in &meta.topics {
        topics.insert(
            t.name.clone(),
            TopicFiles {
                name: t.name.clone(),
                dir: topics_dir.join(name::dir_name(&t.name)),
                salt: Some(t.salt).filter(|&s| s != TopicMeta::SALT_FROM_LOG),
                segments: Vec::new(),
                channels: t.channels.iter().map(|c| c.name.clone()).collect(),
            },
        );
    }
    if fs.exists(&topics_dir) {
        for entry in fs
            .read_dir(&topics_dir)
            .map_err(|e| Error::io(&topics_dir, e))?
        {
            if let Some(topic) = name::from_dir_name(&entry.name) {
                topics.entry(topic.clone()).or_insert_with(|| TopicFiles {
                    dir: topics_dir.join(&entry.name),
                    name: topic,
                    salt: None,
                    segments: Vec::new(),
                    channels: Vec::new(),
                });
            }
        }
    }
    let mut out = Vec::new();
    for (name, mut files) in topics {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        if fs.exists(&files.dir) {
            for entry in fs
                .read_dir(&files.dir)
                .map_err(|e| Error::io(&files.dir, e))?
            {
                if let Some(first) = segment::parse_log_file_name(&entry.name) {
                    files.segments.push((first, files.dir.join(&entry.name)));
                }
            }
        }
        files.segments.sort();
        out.push(files);
    }
    if let Some(o) = only {
        if out.is_empty() {
            return Err(Error::TopicNotFound(o.to_string()));
        }
    }
    Ok(out)
}

/// What the directory itself says exists: each topic directory (topic name, its path) with the
/// channels that have a cursor file, sorted. This is what `meta` is rebuilt from.
pub fn catalogue(fs: &dyn FileSystem, data: &Path) -> Result<Vec<(String, PathBuf, Vec<String>)>> {
    let topics_dir = data.join("topics");
    let mut out = Vec::new();
    if !fs.exists(&topics_dir) {
        return Ok(out);
    }
    for entry in fs
        .read_dir(&topics_dir)
        .map_err(|e| Error::io(&topics_dir, e))?
    {
        let Some(topic) = name::from_dir_name(&entry.name).filter(|_| entry.is_dir) else {
            continue;
        };
        let dir = topics_dir.join(&entry.name);
        let channels_dir = dir.join("channels");
        let mut channels = Vec::new();
        if fs.exists(&channels_dir) {
            for c in fs
                .read_dir(&channels_dir)
                .map_err(|e| Error::io(&channels_dir, e))?
            {
                if let Some(channel) = c
                    .name
                    .strip_suffix(".cursor")
                    .filter(|n| !c.is_dir && name::is_valid(n) && !name::is_ephemeral(n))
                {
                    channels.push(channel.to_string());
                }
            }
        }
        channels.sort();
        out.push((topic, dir, channels));
    }
    out.sort();
    Ok(out)
}
