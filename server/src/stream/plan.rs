//! A request made concrete against one dataset version: its cohort, the
//! sampler's plan, and what each minibatch holds. Built for GetFlightInfo
//! and again, from the ticket, for each DoGet (the caches make that cheap),
//! so the server keeps nothing per request between the two.

use std::sync::Arc;

use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use cellflight_sampler::{Fetches, Plan};
use cellflight_schemas::{
    minibatch_schema, Format, MinibatchLayout, StreamRequest, StreamTicket, ValueType,
};
use cellflight_sql::CatalogSnapshot;
use cellflight_store::{Dataset, Table};

use super::assemble::Output;
use super::cohort::{sampler_config, StreamCohort};
use super::genes::GeneSpace;
use super::ipc::is_supported;
use crate::error::ServiceError;
use crate::state::ServerState;

/// Largest minibatch a request may ask for, in the worst case.
pub const MAX_MINIBATCH_BYTES: u64 = 64 << 20;

pub struct StreamPlan {
    pub request: StreamRequest,
    pub dataset: Arc<Dataset>,
    pub cohort: StreamCohort,
    pub sampler: Plan,
    pub output: Output,
}

impl StreamPlan {
    pub async fn build(
        state: &ServerState,
        snapshot: &CatalogSnapshot,
        dataset: Arc<Dataset>,
        mut request: StreamRequest,
    ) -> Result<Self, ServiceError> {
        let manifest = dataset.manifest();
        // Tickets name the dataset: on a server with another default
        // dataset they still mean the same stream.
        request.dataset = Some(manifest.name.to_string());
        let Some(matrix) = &manifest.matrix else {
            return Err(ServiceError::FailedPrecondition(format!(
                "dataset {} is obs-only: it has no matrix to stream",
                manifest.name
            )));
        };
        let genes = GeneSpace::resolve(state, snapshot, &dataset, &request).await?;
        let layout = MinibatchLayout {
            format: request.format,
            n_genes: genes.n_genes(),
            value_type: match (request.format, request.transform) {
                (Format::Csr, None) => matrix.value_type,
                _ => ValueType::Float32,
            },
        };
        check_batch_bytes(&layout, request.batch_size)?;
        let mut obs = Vec::with_capacity(request.obs_columns.len());
        for column in &request.obs_columns {
            let read = state.columns.get_or_read(&dataset, Table::Cells, column);
            let read = read.await.map_err(|e| e.in_key("obs_columns"))?;
            if !is_supported(read.field().data_type()) {
                return Err(ServiceError::InvalidArgument(format!(
                    "obs_columns: column {column:?} is of type {}, which minibatches do not carry",
                    read.field().data_type()
                )));
            }
            obs.push(read);
        }
        let obs_fields: Vec<_> = obs.iter().map(|c| c.field().clone()).collect();
        let output = Output {
            schema: Arc::new(minibatch_schema(&layout, &obs_fields)),
            layout,
            genes,
            transform: request.transform,
            obs,
            stored: (matrix.index_type, matrix.value_type),
        };
        let cohort = StreamCohort::resolve(state, snapshot, &dataset, &request).await?;
        let sampler = cohort.plan(&sampler_config(&request, cohort.len()))?;
        Ok(Self {
            request,
            dataset,
            cohort,
            sampler,
            output,
        })
    }

    /// The answer to GetFlightInfo: one endpoint a partition, each with its
    /// ticket.
    pub fn flight_info(&self, descriptor: FlightDescriptor) -> Result<FlightInfo, ServiceError> {
        let version = &self.dataset.manifest().version;
        let metadata = serde_json::json!({
            "cohort_size": self.cohort.len(),
            "batches_per_partition": self.sampler.batches_per_partition(),
            "seed": self.request.seed,
            "dataset_version": version,
        });
        let endpoints = (0..self.request.partitions).map(|partition| {
            let ticket = StreamTicket {
                request: self.request.clone(),
                partition,
                dataset_version: version.clone(),
                start_batch: 0,
            };
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.to_json()))
        });
        let info = FlightInfo::new()
            .try_with_schema(&self.output.schema)?
            .with_descriptor(descriptor)
            .with_total_records(self.sampler.total_records() as i64)
            .with_app_metadata(metadata.to_string());
        Ok(endpoints.fold(info, FlightInfo::with_endpoint))
    }

    /// The fetches of `partition` from `start_batch` on.
    pub fn fetches(&self, partition: u32, start_batch: u64) -> Result<Fetches, ServiceError> {
        Ok(self.sampler.fetches(partition, start_batch)?)
    }

    /// The cell ids of cohort positions (ascending positions give
    /// ascending ids: the cohort is sorted).
    pub fn cell_ids(&self, positions: &[u64]) -> Vec<u64> {
        positions.iter().map(|&p| self.cohort.cell_id(p)).collect()
    }
}

fn check_batch_bytes(layout: &MinibatchLayout, batch_size: u32) -> Result<(), ServiceError> {
    let worst = layout.max_batch_bytes(batch_size);
    if worst > MAX_MINIBATCH_BYTES {
        return Err(ServiceError::InvalidArgument(format!(
            "a minibatch of {batch_size} cells could reach {worst} bytes ({} genes, {}), above the {MAX_MINIBATCH_BYTES}-byte limit; lower batch_size or select fewer genes",
            layout.n_genes,
            match layout.format {
                Format::Csr => "csr",
                Format::Dense => "dense",
            }
        )));
    }
    Ok(())
}
