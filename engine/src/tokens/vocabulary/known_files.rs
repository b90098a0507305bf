//! The hash of each vocabulary file as last read, kept with the file's
//! state as `fstat` tells it, so that a request naming an unchanged file
//! neither reads nor hashes it again.
//!
//! A file's identity is its device and inode (another file, after a
//! rename over it), its size, and its modification and status-change times
//! to the nanosecond (a rewrite in place moves both; the change time
//! cannot be set back). Those times are only as fine as the file system's
//! clock: a file modified within [`SETTLING`] of being looked at could be
//! written again within the same tick, its identity unchanged, so such an
//! identity is not remembered and the file is read again the next time.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Longer than any file system's timestamp granularity: FAT's is 2 s,
/// ext3's 1 s, ext4's, XFS's and btrfs's a clock tick.
const SETTLING: Duration = Duration::from_secs(3);

/// The most files remembered. Entries are one a file name that existed
/// when last loaded (a name whose file cannot be opened is forgotten), so
/// a vocabulary directory holds the count down; past this bound (a
/// directory of thousands of vocabularies, or of many since removed) all
/// are forgotten at once and read again as they are asked for.
const MAX_KNOWN_FILES: usize = 4096;

/// What tells one version of a file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    modified: SystemTime,
    /// Seconds and nanoseconds: moved by every write and metadata change.
    changed: (i64, i64),
}

/// A file's identity, and when it was taken.
#[derive(Debug, Clone, Copy)]
pub(super) struct FileState {
    identity: FileIdentity,
    taken: SystemTime,
}

impl FileState {
    /// The state `metadata` (of an open file, just now) describes.
    pub(super) fn of(metadata: &Metadata) -> std::io::Result<Self> {
        let identity = FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: metadata.modified()?,
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        };
        Ok(Self {
            identity,
            taken: SystemTime::now(),
        })
    }

    /// Whether any write after the state was taken shows in the identity:
    /// the file was last modified at least [`SETTLING`] before (and not in
    /// the future).
    fn settled(&self) -> bool {
        (self.taken.duration_since(self.identity.modified)).is_ok_and(|age| age >= SETTLING)
    }
}

/// Vocabulary name → the identity its file was read with, and its hash.
#[derive(Debug, Default)]
pub(super) struct KnownHashes {
    by_name: Mutex<HashMap<String, (FileIdentity, String)>>,
}

impl KnownHashes {
    /// The hash of `name`'s file, if it was read with the identity `state`
    /// shows.
    pub(super) fn hash(&self, name: &str, state: &FileState) -> Option<String> {
        let known = self.lock();
        let (identity, hash) = known.get(name)?;
        (*identity == state.identity).then(|| hash.clone())
    }

    /// Remembers that `name`'s file, read in `state`, has `hash`: if that
    /// state is settled, else forgets the name.
    pub(super) fn remember(&self, name: &str, state: FileState, hash: String) {
        let mut known = self.lock();
        if !state.settled() {
            known.remove(name);
            return;
        }
        if known.len() >= MAX_KNOWN_FILES && !known.contains_key(name) {
            known.clear();
        }
        known.insert(name.to_owned(), (state.identity, hash));
    }

    /// Forgets `name` (its file is gone or cannot be opened).
    pub(super) fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Each update is one insert, remove or clear, so the map behind a
    /// poisoned lock is consistent.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (FileIdentity, String)>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;

    /// The state of a new file of `bytes`, last modified `age` ago.
    fn file_state(dir: &std::path::Path, name: &str, bytes: &[u8], age: Duration) -> FileState {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let file = File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
        FileState::of(&file.metadata().unwrap()).unwrap()
    }

    #[test]
    fn a_hash_is_known_while_its_file_keeps_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let hour = Duration::from_secs(3600);
        let state = file_state(dir.path(), "a", b"one", hour);
        let known = KnownHashes::default();
        known.remember("a", state, "h1".into());
        assert_eq!(known.hash("a", &state), Some("h1".into()));
        assert_eq!(known.hash("b", &state), None, "another name");
        let rewritten = file_state(dir.path(), "a", b"two", hour);
        assert_ne!(rewritten.identity, state.identity);
        assert_eq!(known.hash("a", &rewritten), None);
        known.forget("a");
        assert_eq!(known.hash("a", &state), None);
    }

    #[test]
    fn a_file_modified_just_now_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = file_state(dir.path(), "a", b"one", Duration::ZERO);
        let known = KnownHashes::default();
        known.remember("a", fresh, "h1".into());
        assert_eq!(known.hash("a", &fresh), None);
        let future = file_state(dir.path(), "b", b"one", Duration::ZERO);
        let modified = SystemTime::now() + Duration::from_secs(3600);
        let future = FileState {
            identity: FileIdentity {
                modified,
                ..future.identity
            },
            ..future
        };
        known.remember("b", future, "h2".into());
        assert_eq!(known.hash("b", &future), None, "a clock ahead of ours");
    }

    #[test]
    fn past_the_bound_all_are_forgotten_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = file_state(dir.path(), "a", b"one", Duration::from_secs(3600));
        let known = KnownHashes::default();
        for i in 0..MAX_KNOWN_FILES {
            known.remember(&format!("v{i}"), state, "h".into());
        }
        known.remember("v0", state, "h0".into());
        assert_eq!(known.hash("v1", &state), Some("h".into()), "a name again");
        known.remember("new", state, "h".into());
        assert_eq!(known.hash("v1", &state), None);
        assert_eq!(known.hash("new", &state), Some("h".into()));
    }
}
