//! SQL over cellflight datasets' cell and gene metadata: a catalog of pinned
//! dataset versions (and collections of them), read-only bounded queries, and cohorts (SQL → sorted
//! cell ids).

mod access;
mod cache;
mod catalog;
mod cohort;
mod collection_tables;
mod error;
mod genes;
mod memory;
mod pinned_store;
mod planning;
mod query;
mod scan;
mod series_bounds;
mod session;
mod shape;
mod value_bounds;
mod weights;

pub use access::Access;
pub use cache::{ByteLru, CacheCost};
pub use catalog::{CatalogSnapshot, CATALOG};
pub use cohort::{cohort, Cohort, CohortCache, CohortKey, CohortQuery};
pub use datafusion::common::ScalarValue;
pub use datafusion::prelude::SessionContext;
pub use error::{SqlError, SqlErrorKind};
pub use genes::select_genes;
pub use query::{describe_query, open_query, run_query, BoundedStream, QueryResult};
pub use series_bounds::MAX_SERIES_ROWS;
pub use session::{SqlEngine, SqlLimits};
pub use shape::MAX_SQL_OPERATORS;
pub use value_bounds::{MAX_CALL_BYTES, MAX_VALUE_BYTES};
pub use weights::{cohort_weights, weights_sql, WeightedCells, Weighting};
