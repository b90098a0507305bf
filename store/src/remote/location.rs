//! Where a server's datasets are: a local directory, or a prefix of an
//! object store named by URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
//! Parsed once, from `serve --data` or an `ingest`/`generate` output.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

use crate::StoreError;

/// Schemes that name an object store, even when written without `//`
/// (`s3:bucket/x` is a mistake, not a local directory called `s3:bucket`).
const URL_SCHEMES: [&str; 12] = [
    "file", "s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "http", "https", "memory",
];

/// The environment variables each store reads its settings from, as
/// `object_store`'s builders document them (credentials, region, endpoint).
const SETTINGS_PREFIXES: [&str; 3] = ["AWS_", "GOOGLE_", "AZURE_"];

#[derive(Debug, Clone)]
pub enum DataLocation {
    Local(PathBuf),
    Remote(RemoteStore),
}

impl DataLocation {
    /// A path, a `file://` URL (a local directory), or an object store URL.
    /// Settings (credentials, endpoint, region) come from the standard
    /// environment variables of the store (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        Self::parse_with(text, std::env::vars())
    }

    /// [`DataLocation::parse`] with the settings given, not read from the
    /// environment.
    pub fn parse_with(
        text: &str,
        settings: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::BadLocation {
            location: text.to_owned(),
            reason,
        };
        let Some((scheme, _)) = text.split_once(':') else {
            return Ok(Self::Local(text.into()));
        };
        if !URL_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Ok(Self::Local(text.into()));
        }
        let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
        if !text.contains("://") {
            return Err(bad(format!("a URL is written {scheme}://…")));
        }
        let (kind, _) = ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
        match kind {
            ObjectStoreScheme::Local => url
                .to_file_path()
                .map(Self::Local)
                .map_err(|()| bad("not a local path".into())),
            ObjectStoreScheme::AmazonS3
            | ObjectStoreScheme::GoogleCloudStorage
            | ObjectStoreScheme::MicrosoftAzure => {
                let settings = settings
                    .into_iter()
                    .filter(|(key, _)| SETTINGS_PREFIXES.iter().any(|p| key.starts_with(p)));
                let (store, prefix) =
                    object_store::parse_url_opts(&url, settings).map_err(|e| bad(e.to_string()))?;
                Ok(Self::Remote(RemoteStore {
                    url: Arc::from(url.as_str().trim_end_matches('/')),
                    store: Arc::from(store),
                    prefix,
                }))
            }
            other => Err(bad(format!(
                "{other:?} is not a store cellflight reads datasets from \
                 (local paths, file://, s3://, gs://, az://)"
            ))),
        }
    }
}

/// Two locations are the same when they name the same place.
impl PartialEq for DataLocation {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Local(a), Self::Local(b)) => a == b,
            (Self::Remote(a), Self::Remote(b)) => a.url == b.url,
            _ => false,
        }
    }
}

impl fmt::Display for DataLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::Remote(remote) => f.write_str(&remote.url),
        }
    }
}

/// A prefix of an object store: where a server's datasets are published.
#[derive(Clone)]
pub struct RemoteStore {
    url: Arc<str>,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

impl fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RemoteStore {
    /// `store` under `prefix`, called `url` in messages.
    pub fn new(url: &str, store: Arc<dyn ObjectStore>, prefix: ObjectPath) -> Self {
        Self {
            url: Arc::from(url.trim_end_matches('/')),
            store,
            prefix,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A URL that names one dataset (`s3://bucket/prefix/NAME`) as the
    /// prefix it is published under and its name.
    pub fn split_dataset(&self) -> Option<(RemoteStore, String)> {
        let name = self.prefix.filename()?.to_owned();
        let parent: ObjectPath = self
            .prefix
            .parts()
            .take(self.prefix.parts().count() - 1)
            .collect();
        let url = self.url.strip_suffix(&format!("/{name}"))?;
        Some((Self::new(url, self.store.clone(), parent), name))
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub(crate) fn prefix(&self) -> &ObjectPath {
        &self.prefix
    }

    /// The object at `parts` under the prefix.
    pub(crate) fn path<'a>(&self, parts: impl IntoIterator<Item = &'a str>) -> ObjectPath {
        parts
            .into_iter()
            .fold(self.prefix.clone(), ObjectPath::join)
    }

    /// `path` as a URL, for messages.
    pub(crate) fn url_of(&self, path: &ObjectPath) -> String {
        let under = path
            .as_ref()
            .strip_prefix(self.prefix.as_ref())
            .unwrap_or(path.as_ref())
            .trim_start_matches('/');
        format!("{}/{under}", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DataLocation, StoreError> {
        let settings = [
            ("AWS_ACCESS_KEY_ID", "key"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "us-east-1"),
            ("BUCKET", "not-a-setting"),
        ];
        DataLocation::parse_with(text, settings.map(|(k, v)| (k.to_owned(), v.to_owned())))
    }

    #[test]
    fn paths_and_file_urls_are_local_directories() {
        for (text, path) in [
            ("/data/atlas", "/data/atlas"),
            ("relative/dir", "relative/dir"),
            ("file:///data/atlas", "/data/atlas"),
            ("weird:name", "weird:name"),
        ] {
            match parse(text) {
                Ok(DataLocation::Local(found)) => assert_eq!(found, PathBuf::from(path)),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_s3_url_is_a_bucket_prefix() {
        let Ok(DataLocation::Remote(remote)) = parse("s3://atlases/human/") else {
            panic!("not remote");
        };
        assert_eq!(remote.url(), "s3://atlases/human");
        assert_eq!(remote.prefix().as_ref(), "human");
        let path = remote.path(["pbmc", "manifest.json"]);
        assert_eq!(path.as_ref(), "human/pbmc/manifest.json");
        assert_eq!(
            remote.url_of(&path),
            "s3://atlases/human/pbmc/manifest.json"
        );
    }

    #[test]
    fn a_dataset_url_is_its_prefix_and_name() {
        let Ok(DataLocation::Remote(remote)) = parse("s3://atlases/human/pbmc") else {
            panic!("not remote");
        };
        let (parent, name) = remote.split_dataset().unwrap();
        assert_eq!(
            (parent.url(), name.as_str()),
            ("s3://atlases/human", "pbmc")
        );
        assert_eq!(parent.prefix().as_ref(), "human");
        let Ok(DataLocation::Remote(bucket)) = parse("s3://atlases") else {
            panic!("not remote");
        };
        assert!(bucket.split_dataset().is_none());
    }

    #[test]
    fn a_store_url_is_never_taken_for_a_local_directory() {
        for text in [
            "s3:atlases/human",
            "memory:///x",
            "https://example.com/data",
        ] {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.contains(text), "{error}");
        }
    }
}
