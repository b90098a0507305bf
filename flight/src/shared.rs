//! What every call to a server shares: the engine, who may call, the open
//! streams, the counters, the request size limit and the replicas.

use std::sync::Arc;

use cellflight_engine::Engine;

use crate::auth::Authenticator;
use crate::memory_budget::MemoryBudget;
use crate::metrics::Metrics;
use crate::replicas::Replicas;
use crate::stream_slots::StreamSlots;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    /// Who may call, and what each may read.
    pub(crate) auth: Authenticator,
    /// The DoGet streams open now, within the configured limits.
    pub(crate) streams: Arc<StreamSlots>,
    /// What open training streams may hold at their worst (--max-memory).
    pub(crate) memory: Arc<MemoryBudget>,
    pub(crate) metrics: Arc<Metrics>,
    /// Largest message a client may send.
    pub(crate) max_request_bytes: usize,
    /// The replicas a training stream's endpoints list as locations.
    pub(crate) replicas: Replicas,
}
