//! Publishing a dataset built on local disk to an object store, as a new
//! version, and removing versions nobody should still be reading.
//!
//! A version's files go under `NAME/v/VERSION/`, its manifest after its
//! data; `NAME/manifest.json` (the current version) is written last. A
//! reader that follows the pointer therefore never meets a partial version,
//! and readers of the previous version keep its files until `prune`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use cellflight_schemas::Manifest;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;

use super::io;
use super::location::RemoteStore;
use super::{check_version, VERSIONS_DIR};
use crate::{StoreError, MANIFEST_FILE};

/// Parts of a multipart upload: S3 wants at least 5 MiB a part.
const UPLOAD_PART_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct PublishedVersion {
    pub name: String,
    pub version: String,
    /// Where the version's files are.
    pub url: String,
}

/// Uploads the dataset in `local` (a finished dataset directory) as a new
/// version of its name under `remote`, and makes it current. Without
/// `replace`, a name that already has a current version is refused.
pub fn publish(
    remote: &RemoteStore,
    local: &Path,
    replace: bool,
) -> Result<PublishedVersion, StoreError> {
    let manifest_path = local.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).map_err(StoreError::io(&manifest_path))?;
    let manifest = Manifest::from_json(&text).map_err(|source| StoreError::Manifest {
        path: manifest_path.clone(),
        source,
    })?;
    let name = manifest.name.as_str().to_owned();
    check_version(&name, &manifest.version)?;
    if !replace {
        refuse_published(remote, &name)?;
    }
    let pointer = remote.path([name.as_str(), MANIFEST_FILE]);
    let version_path =
        |file: &str| remote.path([name.as_str(), VERSIONS_DIR, &manifest.version, file]);
    let mut files = vec![manifest.cells.file.clone(), manifest.genes.file.clone()];
    files.extend(manifest.matrix.as_ref().map(|m| m.file.clone()));
    for file in files.iter().chain([&MANIFEST_FILE.to_owned()]) {
        upload(remote, &local.join(file), version_path(file))?;
    }
    put(remote, &pointer, text.into_bytes())?;
    Ok(PublishedVersion {
        url: remote.url_of(&remote.path([name.as_str(), VERSIONS_DIR, &manifest.version])),
        version: manifest.version,
        name,
    })
}

/// Fails if `name` already has a current version under `remote`: what a
/// command checks before building a dataset it would not be let publish.
pub fn refuse_published(remote: &RemoteStore, name: &str) -> Result<(), StoreError> {
    let pointer = remote.path([name, MANIFEST_FILE]);
    match exists(remote, &pointer)? {
        true => Err(StoreError::AlreadyExists(remote.url_of(&pointer).into())),
        false => Ok(()),
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionsRemoved {
    pub removed: Vec<String>,
    pub kept: Vec<String>,
}

/// Removes the versions of `name` that stopped being current more than
/// `keep_for` before `now` (a version stops being current when the next
/// one is published), and uploads that never finished, once as old. The
/// current version is always kept.
pub fn prune(
    remote: &RemoteStore,
    name: &str,
    keep_for: Duration,
    now: SystemTime,
) -> Result<VersionsRemoved, StoreError> {
    let current = read_pointer(remote, name)?;
    let mut versions = published_versions(remote, name)?;
    // Publication order. Object stores keep times to the second, so the
    // pointer breaks ties: the current version was published last.
    let is_current = |version: &String| Some(version) == current.as_ref();
    versions.sort_by_key(|(version, published)| (is_current(version), published.at));
    let mut outcome = VersionsRemoved::default();
    for (i, (version, published)) in versions.iter().enumerate() {
        // An unfinished upload (no manifest) counts from its last write.
        let superseded = versions.get(i + 1).map(|(_, next)| next.at);
        let expired = superseded
            .or((!published.finished).then_some(published.at))
            .is_some_and(|since| since + keep_for < now);
        let removable = !is_current(version) && expired;
        if removable {
            remove_all(remote, &remote.path([name, VERSIONS_DIR, version]))?;
            outcome.removed.push(version.clone());
        } else {
            outcome.kept.push(version.clone());
        }
    }
    Ok(outcome)
}

/// The version `NAME/manifest.json` names, if there is one.
fn read_pointer(remote: &RemoteStore, name: &str) -> Result<Option<String>, StoreError> {
    let pointer = remote.path([name, MANIFEST_FILE]);
    let (store, url) = (remote.store().clone(), remote.url_of(&pointer));
    let bytes: Option<bytes::Bytes> = io::wait(async move {
        match store.get(&pointer).await {
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StoreError::remote(&url)(e)),
            Ok(got) => got
                .bytes()
                .await
                .map(Some)
                .map_err(StoreError::remote(&url)),
        }
    })?;
    let Some(bytes) = bytes else { return Ok(None) };
    let manifest = Manifest::from_json(&String::from_utf8_lossy(&bytes)).map_err(|source| {
        StoreError::Manifest {
            path: remote.url_of(&remote.path([name, MANIFEST_FILE])).into(),
            source,
        }
    })?;
    Ok(Some(manifest.version))
}

/// When a version was published: its manifest's last write; or, for an
/// upload that never finished (no manifest), its newest object's.
#[derive(Debug, Clone, Copy)]
struct Published {
    at: SystemTime,
    finished: bool,
}

/// Each version under `NAME/v/`, with when it was published.
fn published_versions(
    remote: &RemoteStore,
    name: &str,
) -> Result<Vec<(String, Published)>, StoreError> {
    let versions_dir = remote.path([name, VERSIONS_DIR]);
    let (store, url) = (remote.store().clone(), remote.url_of(&versions_dir));
    io::wait(async move {
        let objects: Vec<object_store::ObjectMeta> = store
            .list(Some(&versions_dir))
            .try_collect()
            .await
            .map_err(StoreError::remote(&url))?;
        let mut versions: std::collections::BTreeMap<String, Published> = Default::default();
        for object in objects {
            let mut parts = object
                .location
                .prefix_match(&versions_dir)
                .into_iter()
                .flatten();
            let (Some(version), Some(file)) = (parts.next(), parts.next()) else {
                continue;
            };
            let written = SystemTime::from(object.last_modified);
            let entry = versions
                .entry(version.as_ref().to_owned())
                .or_insert(Published {
                    at: SystemTime::UNIX_EPOCH,
                    finished: false,
                });
            if file.as_ref() == MANIFEST_FILE {
                *entry = Published {
                    at: written,
                    finished: true,
                };
            } else if !entry.finished {
                entry.at = entry.at.max(written);
            }
        }
        Ok(versions.into_iter().collect())
    })
}

fn exists(remote: &RemoteStore, path: &ObjectPath) -> Result<bool, StoreError> {
    let (store, path, url) = (remote.store().clone(), path.clone(), remote.url_of(path));
    io::wait(async move {
        match store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(StoreError::remote(&url)(e)),
        }
    })
}

fn put(remote: &RemoteStore, path: &ObjectPath, bytes: Vec<u8>) -> Result<(), StoreError> {
    let (store, path, url) = (remote.store().clone(), path.clone(), remote.url_of(path));
    io::wait(async move {
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(StoreError::remote(&url))
    })
}

/// Streams the file `local` to `path`, in parts when it is large.
fn upload(remote: &RemoteStore, local: &Path, path: ObjectPath) -> Result<(), StoreError> {
    let (store, url, local) = (
        remote.store().clone(),
        remote.url_of(&path),
        local.to_owned(),
    );
    io::wait(async move {
        let mut file = tokio::fs::File::open(&local)
            .await
            .map_err(StoreError::io(&local))?;
        let mut writer =
            BufWriter::with_capacity(store as Arc<dyn ObjectStore>, path, UPLOAD_PART_BYTES);
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        let finished = match copied {
            Ok(_) => tokio::io::AsyncWriteExt::shutdown(&mut writer).await,
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        };
        finished.map_err(|e| StoreError::Io {
            path: url.into(),
            source: e,
        })
    })
}

/// Deletes every object under `prefix`.
fn remove_all(remote: &RemoteStore, prefix: &ObjectPath) -> Result<(), StoreError> {
    let (store, prefix, url) = (
        remote.store().clone(),
        prefix.clone(),
        remote.url_of(prefix),
    );
    io::wait(async move {
        let listed = store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        store
            .delete_stream(listed)
            .try_collect::<Vec<_>>()
            .await
            .map(drop)
            .map_err(StoreError::remote(&url))
    })
}
