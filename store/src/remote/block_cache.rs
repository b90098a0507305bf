//! A bounded on-disk cache of fixed-size blocks of remote objects.
//!
//! One file a block, `DIR/OBJECT/BLOCK`, holding the block's bytes and a
//! trailer (the block's number, its length, and CRC32s of the object's
//! name and of the bytes). A block is read with ordinary reads into memory,
//! never mapped: a file evicted or truncated under a reader is a miss or a
//! bad checksum, never a SIGBUS. A bad block is deleted and fetched again.
//! Files are written under a temporary name and renamed into place, so a
//! reader never sees half a block. Eviction is least recently used, by
//! bytes; a restart rescans the directory (oldest modified first out).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// Block number, length, CRC32 of the object name, CRC32 of the bytes.
const TRAILER_BYTES: usize = 8 + 4 + 4 + 4;

/// Temporary files start with this; a restart removes any it finds.
const PARTIAL_PREFIX: &str = ".partial-";

#[derive(Debug)]
pub struct BlockCache {
    dir: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
    /// Blocks found damaged and dropped, since start.
    rejected: AtomicU64,
}

/// Which blocks are on disk, their sizes, and their order of last use.
#[derive(Debug, Default)]
struct Index {
    entries: HashMap<PathBuf, Entry>,
    by_use: BTreeMap<u64, PathBuf>,
    bytes: u64,
    clock: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    used: u64,
}

impl BlockCache {
    /// The cache in `dir` (created if missing), holding at most `capacity`
    /// bytes of files; what a previous run left there is kept, up to that.
    pub fn open(dir: &Path, capacity: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let cache = Self {
            dir: dir.to_owned(),
            capacity,
            index: Mutex::new(Index::default()),
            rejected: AtomicU64::new(0),
        };
        let mut found = scan(dir)?;
        found.sort_by_key(|(_, _, modified)| *modified);
        for (path, bytes, _) in found {
            cache.admit(path, bytes);
        }
        Ok(cache)
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes of the files now in the cache.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Blocks found damaged (checksum, length, or name) and dropped.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Block `block` of `object`, if cached and intact.
    pub fn get(&self, object: &str, block: u64) -> Option<Bytes> {
        let path = self.block_path(object, block);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(_) => {
                self.forget(&path);
                return None;
            }
        };
        match check(data, object, block) {
            Some(bytes) => {
                self.touch(&path);
                Some(bytes)
            }
            None => {
                tracing::warn!(file = %path.display(), "a cached block is damaged; fetching it again");
                self.rejected.fetch_add(1, Ordering::Relaxed);
                let _ = fs::remove_file(&path);
                self.forget(&path);
                None
            }
        }
    }

    /// Keeps `data` as block `block` of `object`, evicting the least
    /// recently used blocks to stay within the capacity. A failure to write
    /// only costs a later fetch, so it is logged, not returned.
    pub fn put(&self, object: &str, block: u64, data: &[u8]) {
        let bytes = (data.len() + TRAILER_BYTES) as u64;
        if bytes > self.capacity {
            return;
        }
        let path = self.block_path(object, block);
        if let Err(error) = write_block(&path, object, block, data) {
            tracing::warn!(file = %path.display(), %error, "cannot cache a block");
            return;
        }
        self.admit(path, bytes);
    }

    fn block_path(&self, object: &str, block: u64) -> PathBuf {
        self.dir.join(object_dir(object)).join(block.to_string())
    }

    fn admit(&self, path: PathBuf, bytes: u64) {
        let evicted = {
            let mut index = self.lock();
            index.remove(&path);
            index.insert(path, bytes);
            index.evict_to(self.capacity)
        };
        for path in evicted {
            let _ = fs::remove_file(path);
        }
    }

    fn touch(&self, path: &Path) {
        let mut index = self.lock();
        if let Some(entry) = index.remove(path) {
            index.insert(path.to_owned(), entry.bytes);
        }
    }

    fn forget(&self, path: &Path) {
        self.lock().remove(path);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Index {
    fn insert(&mut self, path: PathBuf, bytes: u64) {
        self.clock += 1;
        let used = self.clock;
        self.by_use.insert(used, path.clone());
        self.entries.insert(path, Entry { bytes, used });
        self.bytes += bytes;
    }

    fn remove(&mut self, path: &Path) -> Option<Entry> {
        let entry = self.entries.remove(path)?;
        self.by_use.remove(&entry.used);
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// Drops least recently used entries until `capacity` holds; answers
    /// their files, to delete outside the lock.
    fn evict_to(&mut self, capacity: u64) -> Vec<PathBuf> {
        let mut evicted = Vec::new();
        while self.bytes > capacity {
            let Some((_, path)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&path) {
                self.bytes -= entry.bytes;
            }
            evicted.push(path);
        }
        evicted
    }
}

/// The directory of `object`'s blocks: its name with every character that
/// is not `[A-Za-z0-9._-]` as `_`, and a CRC32 of the name, so that two
/// names made alike stay apart; long names keep their end.
fn object_dir(object: &str) -> String {
    let plain: String = object
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    let tail = &plain[plain.len().saturating_sub(200)..];
    format!("{tail}-{:08x}", crc32fast::hash(object.as_bytes()))
}

fn write_block(path: &Path, object: &str, block: u64, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut file = tempfile_in(dir)?;
    file.1.write_all(data)?;
    file.1.write_all(&trailer(object, block, data))?;
    file.1.sync_data()?;
    fs::rename(&file.0, path).inspect_err(|_| {
        let _ = fs::remove_file(&file.0);
    })
}

/// A new file in `dir` under a temporary name no other writer picks.
fn tempfile_in(dir: &Path) -> io::Result<(PathBuf, fs::File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "{PARTIAL_PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

fn trailer(object: &str, block: u64, data: &[u8]) -> [u8; TRAILER_BYTES] {
    let mut trailer = [0; TRAILER_BYTES];
    trailer[..8].copy_from_slice(&block.to_le_bytes());
    trailer[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
    trailer[12..16].copy_from_slice(&crc32fast::hash(object.as_bytes()).to_le_bytes());
    trailer[16..].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
    trailer
}

/// The block's bytes, if the file is whole and is the block it claims.
fn check(mut file: Vec<u8>, object: &str, block: u64) -> Option<Bytes> {
    let length = file.len().checked_sub(TRAILER_BYTES)?;
    let data = &file[..length];
    if file[length..] != trailer(object, block, data) {
        return None;
    }
    file.truncate(length);
    Some(file.into())
}

/// Every block file under `dir` with its size and last modification; left
/// over temporary files are removed.
fn scan(dir: &Path) -> io::Result<Vec<(PathBuf, u64, std::time::SystemTime)>> {
    let mut found = Vec::new();
    for object in fs::read_dir(dir)?.flatten() {
        if !object.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for block in fs::read_dir(object.path())?.flatten() {
            let path = block.path();
            if block
                .file_name()
                .to_string_lossy()
                .starts_with(PARTIAL_PREFIX)
            {
                let _ = fs::remove_file(&path);
                continue;
            }
            if let Ok(meta) = block.metadata() {
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                found.push((path, meta.len(), modified));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECT: &str = "s3://atlases/pbmc/v/1/matrix.arrow";

    fn block(byte: u8, len: usize) -> Vec<u8> {
        vec![byte; len]
    }

    fn only_file(dir: &Path) -> PathBuf {
        let object = fs::read_dir(dir).unwrap().next().unwrap().unwrap().path();
        fs::read_dir(object)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    }

    #[test]
    fn a_block_put_is_got_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlockCache::open(dir.path(), 1 << 20).unwrap();
        cache.put(OBJECT, 7, &block(3, 1000));
        assert_eq!(cache.get(OBJECT, 7).as_deref(), Some(&block(3, 1000)[..]));
        assert_eq!(cache.get(OBJECT, 8), None);
        assert_eq!(cache.get("s3://atlases/other", 7), None);
        assert_eq!(cache.bytes(), (1000 + TRAILER_BYTES) as u64);
    }

    #[test]
    fn the_least_recently_used_blocks_go_first_and_the_bound_holds() {
        let dir = tempfile::tempdir().unwrap();
        let one = (1000 + TRAILER_BYTES) as u64;
        let cache = BlockCache::open(dir.path(), 3 * one).unwrap();
        for number in 0..3 {
            cache.put(OBJECT, number, &block(number as u8, 1000));
        }
        assert!(cache.get(OBJECT, 0).is_some(), "0 is now the most recent");
        cache.put(OBJECT, 3, &block(3, 1000));
        assert_eq!(cache.bytes(), 3 * one);
        assert!(cache.get(OBJECT, 1).is_none(), "1 was the least recent");
        for kept in [0, 2, 3] {
            assert!(cache.get(OBJECT, kept).is_some(), "{kept}");
        }
        let on_disk: u64 = scan(dir.path()).unwrap().iter().map(|f| f.1).sum();
        assert_eq!(on_disk, 3 * one);
    }

    #[test]
    fn a_block_larger_than_the_cache_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlockCache::open(dir.path(), 100).unwrap();
        cache.put(OBJECT, 0, &block(1, 1000));
        assert_eq!(cache.bytes(), 0);
        assert!(cache.get(OBJECT, 0).is_none());
    }

    #[test]
    fn a_corrupted_or_truncated_block_is_dropped() {
        for damage in [
            |file: &Path| {
                let mut data = fs::read(file).unwrap();
                data[10] ^= 0x40;
                fs::write(file, data).unwrap();
            },
            |file: &Path| {
                let data = fs::read(file).unwrap();
                fs::write(file, &data[..data.len() / 2]).unwrap();
            },
            |file: &Path| fs::write(file, b"").unwrap(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let cache = BlockCache::open(dir.path(), 1 << 20).unwrap();
            cache.put(OBJECT, 0, &block(9, 1000));
            let file = only_file(dir.path());
            damage(&file);
            assert_eq!(cache.get(OBJECT, 0), None);
            assert_eq!(cache.rejected(), 1);
            assert!(!file.exists(), "the damaged file is deleted");
            assert_eq!(cache.bytes(), 0);
        }
    }

    #[test]
    fn a_block_renamed_to_another_number_is_not_taken_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlockCache::open(dir.path(), 1 << 20).unwrap();
        cache.put(OBJECT, 0, &block(9, 1000));
        let file = only_file(dir.path());
        fs::rename(&file, file.with_file_name("1")).unwrap();
        assert_eq!(cache.get(OBJECT, 1), None);
    }

    #[test]
    fn a_restart_keeps_what_fits_and_clears_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        let one = (1000 + TRAILER_BYTES) as u64;
        {
            let cache = BlockCache::open(dir.path(), 1 << 20).unwrap();
            for number in 0..4 {
                cache.put(OBJECT, number, &block(1, 1000));
            }
        }
        let object = only_file(dir.path()).parent().unwrap().to_owned();
        fs::write(object.join(format!("{PARTIAL_PREFIX}1-1")), b"half").unwrap();
        let cache = BlockCache::open(dir.path(), 2 * one).unwrap();
        assert_eq!(cache.bytes(), 2 * one);
        assert_eq!(scan(dir.path()).unwrap().len(), 2);
    }
}
