//! [`SimFs`]: an in-memory [`FileSystem`] for crash and fault-injection tests.
//!
//! The model: every directory has *live* entries (what lookups see) and *durable* entries (what
//! survives a power cut). Creating, removing and renaming change only the live entries of the
//! directories involved; [`FileSystem::sync_dir`] copies a directory's live entries to its durable
//! ones. Every file has its current `data` and its `durable` content as of its last `sync_data`.
//! [`SimFs::power_cut`] turns every directory's durable entries back into its live ones and every
//! file's data back into its durable content. Nodes are shared by reference between the two
//! namespaces, so a renamed file is the same file under its new name.
//!
//! Simplifications, all on the harsh or the simple side:
//! - A directory made by `create_dir_all` is, like any entry, durable only once its parent
//!   directory is synced (the strict model: a power cut before that loses it and its files).
//! - Each directory's entries become durable on their own, so a rename across two directories
//!   may survive a cut in one and not the other (a journaling file system would never do that).
//! - Relative paths resolve from the root like absolute ones, and `..` is resolved lexically.
//! - Handles opened before a power cut still point to their file and see its post-cut data, but
//!   anything they do afterwards is meaningless: drop the engine before cutting the power.

use super::{DirEntry, FileSystem, FsFile, FsLock, OpenMode};
use rand::Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

// Raw errno values, so injected and simulated errors look like the real kernel's.
const EBADF: i32 = 9;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const EINVAL: i32 = 22;
const EFBIG: i32 = 27;
const ENOSPC: i32 = 28;
const ENOTEMPTY: i32 = 39;

/// Faults a [`SimFs`] injects; the default injects none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// Every `sync_data` and `sync_dir` fails (like `EIO` from fsync) and makes nothing durable.
    pub fail_sync: bool,
    /// Every `write_all_at` fails and writes nothing.
    pub fail_writes: bool,
    /// The most bytes all files of the live namespace may hold together. A write past it writes
    /// what fits and then fails with `ENOSPC`, as a full disk does; growing `set_len` fails too.
    pub space_limit: Option<u64>,
    /// The next N syncs (`sync_data` or `sync_dir`) succeed and every later one fails; counts
    /// down as syncs happen.
    pub fail_sync_after: Option<u32>,
}

/// An in-memory file system that remembers what was made durable, can cut the power and can
/// inject faults. Clones share all state, so a test can keep a handle while the engine owns one.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

/// Everything behind the one lock that serialises all operations.
#[derive(Default)]
struct State {
    root: DirRef,
    faults: SimFaults,
    /// Held locks: path components -> token of the guard holding it.
    locks: HashMap<Vec<OsString>, u64>,
    next_lock_token: u64,
}

type DirRef = Arc<Mutex<Dir>>;
type FileRef = Arc<Mutex<FileNode>>;

#[derive(Clone)]
enum Node {
    Dir(DirRef),
    File(FileRef),
}

#[derive(Default)]
struct Dir {
    live: BTreeMap<OsString, Node>,
    durable: BTreeMap<OsString, Node>,
}

#[derive(Default)]
struct FileNode {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// `data[..clean] == durable[..clean]`, so a sync after appends copies only the new bytes.
    clean: usize,
}

#[derive(Clone, Copy)]
enum Ns {
    Live,
    Durable,
}

/// Locks ignoring poisoning: a panicking test thread must not turn every later call into a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn split(path: &Path) -> Vec<OsString> {
    let mut comps = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => comps.push(name.to_os_string()),
            Component::ParentDir => {
                comps.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    comps
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn to_usize(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| errno(EFBIG))
}

impl Node {
    fn addr(&self) -> usize {
        match self {
            Node::Dir(d) => Arc::as_ptr(d) as *const () as usize,
            Node::File(f) => Arc::as_ptr(f) as *const () as usize,
        }
    }
}

impl Dir {
    fn entries(&self, ns: Ns) -> &BTreeMap<OsString, Node> {
        match ns {
            Ns::Live => &self.live,
            Ns::Durable => &self.durable,
        }
    }
}

impl FileNode {
    fn write(&mut self, data: &[u8], pos: usize) {
        if data.is_empty() {
            return;
        }
        let end = pos + data.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[pos..end].copy_from_slice(data);
        self.clean = self.clean.min(pos);
    }

    fn set_len(&mut self, len: usize) {
        self.data.resize(len, 0);
        self.clean = self.clean.min(len);
    }

    fn sync(&mut self) {
        self.durable.truncate(self.clean);
        self.durable.extend_from_slice(&self.data[self.clean..]);
        self.clean = self.data.len();
    }

    /// Loses the unsynced data, except `keep(n)` bytes of an unsynced extension of `n` bytes.
    fn cut(&mut self, keep: &mut dyn FnMut(usize) -> usize) {
        let synced = self.durable.len();
        if self.data.len() > synced && self.data[..synced] == self.durable[..] {
            let extra = self.data.len() - synced;
            self.data.truncate(synced + keep(extra).min(extra));
        } else {
            self.data.clone_from(&self.durable);
        }
        // Whatever reached the disk is durable now.
        self.durable.clone_from(&self.data);
        self.clean = self.data.len();
    }
}

impl State {
    fn lookup(&self, comps: &[OsString], ns: Ns) -> Option<Node> {
        let mut node = Node::Dir(Arc::clone(&self.root));
        for name in comps {
            let Node::Dir(dir) = node else { return None };
            node = lock(&dir).entries(ns).get(name).cloned()?;
        }
        Some(node)
    }

    fn live(&self, path: &Path) -> io::Result<Node> {
        self.lookup(&split(path), Ns::Live)
            .ok_or_else(|| not_found(path))
    }

    fn live_file(&self, path: &Path) -> io::Result<FileRef> {
        match self.live(path)? {
            Node::File(f) => Ok(f),
            Node::Dir(_) => Err(errno(EISDIR)),
        }
    }

    /// The live directory that holds (or would hold) `path`, and the entry's name in it.
    fn parent(&self, path: &Path) -> io::Result<(DirRef, OsString)> {
        let mut comps = split(path);
        let Some(name) = comps.pop() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the root has no parent",
            ));
        };
        match self.lookup(&comps, Ns::Live) {
            Some(Node::Dir(dir)) => Ok((dir, name)),
            Some(Node::File(_)) => Err(errno(ENOTDIR)),
            None => Err(not_found(path)),
        }
    }

    /// Every node reachable from `start` through `ns` entries, once each: after a cut the same
    /// node can sit under two names, and the durable tree can even contain a cycle.
    fn reachable(start: Node, ns: Ns) -> Vec<Node> {
        let mut seen = HashSet::new();
        let mut stack = vec![start];
        let mut out = Vec::new();
        while let Some(node) = stack.pop() {
            if !seen.insert(node.addr()) {
                continue;
            }
            if let Node::Dir(dir) = &node {
                stack.extend(lock(dir).entries(ns).values().cloned());
            }
            out.push(node);
        }
        out
    }

    fn live_bytes(&self) -> u64 {
        State::reachable(Node::Dir(Arc::clone(&self.root)), Ns::Live)
            .iter()
            .map(|node| match node {
                Node::File(f) => lock(f).data.len() as u64,
                Node::Dir(_) => 0,
            })
            .sum()
    }

    /// Accounts one sync against the injected faults.
    fn take_sync(&mut self) -> io::Result<()> {
        let failed = self.faults.fail_sync
            || match &mut self.faults.fail_sync_after {
                Some(0) => true,
                Some(n) => {
                    *n -= 1;
                    false
                }
                None => false,
            };
        if failed {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }

    /// How many more bytes the live files may grow by.
    fn space_left(&self) -> Option<u64> {
        let limit = self.faults.space_limit?;
        Some(limit.saturating_sub(self.live_bytes()))
    }

    fn power_cut(&mut self, keep: &mut dyn FnMut(usize) -> usize) {
        for node in State::reachable(Node::Dir(Arc::clone(&self.root)), Ns::Durable) {
            match node {
                Node::Dir(dir) => {
                    let mut dir = lock(&dir);
                    dir.live = dir.durable.clone();
                }
                Node::File(file) => lock(&file).cut(keep),
            }
        }
        // The process died with the power, and its locks with it.
        self.locks.clear();
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("faults", &self.faults)
            .field("locks_held", &self.locks.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for FileNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileNode")
            .field("len", &self.data.len())
            .field("durable_len", &self.durable.len())
            .finish()
    }
}

impl SimFs {
    /// An empty file system holding only the root directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: SimFaults) {
        self.state().faults = faults;
    }

    /// The injected faults now in force (`fail_sync_after` as counted down so far).
    pub fn faults(&self) -> SimFaults {
        self.state().faults
    }

    /// Loses power: every directory gets back its durable entries and every file its durable
    /// content; all locks are released. Faults stay as they are.
    pub fn power_cut(&self) {
        self.state().power_cut(&mut |_| 0);
    }

    /// Like [`SimFs::power_cut`], but a file whose data extends its durable content keeps a random
    /// prefix of the unsynced extension, as if some pages happened to reach the disk.
    pub fn power_cut_with(&self, rng: &mut impl Rng) {
        self.state()
            .power_cut(&mut |extra| rng.gen_range(0..=extra));
    }

    /// The current content of the file at `path`, if there is one.
    pub fn file_data(&self, path: &Path) -> Option<Vec<u8>> {
        match self.state().lookup(&split(path), Ns::Live)? {
            Node::File(f) => Some(lock(&f).data.clone()),
            Node::Dir(_) => None,
        }
    }

    /// What a power cut right now would leave at `path`: `None` unless the file's entry is
    /// durable, else the content of its last `sync_data`.
    pub fn durable_data(&self, path: &Path) -> Option<Vec<u8>> {
        match self.state().lookup(&split(path), Ns::Durable)? {
            Node::File(f) => Some(lock(&f).durable.clone()),
            Node::Dir(_) => None,
        }
    }

    /// The bytes all files of the live namespace hold together (what `space_limit` limits).
    pub fn total_bytes(&self) -> u64 {
        self.state().live_bytes()
    }
}

/// An open file of a [`SimFs`].
#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    file: FileRef,
    writable: bool,
}

impl SimFile {
    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(errno(EBADF))
        }
    }
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let file = lock(&self.file);
        let Some(avail) = usize::try_from(pos).ok().and_then(|p| file.data.get(p..)) else {
            return Ok(0);
        };
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        Ok(n)
    }

    fn write_all_at(&self, data: &[u8], pos: u64) -> io::Result<()> {
        self.check_writable()?;
        let state = lock(&self.state);
        if state.faults.fail_writes {
            return Err(io::Error::other("injected write failure"));
        }
        let pos = to_usize(pos)?;
        let end = pos.checked_add(data.len()).ok_or_else(|| errno(EFBIG))?;
        let mut fits = data.len();
        if let Some(left) = state.space_left() {
            let max_len = (lock(&self.file).data.len() as u64).saturating_add(left);
            if end as u64 > max_len {
                fits = usize::try_from(max_len.saturating_sub(pos as u64))
                    .unwrap_or(fits)
                    .min(fits);
            }
        }
        lock(&self.file).write(&data[..fits], pos);
        if fits < data.len() {
            return Err(errno(ENOSPC));
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let state = lock(&self.state);
        let len = to_usize(len)?;
        let cur = lock(&self.file).data.len();
        if let Some(left) = state.space_left() {
            if len > cur && (len - cur) as u64 > left {
                return Err(errno(ENOSPC));
            }
        }
        lock(&self.file).set_len(len);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.file).data.len() as u64)
    }

    fn sync_data(&self) -> io::Result<()> {
        lock(&self.state).take_sync()?;
        lock(&self.file).sync();
        Ok(())
    }
}

/// A lock held in a [`SimFs`]'s lock table; dropping it releases the lock.
#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    key: Vec<OsString>,
    /// Tells this guard's hold apart from a later one on the same path after a power cut.
    token: u64,
}

impl FsLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if state.locks.get(&self.key) == Some(&self.token) {
            state.locks.remove(&self.key);
        }
    }
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let state = self.state();
        let file = match mode {
            OpenMode::Read | OpenMode::ReadWrite => state.live_file(path)?,
            OpenMode::CreateNew | OpenMode::CreateTruncate => {
                let (dir, name) = state.parent(path)?;
                let existing = lock(&dir).live.get(&name).cloned();
                match existing {
                    Some(_) if mode == OpenMode::CreateNew => {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{}: file exists", path.display()),
                        ));
                    }
                    Some(Node::Dir(_)) => return Err(errno(EISDIR)),
                    Some(Node::File(f)) => {
                        lock(&f).set_len(0);
                        f
                    }
                    None => {
                        let f = FileRef::default();
                        lock(&dir).live.insert(name, Node::File(Arc::clone(&f)));
                        f
                    }
                }
            }
        };
        let writable = mode != OpenMode::Read;
        Ok(Arc::new(SimFile {
            state: Arc::clone(&self.state),
            file,
            writable,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let state = self.state();
        let mut dir = Arc::clone(&state.root);
        for name in split(path) {
            let mut guard = lock(&dir);
            let sub = match guard.live.get(&name) {
                Some(Node::Dir(sub)) => Arc::clone(sub),
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{}: a file is in the way", path.display()),
                    ));
                }
                None => {
                    // Live only: durable once the parent is synced (see the module docs).
                    let sub = DirRef::default();
                    guard.live.insert(name, Node::Dir(Arc::clone(&sub)));
                    sub
                }
            };
            drop(guard);
            dir = sub;
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let Node::Dir(dir) = self.state().live(path)? else {
            return Err(errno(ENOTDIR));
        };
        let dir = lock(&dir);
        Ok(dir
            .live
            .iter()
            .map(|(name, node)| DirEntry {
                name: name.to_string_lossy().into_owned(),
                is_dir: matches!(node, Node::Dir(_)),
            })
            .collect())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = self.state().parent(path)?;
        let mut dir = lock(&dir);
        match dir.live.get(&name) {
            None => Err(not_found(path)),
            Some(Node::Dir(_)) => Err(errno(EISDIR)),
            Some(Node::File(_)) => {
                dir.live.remove(&name);
                Ok(())
            }
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = self.state().parent(path)?;
        let mut dir = lock(&dir);
        // The removed directory's own entries are unreachable from the live tree now; if the
        // removal is lost in a cut, the directory comes back with its durable entries.
        match dir.live.get(&name) {
            None => Err(not_found(path)),
            Some(Node::File(_)) => Err(errno(ENOTDIR)),
            Some(Node::Dir(_)) => {
                dir.live.remove(&name);
                Ok(())
            }
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let state = self.state();
        let (from_comps, to_comps) = (split(from), split(to));
        let node = state.live(from)?;
        if from_comps == to_comps {
            return Ok(());
        }
        let (from_dir, from_name) = state.parent(from)?;
        let (to_dir, to_name) = state.parent(to)?;
        let is_dir = matches!(node, Node::Dir(_));
        if is_dir && to_comps.starts_with(&from_comps) {
            return Err(errno(EINVAL)); // a directory cannot move into itself
        }
        let target = lock(&to_dir).live.get(&to_name).cloned();
        match target {
            Some(Node::Dir(_)) if !is_dir => return Err(errno(EISDIR)),
            Some(Node::File(_)) if is_dir => return Err(errno(ENOTDIR)),
            Some(Node::Dir(d)) if !lock(&d).live.is_empty() => return Err(errno(ENOTEMPTY)),
            _ => {}
        }
        lock(&from_dir).live.remove(&from_name);
        lock(&to_dir).live.insert(to_name, node);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        let Node::Dir(dir) = state.live(path)? else {
            return Err(errno(ENOTDIR));
        };
        state.take_sync()?;
        let mut dir = lock(&dir);
        dir.durable = dir.live.clone();
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.state().lookup(&split(path), Ns::Live).is_some()
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn FsLock>> {
        let mut state = self.state();
        let key = split(path);
        match state.lookup(&key, Ns::Live) {
            Some(Node::File(_)) => {}
            Some(Node::Dir(_)) => return Err(errno(EISDIR)),
            None => {
                let (dir, name) = state.parent(path)?;
                lock(&dir).live.insert(name, Node::File(FileRef::default()));
            }
        }
        if state.locks.contains_key(&key) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another holder", path.display()),
            ));
        }
        state.next_lock_token += 1;
        let token = state.next_lock_token;
        state.locks.insert(key.clone(), token);
        Ok(Box::new(SimLock {
            state: Arc::clone(&self.state),
            key,
            token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    /// A fresh fs with a durable `/data` directory.
    fn fs_with_data_dir() -> SimFs {
        let fs = SimFs::new();
        fs.create_dir_durable(p("/data")).unwrap();
        fs
    }

    #[test]
    fn new_directory_needs_its_parent_synced_to_survive() {
        let fs = fs_with_data_dir();
        fs.create_dir_all(p("/data/a/b")).unwrap();
        let f = create_durable(&fs, "/data/a/b/f");
        f.sync_data().unwrap();
        drop(f);
        fs.power_cut();
        assert!(
            !fs.exists(p("/data/a")),
            "an unsynced directory entry is lost"
        );

        fs.create_dir_durable(p("/data/a/b")).unwrap();
        let f = create_durable(&fs, "/data/a/b/f");
        f.write_all_at(b"kept", 0).unwrap();
        f.sync_data().unwrap();
        drop(f);
        fs.power_cut();
        assert_eq!(fs.read_all(p("/data/a/b/f")).unwrap(), b"kept");
    }

    /// Creates `path` durably (entry synced), empty.
    fn create_durable(fs: &SimFs, path: &str) -> Arc<dyn FsFile> {
        let f = fs.open(p(path), OpenMode::CreateNew).unwrap();
        fs.sync_dir(p(path).parent().unwrap()).unwrap();
        f
    }

    #[test]
    fn synced_data_survives_power_cut_unsynced_does_not() {
        let fs = fs_with_data_dir();
        let f = create_durable(&fs, "/data/f");
        f.write_all_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"def", 3).unwrap();
        f.write_all_at(b"X", 0).unwrap();
        assert_eq!(fs.file_data(p("/data/f")).unwrap(), b"Xbcdef");
        assert_eq!(fs.durable_data(p("/data/f")).unwrap(), b"abc");
        drop(f);
        fs.power_cut();
        assert_eq!(fs.read_all(p("/data/f")).unwrap(), b"abc");
        assert_eq!(fs.durable_data(p("/data/f")).unwrap(), b"abc");
    }

    #[test]
    fn overwrite_then_sync_makes_the_overwrite_durable() {
        let fs = fs_with_data_dir();
        let f = create_durable(&fs, "/data/f");
        f.write_all_at(b"aaaaaa", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"bb", 1).unwrap();
        f.set_len(4).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"cc", 4).unwrap();
        fs.power_cut();
        assert_eq!(fs.file_data(p("/data/f")).unwrap(), b"abba");
    }

    #[test]
    fn new_file_needs_dir_sync_to_survive() {
        let fs = fs_with_data_dir();
        let f = fs.open(p("/data/unsynced"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"lost", 0).unwrap();
        f.sync_data().unwrap();
        assert_eq!(fs.durable_data(p("/data/unsynced")), None);
        drop(f);
        fs.power_cut();
        assert!(!fs.exists(p("/data/unsynced")));

        let f = fs.open(p("/data/synced"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"kept", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b" and lost", 4).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        drop(f);
        fs.power_cut();
        assert_eq!(fs.read_all(p("/data/synced")).unwrap(), b"kept");

        // Entry synced but data never: the file survives empty.
        let f = fs.open(p("/data/empty"), OpenMode::CreateNew).unwrap();
        f.write_all_at(b"never synced", 0).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        drop(f);
        fs.power_cut();
        assert_eq!(fs.read_all(p("/data/empty")).unwrap(), b"");
    }

    #[test]
    fn removal_and_rename_need_dir_sync() {
        let fs = fs_with_data_dir();
        let f = create_durable(&fs, "/data/a");
        f.write_all_at(b"A", 0).unwrap();
        f.sync_data().unwrap();
        drop(f);

        fs.rename(p("/data/a"), p("/data/b")).unwrap();
        assert!(!fs.exists(p("/data/a")));
        assert_eq!(fs.file_data(p("/data/b")).unwrap(), b"A");
        fs.power_cut();
        assert!(fs.exists(p("/data/a")));
        assert!(!fs.exists(p("/data/b")));

        fs.rename(p("/data/a"), p("/data/b")).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        fs.power_cut();
        assert!(!fs.exists(p("/data/a")));
        assert_eq!(fs.read_all(p("/data/b")).unwrap(), b"A");

        fs.remove_file(p("/data/b")).unwrap();
        assert!(!fs.exists(p("/data/b")));
        fs.power_cut();
        assert!(fs.exists(p("/data/b")));
        fs.remove_file(p("/data/b")).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        fs.power_cut();
        assert!(!fs.exists(p("/data/b")));
    }

    #[test]
    fn directories_rename_remove_and_list() {
        let fs = SimFs::new();
        fs.create_dir_durable(p("/data/topic/ch")).unwrap();
        let f = create_durable(&fs, "/data/topic/seg");
        f.write_all_at(b"1", 0).unwrap();
        f.sync_data().unwrap();
        drop(f);
        assert_eq!(
            fs.read_dir(p("/data/topic")).unwrap(),
            vec![
                DirEntry {
                    name: "ch".into(),
                    is_dir: true
                },
                DirEntry {
                    name: "seg".into(),
                    is_dir: false
                },
            ]
        );
        // Directories made by create_dir_durable survive.
        fs.power_cut();
        assert!(fs.exists(p("/data/topic/ch")));

        fs.rename(p("/data/topic"), p("/data/topic.deleted"))
            .unwrap();
        assert_eq!(fs.read_all(p("/data/topic.deleted/seg")).unwrap(), b"1");
        fs.sync_dir(p("/data")).unwrap();
        fs.remove_dir_all(p("/data/topic.deleted")).unwrap();
        assert!(!fs.exists(p("/data/topic.deleted/seg")));
        fs.power_cut();
        // The rename was synced, the removal was not.
        assert_eq!(fs.read_all(p("/data/topic.deleted/seg")).unwrap(), b"1");
        fs.remove_dir_all(p("/data/topic.deleted")).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        fs.power_cut();
        assert_eq!(fs.read_dir(p("/data")).unwrap(), vec![]);

        fs.create_dir_all(p("/d/x")).unwrap();
        assert_eq!(
            fs.rename(p("/d"), p("/d/x/y")).unwrap_err().raw_os_error(),
            Some(EINVAL)
        );
        assert_eq!(
            fs.rename(p("/d/x"), p("/d")).unwrap_err().raw_os_error(),
            Some(ENOTEMPTY)
        );
    }

    #[test]
    fn write_atomic_survives_power_cut() {
        let fs = fs_with_data_dir();
        fs.write_atomic(p("/data/meta"), b"version 1").unwrap();
        fs.power_cut();
        assert_eq!(fs.read_all(p("/data/meta")).unwrap(), b"version 1");
        fs.write_atomic(p("/data/meta"), b"v2").unwrap();
        fs.power_cut();
        assert_eq!(fs.read_all(p("/data/meta")).unwrap(), b"v2");
        assert!(!fs.exists(&super::super::tmp_path(p("/data/meta"))));

        // The file's fsync succeeds but the directory's fails: the old version is what survives.
        fs.set_faults(SimFaults {
            fail_sync_after: Some(1),
            ..SimFaults::default()
        });
        assert!(fs.write_atomic(p("/data/meta"), b"v3").is_err());
        assert_eq!(fs.read_all(p("/data/meta")).unwrap(), b"v3");
        fs.set_faults(SimFaults::default());
        fs.power_cut();
        assert_eq!(fs.read_all(p("/data/meta")).unwrap(), b"v2");
    }

    #[test]
    fn fail_sync_makes_nothing_durable() {
        let fs = fs_with_data_dir();
        let f = create_durable(&fs, "/data/f");
        f.write_all_at(b"data", 0).unwrap();
        fs.set_faults(SimFaults {
            fail_sync: true,
            ..SimFaults::default()
        });
        let err = f.sync_data().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(err.to_string(), "injected fsync failure");
        let g = fs.open(p("/data/g"), OpenMode::CreateNew).unwrap();
        assert_eq!(
            fs.sync_dir(p("/data")).unwrap_err().kind(),
            io::ErrorKind::Other
        );
        drop((f, g));
        fs.power_cut();
        assert_eq!(fs.read_all(p("/data/f")).unwrap(), b"");
        assert!(!fs.exists(p("/data/g")));
    }

    #[test]
    fn fail_sync_after_counts_down() {
        let fs = fs_with_data_dir();
        let f = create_durable(&fs, "/data/f");
        fs.set_faults(SimFaults {
            fail_sync_after: Some(2),
            ..SimFaults::default()
        });
        f.sync_data().unwrap();
        fs.sync_dir(p("/data")).unwrap();
        assert_eq!(fs.faults().fail_sync_after, Some(0));
        assert!(f.sync_data().is_err());
        assert!(fs.sync_dir(p("/data")).is_err());
    }

    #[test]
    fn fail_writes_writes_nothing() {
        let fs = fs_with_data_dir();
        let f = create_durable(&fs, "/data/f");
        f.write_all_at(b"ok", 0).unwrap();
        fs.set_faults(SimFaults {
            fail_writes: true,
            ..SimFaults::default()
        });
        assert_eq!(
            f.write_all_at(b"more", 2).unwrap_err().kind(),
            io::ErrorKind::Other
        );
        assert_eq!(fs.file_data(p("/data/f")).unwrap(), b"ok");
        fs.set_faults(SimFaults::default());
        f.write_all_at(b"more", 2).unwrap();
        assert_eq!(fs.file_data(p("/data/f")).unwrap(), b"okmore");
    }

    #[test]
    fn space_limit_gives_partial_write_and_enospc() {
        let fs = fs_with_data_dir();
        let other = create_durable(&fs, "/data/other");
        other.write_all_at(b"1234", 0).unwrap();
        let f = create_durable(&fs, "/data/f");
        fs.set_faults(SimFaults {
            space_limit: Some(10),
            ..SimFaults::default()
        });
        f.write_all_at(b"abc", 0).unwrap();
        let err = f.write_all_at(b"defghi", 3).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(ENOSPC));
        assert_eq!(fs.file_data(p("/data/f")).unwrap(), b"abcdef");
        assert_eq!(fs.total_bytes(), 10);
        // Overwriting in place needs no space; growing does.
        f.write_all_at(b"ABC", 0).unwrap();
        assert_eq!(f.set_len(7).unwrap_err().raw_os_error(), Some(ENOSPC));
        assert_eq!(
            f.write_all_at(b"z", 20).unwrap_err().raw_os_error(),
            Some(ENOSPC)
        );
        assert_eq!(f.len().unwrap(), 6);
        // Freeing space makes room again.
        drop(other);
        fs.remove_file(p("/data/other")).unwrap();
        f.set_len(8).unwrap();
        f.write_all_at(b"gh", 8).unwrap();
        assert_eq!(fs.file_data(p("/data/f")).unwrap(), b"ABCdef\0\0gh");
    }

    #[test]
    fn power_cut_with_keeps_a_prefix_of_unsynced_bytes() {
        let unsynced: Vec<u8> = (0..100).collect();
        let mut lengths = HashSet::new();
        for seed in 0..20 {
            let fs = fs_with_data_dir();
            let f = create_durable(&fs, "/data/f");
            f.write_all_at(b"abc", 0).unwrap();
            f.sync_data().unwrap();
            f.write_all_at(&unsynced, 3).unwrap();
            // A file whose synced content was overwritten falls back to its synced content.
            let g = create_durable(&fs, "/data/g");
            g.write_all_at(b"old", 0).unwrap();
            g.sync_data().unwrap();
            g.write_all_at(b"new and longer", 0).unwrap();
            drop((f, g));

            fs.power_cut_with(&mut StdRng::seed_from_u64(seed));
            let data = fs.file_data(p("/data/f")).unwrap();
            assert!(data.len() >= 3 && data.len() <= 103);
            assert_eq!(&data[..3], b"abc");
            assert_eq!(&data[3..], &unsynced[..data.len() - 3]);
            assert_eq!(fs.durable_data(p("/data/f")).unwrap(), data);
            assert_eq!(fs.file_data(p("/data/g")).unwrap(), b"old");
            lengths.insert(data.len());
        }
        assert!(
            lengths.len() > 1,
            "the kept prefix should vary: {lengths:?}"
        );
    }

    #[test]
    fn locks_are_exclusive_and_released_by_drop_and_power_cut() {
        let fs = fs_with_data_dir();
        let guard = fs.lock_exclusive(p("/data/LOCK")).unwrap();
        assert!(fs.exists(p("/data/LOCK")));
        let clone = fs.clone();
        assert_eq!(
            clone.lock_exclusive(p("/data/LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(guard);
        let stale = fs.lock_exclusive(p("/data/LOCK")).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        fs.power_cut();
        let fresh = fs.lock_exclusive(p("/data/LOCK")).unwrap();
        // The dead process's guard must not release the new holder's lock.
        drop(stale);
        assert_eq!(
            fs.lock_exclusive(p("/data/LOCK")).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(fresh);
        assert_eq!(
            fs.lock_exclusive(p("/missing/LOCK")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn errors_for_missing_and_existing_paths() {
        let fs = fs_with_data_dir();
        let not_found = io::ErrorKind::NotFound;
        assert_eq!(
            fs.open(p("/data/x"), OpenMode::Read).unwrap_err().kind(),
            not_found
        );
        assert_eq!(
            fs.open(p("/data/x"), OpenMode::ReadWrite)
                .unwrap_err()
                .kind(),
            not_found
        );
        assert_eq!(
            fs.open(p("/nodir/x"), OpenMode::CreateNew)
                .unwrap_err()
                .kind(),
            not_found
        );
        assert_eq!(
            fs.open(p("/nodir/x"), OpenMode::CreateTruncate)
                .unwrap_err()
                .kind(),
            not_found
        );
        assert_eq!(
            fs.rename(p("/data/x"), p("/data/y")).unwrap_err().kind(),
            not_found
        );
        assert_eq!(fs.read_dir(p("/nodir")).unwrap_err().kind(), not_found);
        assert_eq!(fs.remove_file(p("/data/x")).unwrap_err().kind(), not_found);
        assert_eq!(
            fs.remove_dir_all(p("/nodir")).unwrap_err().kind(),
            not_found
        );
        assert_eq!(fs.sync_dir(p("/nodir")).unwrap_err().kind(), not_found);
        assert_eq!(fs.read_all(p("/data/x")).unwrap_err().kind(), not_found);

        fs.open(p("/data/x"), OpenMode::CreateNew).unwrap();
        let err = fs.open(p("/data/x"), OpenMode::CreateNew).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(fs.open(p("/data"), OpenMode::Read).is_err());
        assert!(fs.open(p("/"), OpenMode::CreateTruncate).is_err());
        assert!(fs.read_dir(p("/data/x")).is_err());
        assert!(fs.remove_file(p("/data")).is_err());
        assert!(fs.remove_dir_all(p("/")).is_err());
        assert!(fs.create_dir_all(p("/data/x/sub")).is_err());
        assert!(fs.rename(p("/data"), p("/data/x")).is_err());
        assert!(fs.rename(p("/data/x"), p("/data")).is_err());

        let ro = fs.open(p("/data/x"), OpenMode::Read).unwrap();
        assert_eq!(
            ro.write_all_at(b"no", 0).unwrap_err().raw_os_error(),
            Some(EBADF)
        );
        assert_eq!(ro.set_len(3).unwrap_err().raw_os_error(), Some(EBADF));
        let mut buf = [0u8; 4];
        assert_eq!(ro.read_at(&mut buf, u64::MAX).unwrap(), 0);
    }

    #[test]
    fn handles_see_writes_and_truncate() {
        let fs = fs_with_data_dir();
        let w = create_durable(&fs, "/data/f");
        let r = fs.open(p("/data/f"), OpenMode::Read).unwrap();
        w.write_all_at(b"hello", 0).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(r.read_at(&mut buf, 1).unwrap(), 4);
        assert_eq!(&buf[..4], b"ello");
        assert_eq!(fs.read_all(p("/data/f")).unwrap(), b"hello");
        w.sync_data().unwrap();

        // Truncating on open is undone by a cut until synced.
        let t = fs.open(p("/data/f"), OpenMode::CreateTruncate).unwrap();
        assert_eq!(r.len().unwrap(), 0);
        assert!(fs.read_all(p("/data/f")).unwrap().is_empty());
        drop((w, t));
        fs.power_cut();
        // A handle kept across the cut sees the post-cut state.
        assert_eq!(r.len().unwrap(), 5);
    }

    #[test]
    fn poisoned_lock_does_not_panic() {
        let fs = fs_with_data_dir();
        let clone = fs.clone();
        let _ = std::thread::spawn(move || {
            let _guard = clone.state();
            panic!("poison the state lock");
        })
        .join();
        fs.write_atomic(p("/data/after"), b"still works").unwrap();
        assert_eq!(fs.read_all(p("/data/after")).unwrap(), b"still works");
    }
}
