//! Where `ingest` and `generate` write a dataset: a local directory, or a
//! dataset URL of an object store (`s3://bucket/prefix/NAME`), in which
//! case the dataset is built in a local staging directory and then
//! published as a new version (docs/format.md "Object storage").

use std::path::{Path, PathBuf};

use cellflight_store::{publish, refuse_published, DataLocation, PublishedVersion, RemoteStore};
use tempfile::TempDir;

use super::CommandError;

#[derive(Debug)]
pub(super) struct DatasetOutput {
    build_dir: PathBuf,
    publish_to: Option<(RemoteStore, TempDir)>,
}

impl DatasetOutput {
    /// The output `text` names. Publishing without `replace` over a
    /// dataset that exists is refused now, before anything is built.
    pub(super) fn parse(text: &str, replace: bool) -> Result<Self, CommandError> {
        let remote = match DataLocation::parse(text)? {
            DataLocation::Local(dir) => {
                return Ok(Self {
                    build_dir: dir,
                    publish_to: None,
                })
            }
            DataLocation::Remote(remote) => remote,
        };
        let (parent, name) = remote.split_dataset().ok_or_else(|| {
            CommandError::Usage(format!(
                "{text}: name the dataset after the prefix, e.g. {}/NAME",
                remote.url()
            ))
        })?;
        if !replace {
            refuse_published(&parent, &name)?;
        }
        let staging = tempfile::Builder::new()
            .prefix("cellflight-staging-")
            .tempdir()
            .map_err(|e| CommandError::Usage(format!("cannot make a staging directory: {e}")))?;
        Ok(Self {
            build_dir: staging.path().join(name),
            publish_to: Some((parent, staging)),
        })
    }

    /// Where the dataset is built.
    pub(super) fn dir(&self) -> &Path {
        &self.build_dir
    }

    /// Whether an existing dataset in the build directory may be replaced:
    /// a staging directory is always fresh.
    pub(super) fn replaces_local(&self, replace: bool) -> bool {
        replace && self.publish_to.is_none()
    }

    /// Publishes the built dataset when the output is remote (the staging
    /// directory goes when this returns).
    pub(super) fn finish(self, replace: bool) -> Result<Option<PublishedVersion>, CommandError> {
        let Some((remote, _staging)) = &self.publish_to else {
            return Ok(None);
        };
        Ok(Some(publish(remote, &self.build_dir, replace)?))
    }
}
