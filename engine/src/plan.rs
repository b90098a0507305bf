//! A request made concrete against one dataset (or collection) version: its cohort, the
//! sampler's plan, and what each minibatch holds. Built when a stream is
//! planned and again, from the ticket, for each partition served (the
//! caches make that cheap), so the server keeps nothing per request
//! between the two.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use cellflight_sampler::{Fetches, Plan as SamplerPlan};
use cellflight_schemas::{
    minibatch_schema, Format, MinibatchLayout, PlanMetadata, StreamRequest, StreamTicket,
    Tokenizer, ValueType,
};
use cellflight_sql::CatalogSnapshot;
use cellflight_store::{Served, Table};

use crate::cohort::{sampler_config, StreamCohort};
use crate::collection_rows::CollectionRows;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::genes::GeneSpace;
use crate::ipc::is_supported;
use crate::minibatch::{ExpressionColumns, Output};
use crate::partition::SEND_QUEUE_BYTES;
use crate::rows::{MappedMatrix, RemoteRows, RowSource};
use crate::tokens::{Tokenization, Vocabulary};

/// Largest minibatch a request may ask for, in the worst case.
pub const MAX_MINIBATCH_BYTES: u64 = 64 << 20;

/// Largest FlightInfo a plan may answer: its tickets together (each holds
/// the whole request, so that any replica can serve it alone).
pub const MAX_PLAN_TICKET_BYTES: u64 = 64 << 20;

/// Bookkeeping of a fetch a cell: its id, where its row lies, its place in
/// the fetch's order (with room to spare).
const FETCH_BYTES_A_CELL: u64 = 32;

/// What a stream costs beside its minibatches: its producer thread's stack
/// and the transport's buffers (HTTP/2 frames, the encoder's buffer).
const STREAM_OVERHEAD_BYTES: u64 = 4 << 20;

/// A planned stream: what [`Engine::partition`] serves.
#[derive(Debug)]
pub struct Plan {
    request: StreamRequest,
    dataset: Served,
    cohort: StreamCohort,
    sampler: SamplerPlan,
    /// The largest minibatch this plan can make, in bytes.
    max_minibatch_bytes: u64,
    /// `tokens` only: the vocabulary's content hash.
    vocabulary_hash: Option<String>,
    pub(crate) output: Output,
    pub(crate) rows: Arc<dyn RowSource>,
}

impl Plan {
    pub(crate) async fn build(
        engine: &Engine,
        snapshot: &CatalogSnapshot,
        dataset: Served,
        mut request: StreamRequest,
    ) -> Result<Self, EngineError> {
        // Tickets name the dataset: on a server with another default
        // dataset they still mean the same stream.
        request.dataset = Some(dataset.name().to_string());
        let vocabulary = match &request.tokenizer {
            Some(tokenizer) => Some(engine.vocabularies.load(&tokenizer.vocabulary).await?),
            None => None,
        };
        let vocabulary_hash = vocabulary.as_ref().map(|v| v.hash.clone());
        check_ticket_bytes(&request, dataset.version(), vocabulary_hash.as_deref())?;
        let (Some(stored), Some(rows)) = (dataset.matrix_types(), row_source(&dataset)) else {
            return Err(EngineError::NoMatrix {
                dataset: dataset.name().to_string(),
            });
        };
        let genes = GeneSpace::resolve(engine, snapshot, &dataset, &request).await?;
        let layout = MinibatchLayout {
            format: request.format,
            n_genes: genes.n_genes(),
            value_type: match (request.format, request.transform) {
                (Format::Csr, None) => stored.1,
                _ => ValueType::Float32,
            },
            tokens: request.tokenizer.as_ref().map(|t| t.layout()),
        };
        // A csr cell brings no more entries than the most any cell of the
        // dataset (or any member) stores, which the footer of its cells
        // table says for free.
        let max_cell_genes = dataset
            .largest_cell_genes()
            .unwrap_or(dataset.n_stored_genes());
        let max_minibatch_bytes = layout.max_batch_bytes(request.batch_size, max_cell_genes);
        check_minibatch_bytes(max_minibatch_bytes, &layout, request.batch_size)?;
        // A validated request has a tokenizer exactly when its format is
        // `tokens`, and a vocabulary was loaded for that tokenizer.
        let expression = match request.tokenizer.as_ref().zip(vocabulary.as_deref()) {
            Some((tokenizer, vocabulary)) => ExpressionColumns::Tokens(
                tokenization(engine, &dataset, &request, tokenizer, vocabulary, &genes).await?,
            ),
            None if request.format == Format::Dense => ExpressionColumns::Dense,
            None => ExpressionColumns::Csr,
        };
        let obs = obs_columns(engine, &dataset, &request.obs_columns).await?;
        let obs_fields: Vec<_> = obs.iter().map(|c| c.field().clone()).collect();
        let output = Output {
            schema: Arc::new(minibatch_schema(&layout, &obs_fields)),
            layout,
            genes,
            transform: request.transform,
            obs,
            stored,
            expression,
        };
        let cohort = StreamCohort::resolve(engine, snapshot, &dataset, &request).await?;
        let sampler = cohort.plan(&sampler_config(&request, cohort.len()))?;
        Ok(Self {
            request,
            dataset,
            cohort,
            sampler,
            max_minibatch_bytes,
            vocabulary_hash,
            output,
            rows,
        })
    }

    /// The same plan, its rows read from `rows` (which must hold the same
    /// cells as the dataset's matrix).
    pub fn reading_from(self, rows: Arc<dyn RowSource>) -> Self {
        Self { rows, ..self }
    }

    /// The most memory a stream of this plan holds while it is served,
    /// whatever its client's pace: its send queue (a fetch's minibatches,
    /// at most [`SEND_QUEUE_BYTES`], or one larger minibatch alone), the
    /// minibatch being made, a fetch's bookkeeping, and the stream's own
    /// overhead. What a server's memory budget reserves for it.
    pub fn stream_memory_bytes(&self) -> u64 {
        let request = &self.request;
        let minibatch = self.max_minibatch_bytes;
        let fetch = u64::from(request.fetch_factor) + 1;
        let queue = minibatch
            .saturating_mul(fetch)
            .min(u64::from(SEND_QUEUE_BYTES))
            .max(minibatch);
        let fetch_cells = u64::from(request.batch_size) * u64::from(request.fetch_factor);
        queue + minibatch + fetch_cells * FETCH_BYTES_A_CELL + STREAM_OVERHEAD_BYTES
    }

    /// The request as planned (its dataset named).
    pub fn request(&self) -> &StreamRequest {
        &self.request
    }

    /// The dataset or collection streamed.
    pub fn dataset(&self) -> &Served {
        &self.dataset
    }

    /// The schema of every minibatch.
    pub fn schema(&self) -> &SchemaRef {
        &self.output.schema
    }

    /// Cells in the cohort.
    pub fn cohort_size(&self) -> u64 {
        self.cohort.len()
    }

    pub fn batches_per_partition(&self) -> u64 {
        self.sampler.batches_per_partition()
    }

    /// Rows the whole epoch sends, padding included.
    pub fn total_records(&self) -> u64 {
        self.sampler.total_records()
    }

    /// What a client needs to know of the plan beside its tickets.
    pub fn metadata(&self) -> PlanMetadata {
        PlanMetadata {
            cohort_size: self.cohort_size(),
            batches_per_partition: self.batches_per_partition(),
            seed: self.request.seed,
            dataset_version: self.dataset.version().to_string(),
            tokenizer: (self.request.tokenizer.as_ref())
                .zip(self.vocabulary_hash.as_deref())
                .map(|(tokenizer, hash)| tokenizer.spec(hash)),
        }
    }

    /// Refuses to serve a ticket planned with other vocabulary content
    /// than the server's now (`ticket_hash`: the ticket's).
    pub(crate) fn check_vocabulary(&self, ticket_hash: Option<&str>) -> Result<(), EngineError> {
        match (&self.request.tokenizer, ticket_hash, &self.vocabulary_hash) {
            (Some(tokenizer), Some(ticket), Some(current)) if ticket != current => {
                Err(EngineError::VocabularyChanged {
                    name: tokenizer.vocabulary.clone(),
                    ticket_hash: ticket.to_owned(),
                    current_hash: current.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// One ticket a partition, each from its first batch.
    pub fn tickets(&self) -> impl Iterator<Item = StreamTicket> + '_ {
        (0..self.request.partitions).map(|partition| StreamTicket {
            request: self.request.clone(),
            partition,
            dataset_version: self.dataset.version().to_string(),
            vocabulary_hash: self.vocabulary_hash.clone(),
            start_batch: 0,
        })
    }

    /// The fetches of `partition` from `start_batch` on.
    pub(crate) fn fetches(&self, partition: u32, start_batch: u64) -> Result<Fetches, EngineError> {
        Ok(self.sampler.fetches(partition, start_batch)?)
    }

    /// The cell ids of cohort positions (ascending positions give
    /// ascending ids: the cohort is sorted).
    pub(crate) fn cell_ids(&self, positions: &[u64]) -> Vec<u64> {
        positions.iter().map(|&p| self.cohort.cell_id(p)).collect()
    }
}

/// Where the rows of `dataset` are read from, if it has a matrix.
fn row_source(dataset: &Served) -> Option<Arc<dyn RowSource>> {
    match dataset {
        Served::Dataset(dataset) => match dataset.remote_matrix() {
            Some(matrix) => Some(Arc::new(RemoteRows::of(matrix.clone()))),
            None => {
                MappedMatrix::of(dataset.clone()).map(|rows| Arc::new(rows) as Arc<dyn RowSource>)
            }
        },
        Served::Collection(collection) => {
            CollectionRows::of(collection.clone()).map(|rows| Arc::new(rows) as Arc<dyn RowSource>)
        }
    }
}

/// The `obs_columns` of `dataset`, each whole, from the column cache.
async fn obs_columns(
    engine: &Engine,
    dataset: &Served,
    names: &[String],
) -> Result<Vec<Arc<crate::columns::CachedColumn>>, EngineError> {
    let mut obs = Vec::with_capacity(names.len());
    for column in names {
        let read = engine.columns.get_or_read(dataset, Table::Cells, column);
        let read = read.await.map_err(|e| e.in_key("obs_columns"))?;
        if !is_supported(read.field().data_type()) {
            return Err(EngineError::Unservable(format!(
                "obs_columns: column {column:?} is of type {}, which minibatches do not carry",
                read.field().data_type()
            )));
        }
        obs.push(read);
    }
    Ok(obs)
}

/// How the cells of a `tokens` stream become tokens: the output genes'
/// keys (values of `gene_column`) looked up in `vocabulary`.
async fn tokenization(
    engine: &Engine,
    dataset: &Served,
    request: &StreamRequest,
    tokenizer: &Tokenizer,
    vocabulary: &Vocabulary,
    genes: &GeneSpace,
) -> Result<Tokenization, EngineError> {
    let column = request.gene_column.as_deref().unwrap_or(dataset.gene_key());
    let keys = engine.columns.get_or_read(dataset, Table::Genes, column);
    let keys = keys.await.map_err(|e| e.in_key("gene_column"))?;
    let seeds = (request.seed, request.epoch);
    Tokenization::new(tokenizer, vocabulary, keys.array(), genes, seeds)
}

/// Refuses a plan whose tickets would add up to more than
/// [`MAX_PLAN_TICKET_BYTES`], before any ticket is made.
fn check_ticket_bytes(
    request: &StreamRequest,
    version: &str,
    vocabulary_hash: Option<&str>,
) -> Result<(), EngineError> {
    let ticket = StreamTicket {
        request: request.clone(),
        partition: request.partitions.saturating_sub(1),
        dataset_version: version.to_owned(),
        vocabulary_hash: vocabulary_hash.map(str::to_owned),
        start_batch: 0,
    };
    let ticket_bytes = ticket.to_json().len() as u64;
    let total = u64::from(request.partitions) * ticket_bytes;
    if total > MAX_PLAN_TICKET_BYTES {
        return Err(EngineError::Unservable(format!(
            "{} partitions of {ticket_bytes}-byte tickets make {total} bytes of tickets, above the {MAX_PLAN_TICKET_BYTES}-byte limit of a plan; use fewer partitions or a shorter query",
            request.partitions
        )));
    }
    Ok(())
}

fn check_minibatch_bytes(
    worst: u64,
    layout: &MinibatchLayout,
    batch_size: u32,
) -> Result<(), EngineError> {
    if worst > MAX_MINIBATCH_BYTES {
        return Err(EngineError::Unservable(format!(
            "a minibatch of {batch_size} cells could reach {worst} bytes ({} genes, {}), above the {MAX_MINIBATCH_BYTES}-byte limit; lower batch_size or {}",
            layout.n_genes,
            layout.format.name(),
            match layout.format {
                Format::Tokens => "tokenizer.max_length",
                Format::Csr | Format::Dense => "select fewer genes",
            }
        )));
    }
    Ok(())
}
