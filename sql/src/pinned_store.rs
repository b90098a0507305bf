//! A read-only object store over one dataset version's open Parquet files.
//!
//! A dataset can be replaced on disk at any time (`ingest --force` renames
//! the new directory in and deletes the old one), so reading by path could
//! see another version or nothing. This store reads only through the file
//! handles `Dataset` opened, with positioned reads, so a query sees exactly
//! the version its catalog snapshot pinned (Unix keeps unlinked files alive).

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cellflight_store::{Dataset, TableFile};
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

const STORE: &str = "cellflight";
pub(crate) const CELLS: &str = "cells.parquet";
pub(crate) const GENES: &str = "genes.parquet";

/// The Parquet files of one dataset version.
pub(crate) struct PinnedStore {
    dataset: Arc<Dataset>,
}

impl PinnedStore {
    pub(crate) fn new(dataset: Arc<Dataset>) -> Self {
        Self { dataset }
    }

    fn file(dataset: &Dataset, location: &Path) -> object_store::Result<TableFile> {
        match location.as_ref() {
            CELLS => Ok(dataset.cells_table().clone()),
            GENES => Ok(dataset.genes_table().clone()),
            other => Err(not_found(other)),
        }
    }

    fn meta(&self, location: &Path) -> object_store::Result<ObjectMeta> {
        let stat = Self::file(&self.dataset, location)?
            .file()
            .metadata()
            .map_err(|e| generic(e.into()))?;
        let modified = stat.modified().map_err(|e| generic(e.into()))?;
        Ok(ObjectMeta {
            location: location.clone(),
            last_modified: DateTime::<Utc>::from(modified),
            size: stat.len(),
            // The version is unique to each write: caches keyed on it never
            // mix versions.
            e_tag: Some(self.dataset.manifest().version.clone()),
            version: None,
        })
    }

    async fn read_ranges(
        &self,
        location: &Path,
        ranges: Vec<Range<u64>>,
    ) -> object_store::Result<Vec<Bytes>> {
        let file = Self::file(&self.dataset, location)?;
        // Positioned reads: concurrent readers share no cursor.
        tokio::task::spawn_blocking(move || {
            ranges.iter().map(|r| read_range(file.file(), r)).collect()
        })
        .await
        .map_err(|e| generic(e.into()))?
    }
}

fn read_range(file: &File, range: &Range<u64>) -> object_store::Result<Bytes> {
    let len = usize::try_from(range.end - range.start).map_err(|e| generic(e.into()))?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, range.start)
        .map_err(|e| generic(e.into()))?;
    Ok(Bytes::from(buf))
}

fn not_found(path: &str) -> object_store::Error {
    object_store::Error::NotFound {
        path: path.to_string(),
        source: "a dataset holds only cells.parquet and genes.parquet".into(),
    }
}

fn generic(source: Box<dyn std::error::Error + Send + Sync>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source,
    }
}

fn read_only() -> object_store::Error {
    object_store::Error::NotSupported {
        source: "cellflight datasets are read-only through SQL".into(),
    }
}

impl fmt::Display for PinnedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.dataset.manifest();
        write!(f, "PinnedStore({}-{})", m.name, m.version)
    }
}

impl fmt::Debug for PinnedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[async_trait]
impl ObjectStore for PinnedStore {
    async fn put_opts(
        &self,
        _: &Path,
        _: PutPayload,
        _: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(read_only())
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only())
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let meta = self.meta(location)?;
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r.as_range(meta.size).map_err(|e| generic(e.into()))?,
            None => 0..meta.size,
        };
        let chunks = if options.head {
            Vec::new()
        } else {
            self.read_ranges(location, vec![range.clone()]).await?
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::iter(chunks.into_iter().map(Ok)).boxed()),
            meta,
            range,
            attributes: Attributes::default(),
        })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.read_ranges(location, ranges.to_vec()).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(read_only())).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix = prefix.cloned().unwrap_or_default();
        let metas: Vec<_> = [CELLS, GENES]
            .into_iter()
            .map(Path::from)
            .filter(|p| p.prefix_matches(&prefix))
            .map(|p| self.meta(&p))
            .collect();
        stream::iter(metas).boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let objects = self.list(prefix).collect::<Vec<_>>().await;
        Ok(ListResult {
            common_prefixes: Vec::new(),
            objects: objects.into_iter().collect::<Result<_, _>>()?,
        })
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
        Err(read_only())
    }
}
