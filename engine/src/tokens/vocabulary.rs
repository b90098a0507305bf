//! Token tables a server holds: `NAME.vocabulary.parquet` files in its
//! vocabulary directory, with a `key` (a gene key or a special token), a
//! `token_id` and a `median` column (docs/protocol.md). A table is known
//! by the SHA-256 of its file's bytes: that hash is its version, which
//! tickets carry, and the key of a bounded cache of parsed tables. Each
//! request naming a vocabulary opens its file: while the file is as it was
//! when last read (by `fstat` of the open file, [`known_files`]), its
//! hash and parsed table are taken from memory; else it is read whole,
//! hashed and, if new, parsed. So a file replaced under the same name
//! (renamed over, or rewritten in place) is picked up by the next plan,
//! and a ticket of the old one is refused.

mod known_files;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::cast;
use arrow_schema::DataType;
use bytes::Bytes;
use cellflight_sql::{ByteLru, CacheCost};
use cellflight_store::{DataLocation, MANIFEST_FILE};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest, Sha256};

use crate::config::EngineConfig;
use crate::error::EngineError;
use known_files::{FileState, KnownHashes};

/// The largest vocabulary file read, in bytes.
pub(crate) const MAX_VOCABULARY_BYTES: u64 = 64 << 20;
/// The most rows a vocabulary may have (Geneformer's has about 25,000
/// genes, scGPT's about 60,000).
pub(crate) const MAX_VOCABULARY_ROWS: usize = 1 << 20;
/// Memory for parsed vocabularies.
pub(crate) const VOCABULARY_CACHE_BYTES: usize = 256 << 20;

const FILE_SUFFIX: &str = ".vocabulary.parquet";

/// Keys listed in an error, at most.
const KEYS_SHOWN: usize = 20;

/// One row of a vocabulary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    pub(crate) token_id: u32,
    pub(crate) median: Option<f64>,
}

/// A parsed vocabulary.
#[derive(Debug)]
pub(crate) struct Vocabulary {
    pub(crate) name: String,
    /// SHA-256 of the file, lowercase hex.
    pub(crate) hash: String,
    entries: HashMap<String, Entry>,
}

impl Vocabulary {
    pub(crate) fn get(&self, key: &str) -> Option<Entry> {
        self.entries.get(key).copied()
    }

    /// The id of special token `key`, which the request needs.
    pub(crate) fn special(&self, key: &str, needed_for: &str) -> Result<u32, EngineError> {
        self.get(key).map(|entry| entry.token_id).ok_or_else(|| {
            self.unusable(format!("it has no {key} token, which {needed_for} needs"))
        })
    }

    pub(crate) fn unusable(&self, reason: String) -> EngineError {
        EngineError::BadVocabulary {
            name: self.name.clone(),
            reason,
        }
    }
}

impl CacheCost for Vocabulary {
    fn cost_bytes(&self) -> usize {
        let per_entry = size_of::<String>() + size_of::<Entry>() + 16;
        self.entries.keys().map(|key| key.len() + per_entry).sum()
    }
}

/// The vocabulary directory, the tables parsed from it by hash, and the
/// hash of each file by name while the file is unchanged.
#[derive(Debug)]
pub(crate) struct Vocabularies {
    directory: Option<PathBuf>,
    parsed: ByteLru<String, Vocabulary>,
    known: KnownHashes,
}

impl Vocabularies {
    /// The vocabularies of `config.vocabularies`, or else of the data
    /// directory when it holds datasets (not when it is one).
    pub(crate) fn of(config: &EngineConfig) -> Self {
        let local_data = match &config.data {
            DataLocation::Local(data) => (!data.join(MANIFEST_FILE).exists()).then(|| data.clone()),
            DataLocation::Remote(_) => None,
        };
        let directory = config.vocabularies.clone().or(local_data);
        Self {
            directory,
            parsed: ByteLru::new(VOCABULARY_CACHE_BYTES),
            known: KnownHashes::default(),
        }
    }

    /// Vocabulary `name` as its file is now: from memory while the file is
    /// unchanged, else read and hashed, and parsed when its hash is new.
    pub(crate) async fn load(&self, name: &str) -> Result<Arc<Vocabulary>, EngineError> {
        let Some(directory) = &self.directory else {
            return Err(EngineError::UnknownVocabulary {
                name: name.to_owned(),
                path: None,
            });
        };
        let path = directory.join(format!("{name}{FILE_SUFFIX}"));
        let owned = name.to_owned();
        let opening = move || open(&owned, path);
        let opened = blocking("opening a vocabulary", opening).await?;
        let (file, state) = opened.inspect_err(|_| self.known.forget(name))?;
        if let Some(unchanged) = self.unchanged(name, &state) {
            return Ok(unchanged);
        }
        let owned = name.to_owned();
        let read = move || read_hashed(&owned, file);
        let (bytes, hash) = blocking("reading a vocabulary", read).await??;
        let (owned, version) = (name.to_owned(), hash.clone());
        let parsing = move || parse(owned, version, &bytes);
        let vocabulary = (self.parsed)
            .get_or_try_insert(&hash, || async move {
                blocking("parsing a vocabulary", parsing).await?
            })
            .await?;
        self.known.remember(name, state, hash);
        Ok(vocabulary)
    }

    /// The table of `name` if its file is in the `state` it was last read
    /// in, and that table is still cached.
    fn unchanged(&self, name: &str, state: &FileState) -> Option<Arc<Vocabulary>> {
        self.parsed.get(&self.known.hash(name, state)?)
    }
}

/// A vocabulary file opened for reading, and its path (for errors).
#[derive(Debug)]
struct OpenFile {
    file: File,
    path: PathBuf,
}

async fn blocking<T: Send + 'static>(
    task: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| EngineError::TaskFailed {
            task,
            reason: error.to_string(),
        })
}

/// The file at `path`, opened, and its state from the open file's
/// metadata: of the file then read, whatever the path names by then.
fn open(name: &str, path: PathBuf) -> Result<(OpenFile, FileState), EngineError> {
    let unreadable = |error: std::io::Error| bad(name, format!("{}: {error}", path.display()));
    let file = File::open(&path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => EngineError::UnknownVocabulary {
            name: name.to_owned(),
            path: Some(path.clone()),
        },
        _ => unreadable(error),
    })?;
    let state = file
        .metadata()
        .and_then(|metadata| FileState::of(&metadata))
        .map_err(unreadable)?;
    Ok((OpenFile { file, path }, state))
}

/// The file's bytes (at most [`MAX_VOCABULARY_BYTES`]) and their hash.
fn read_hashed(name: &str, open: OpenFile) -> Result<(Bytes, String), EngineError> {
    let mut bytes = Vec::new();
    (open.file)
        .take(MAX_VOCABULARY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| bad(name, format!("{}: {error}", open.path.display())))?;
    if bytes.len() as u64 > MAX_VOCABULARY_BYTES {
        return Err(bad(
            name,
            format!("its file is larger than {MAX_VOCABULARY_BYTES} bytes"),
        ));
    }
    let hash = hash_of(&bytes);
    Ok((Bytes::from(bytes), hash))
}

fn hash_of(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn bad(name: &str, reason: String) -> EngineError {
    EngineError::BadVocabulary {
        name: name.to_owned(),
        reason,
    }
}

/// The table in `bytes`, checked: its row count before reading it, then
/// its columns' types, and no key or token id twice.
fn parse(name: String, hash: String, bytes: &Bytes) -> Result<Vocabulary, EngineError> {
    let invalid = |reason: String| bad(&name, reason);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .map_err(|e| invalid(format!("not a Parquet file: {e}")))?;
    let rows = builder.metadata().file_metadata().num_rows();
    if rows < 0 || rows as u64 > MAX_VOCABULARY_ROWS as u64 {
        return Err(invalid(format!(
            "it has {rows} rows, more than the {MAX_VOCABULARY_ROWS} a vocabulary may have"
        )));
    }
    let reader = builder
        .build()
        .map_err(|e| invalid(format!("unreadable: {e}")))?;
    let batches = reader
        .collect::<Result<Vec<RecordBatch>, _>>()
        .map_err(|e| invalid(format!("unreadable: {e}")))?;
    let mut entries = HashMap::with_capacity(rows as usize);
    let mut ids = HashSet::with_capacity(rows as usize);
    let (mut repeated_keys, mut repeated_ids) = (Vec::new(), Vec::new());
    for batch in &batches {
        let columns = Columns::of(batch).map_err(invalid)?;
        for row in 0..batch.num_rows() {
            let (key, entry) = columns.row(row).map_err(invalid)?;
            if !ids.insert(entry.token_id) {
                repeated_ids.push(entry.token_id.to_string());
            }
            if entries.insert(key.to_owned(), entry).is_some() {
                repeated_keys.push(format!("{key:?}"));
            }
        }
    }
    if !repeated_keys.is_empty() {
        return Err(invalid(listed("keys given more than once", &repeated_keys)));
    }
    if !repeated_ids.is_empty() {
        return Err(invalid(listed(
            "token ids given more than once",
            &repeated_ids,
        )));
    }
    Ok(Vocabulary {
        name,
        hash,
        entries,
    })
}

/// `what: a, b, c` (the first few, and how many more).
pub(crate) fn listed(what: &str, items: &[String]) -> String {
    let shown = items[..items.len().min(KEYS_SHOWN)].join(", ");
    match items.len().saturating_sub(KEYS_SHOWN) {
        0 => format!("{what}: {shown}"),
        more => format!("{what}: {shown} and {more} more"),
    }
}

/// A batch's three columns, in the types the table is read as.
struct Columns {
    keys: ArrayRef,
    token_ids: ArrayRef,
    /// The `token_id` column as sent, to tell a null from an id out of range.
    sent_ids: ArrayRef,
    medians: Option<ArrayRef>,
}

impl Columns {
    fn of(batch: &RecordBatch) -> Result<Self, String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("it has no {name} column"))
        };
        let keys = column("key")?;
        let keys = match keys.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                cast(keys, &DataType::Utf8).map_err(|e| e.to_string())?
            }
            other => return Err(format!("its key column is {other}, not text")),
        };
        let sent_ids = column("token_id")?.clone();
        if !sent_ids.data_type().is_integer() {
            return Err(format!(
                "its token_id column is {}, not integers",
                sent_ids.data_type()
            ));
        }
        // Out-of-range ids become nulls, found below with their keys.
        let token_ids = cast(&sent_ids, &DataType::UInt32).map_err(|e| e.to_string())?;
        let medians = match batch.column_by_name("median") {
            None => None,
            Some(medians) if medians.data_type().is_numeric() => {
                Some(cast(medians, &DataType::Float64).map_err(|e| e.to_string())?)
            }
            Some(medians) => {
                return Err(format!(
                    "its median column is {}, not numbers",
                    medians.data_type()
                ))
            }
        };
        Ok(Self {
            keys,
            token_ids,
            sent_ids,
            medians,
        })
    }

    fn row(&self, row: usize) -> Result<(&str, Entry), String> {
        let keys = self.keys.as_string::<i32>();
        if keys.is_null(row) {
            return Err(format!("row {row} has no key"));
        }
        let key = keys.value(row);
        let token_ids = self.token_ids.as_primitive::<UInt32Type>();
        if token_ids.is_null(row) {
            return Err(match self.sent_ids.is_null(row) {
                true => format!("key {key:?} has no token_id"),
                false => format!("the token_id of key {key:?} is not an unsigned 32-bit integer"),
            });
        }
        let median = self.medians.as_ref().and_then(|medians| {
            let medians = medians.as_primitive::<Float64Type>();
            medians.is_valid(row).then(|| medians.value(row))
        });
        Ok((
            key,
            Entry {
                token_id: token_ids.value(row),
                median,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;

    use super::*;

    /// A vocabulary file's bytes: (key, token id, median) rows.
    fn vocabulary_file(rows: &[(&str, i64, Option<f64>)]) -> Vec<u8> {
        let keys = StringArray::from_iter_values(rows.iter().map(|r| r.0));
        let ids = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        let medians = Float64Array::from_iter(rows.iter().map(|r| r.2));
        let batch = RecordBatch::try_from_iter([
            ("key", Arc::new(keys) as ArrayRef),
            ("token_id", Arc::new(ids) as ArrayRef),
            ("median", Arc::new(medians) as ArrayRef),
        ])
        .unwrap();
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        bytes
    }

    fn parsed(rows: &[(&str, i64, Option<f64>)]) -> Result<Vocabulary, String> {
        let bytes = Bytes::from(vocabulary_file(rows));
        parse("gf".into(), hash_of(&bytes), &bytes).map_err(|e| e.to_string())
    }

    #[test]
    fn a_vocabulary_maps_keys_to_ids_and_medians() {
        let vocabulary = parsed(&[("<pad>", 0, None), ("G1", 7, Some(2.5))]).unwrap();
        assert_eq!(
            vocabulary.get("G1"),
            Some(Entry {
                token_id: 7,
                median: Some(2.5)
            })
        );
        assert_eq!(vocabulary.special("<pad>", "padding").unwrap(), 0);
        let error = vocabulary.special("<cls>", "cls").unwrap_err().to_string();
        assert_eq!(
            error,
            "vocabulary gf cannot serve this request: it has no <cls> token, which cls needs"
        );
        assert_eq!(vocabulary.hash.len(), 64);
    }

    #[test]
    fn repeated_keys_and_ids_and_bad_ids_are_refused_naming_them() {
        let error = parsed(&[("A", 1, None), ("B", 2, None), ("A", 3, None)]).unwrap_err();
        assert!(
            error.ends_with(r#"keys given more than once: "A""#),
            "{error}"
        );
        let error = parsed(&[("A", 1, None), ("B", 1, None)]).unwrap_err();
        assert!(
            error.ends_with("token ids given more than once: 1"),
            "{error}"
        );
        let error = parsed(&[("A", -1, None)]).unwrap_err();
        assert!(
            error.ends_with(r#"the token_id of key "A" is not an unsigned 32-bit integer"#),
            "{error}"
        );
        let error = parsed(&[("A", 1 << 32, None)]).unwrap_err();
        assert!(error.contains("not an unsigned 32-bit integer"), "{error}");
    }

    #[test]
    fn a_file_past_the_bounds_or_not_parquet_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.vocabulary.parquet");
        std::fs::write(&path, vec![0u8; MAX_VOCABULARY_BYTES as usize + 1]).unwrap();
        let (file, _) = open("big", path).unwrap();
        let error = read_hashed("big", file).unwrap_err().to_string();
        assert!(error.contains("larger than 67108864 bytes"), "{error}");
        let error = open("none", dir.path().join("none.vocabulary.parquet"));
        assert!(matches!(error, Err(EngineError::UnknownVocabulary { .. })));
        let garbage = Bytes::from_static(b"not parquet at all");
        let error = parse("g".into(), hash_of(&garbage), &garbage).unwrap_err();
        assert!(error.to_string().contains("not a Parquet file"), "{error}");
    }

    /// Vocabularies served from `dir`, a directory without datasets.
    fn vocabularies(dir: &tempfile::TempDir) -> Vocabularies {
        Vocabularies::of(&EngineConfig::new(dir.path()))
    }

    /// Writes a vocabulary file at `path` giving gene `G1` token id `id`
    /// (any id makes as many bytes), last modified at `modified`.
    fn write_g1(path: &Path, id: i64, modified: SystemTime) -> FileState {
        std::fs::write(path, vocabulary_file(&[("G1", id, Some(1.0))])).unwrap();
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(modified).unwrap();
        FileState::of(&file.metadata().unwrap()).unwrap()
    }

    /// [`write_g1`] as vocabulary `gf`, modified `age` ago.
    fn write_gf(dir: &tempfile::TempDir, id: i64, age: Duration) -> FileState {
        write_g1(&gf_path(dir), id, SystemTime::now() - age)
    }

    fn gf_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("gf.vocabulary.parquet")
    }

    fn inode_and_size(path: &Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).unwrap();
        (metadata.ino(), metadata.size())
    }

    fn token_of_g1(vocabulary: &Vocabulary) -> u32 {
        vocabulary.get("G1").unwrap().token_id
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn an_unchanged_file_is_served_from_memory_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let vocabularies = vocabularies(&dir);
        let state = write_gf(&dir, 7, HOUR);
        let first = vocabularies.load("gf").await.unwrap();
        let remembered = vocabularies.unchanged("gf", &state).unwrap();
        assert!(Arc::ptr_eq(&remembered, &first), "known without a read");
        let again = vocabularies.load("gf").await.unwrap();
        assert!(Arc::ptr_eq(&again, &first));
    }

    #[tokio::test]
    async fn a_file_rewritten_in_place_to_as_many_bytes_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let vocabularies = vocabularies(&dir);
        write_gf(&dir, 7, HOUR);
        let before = inode_and_size(&gf_path(&dir));
        let first = vocabularies.load("gf").await.unwrap();
        write_gf(&dir, 8, HOUR - Duration::from_secs(1));
        assert_eq!(inode_and_size(&gf_path(&dir)), before);
        let second = vocabularies.load("gf").await.unwrap();
        assert_eq!((token_of_g1(&first), token_of_g1(&second)), (7, 8));
        assert_ne!(second.hash, first.hash);
    }

    #[tokio::test]
    async fn a_file_renamed_over_with_the_same_size_and_times_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let vocabularies = vocabularies(&dir);
        let modified = SystemTime::now() - HOUR;
        write_g1(&gf_path(&dir), 7, modified);
        let first = vocabularies.load("gf").await.unwrap();
        let staged = dir.path().join("staged");
        write_g1(&staged, 8, modified);
        assert_eq!(inode_and_size(&staged).1, inode_and_size(&gf_path(&dir)).1);
        std::fs::rename(&staged, gf_path(&dir)).unwrap();
        let second = vocabularies.load("gf").await.unwrap();
        assert_eq!((token_of_g1(&first), token_of_g1(&second)), (7, 8));
    }

    #[tokio::test]
    async fn a_file_written_just_now_is_read_again_however_soon_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let vocabularies = vocabularies(&dir);
        // Written in place twice, likely within one tick of the file
        // system's clock: the same inode, size and times.
        let write = |id| std::fs::write(gf_path(&dir), vocabulary_file(&[("G1", id, None)]));
        write(7).unwrap();
        let first = vocabularies.load("gf").await.unwrap();
        let state = FileState::of(&std::fs::metadata(gf_path(&dir)).unwrap()).unwrap();
        assert!(vocabularies.unchanged("gf", &state).is_none());
        write(8).unwrap();
        let second = vocabularies.load("gf").await.unwrap();
        assert_eq!((token_of_g1(&first), token_of_g1(&second)), (7, 8));
    }

    #[tokio::test]
    async fn a_removed_file_is_unknown_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let vocabularies = vocabularies(&dir);
        let state = write_gf(&dir, 7, HOUR);
        vocabularies.load("gf").await.unwrap();
        std::fs::remove_file(gf_path(&dir)).unwrap();
        let error = vocabularies.load("gf").await.unwrap_err();
        assert!(matches!(error, EngineError::UnknownVocabulary { .. }));
        assert!(vocabularies.unchanged("gf", &state).is_none());
    }

    #[test]
    fn hashes_are_sha256_in_lowercase_hex() {
        assert_eq!(
            hash_of(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
