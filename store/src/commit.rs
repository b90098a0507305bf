//! Publishing a fully written staging directory under the dataset's name in
//! one atomic step, so a reader sees the old dataset or the new one, never
//! a mix and never a half-written one.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{renameat_with, RenameFlags, CWD};

use crate::{StoreError, WriteMode};

/// A hidden directory being written. Dropped unpublished, it is removed;
/// a killed process leaves it behind, hidden, never taken for a dataset.
pub(crate) struct StagingDir {
    path: PathBuf,
    published: bool,
}

impl StagingDir {
    pub(crate) fn create(path: PathBuf) -> Result<Self, StoreError> {
        std::fs::create_dir(&path).map_err(StoreError::io(&path))?;
        Ok(Self {
            path,
            published: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the staged files durable, then moves them to `target`.
    pub(crate) fn publish(mut self, target: &Path, mode: WriteMode) -> Result<(), StoreError> {
        sync_dir(&self.path)?;
        publish(&self.path, target, mode)?;
        self.published = true;
        Ok(())
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Moves `staging` to `target`. With [`WriteMode::Replace`] an existing
/// target is exchanged with the staging directory in one `renameat2` call
/// and the old version is then deleted (open files of it stay readable).
fn publish(staging: &Path, target: &Path, mode: WriteMode) -> Result<(), StoreError> {
    match rename(staging, target, RenameFlags::NOREPLACE) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && mode == WriteMode::Replace => {
            rename(staging, target, RenameFlags::EXCHANGE).map_err(StoreError::io(target))?;
            std::fs::remove_dir_all(staging).map_err(StoreError::io(staging))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(StoreError::AlreadyExists(target.to_owned()))
        }
        Err(e) => return Err(StoreError::io(target)(e)),
    }
    sync_parent(target)
}

fn rename(from: &Path, to: &Path, flags: RenameFlags) -> io::Result<()> {
    renameat_with(CWD, from, CWD, to, flags).map_err(io::Error::from)
}

/// Makes the rename itself durable.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let parent = parent_dir(path);
    sync_dir(parent)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
