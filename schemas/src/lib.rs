//! The cellflight contract, shared by every crate: what a dataset on disk
//! looks like (its name rules, its manifest, the Arrow schema of its
//! expression matrix), and what a client sends and receives (the stream
//! request, tickets, the schema of minibatches, the JSON `app_metadata` of
//! listings, plans and minibatches, ad hoc SQL). Nothing here does I/O.

mod collection;
mod dataset_metadata;
mod dataset_name;
mod dtype;
mod json;
mod manifest;
mod matrix_schema;
mod minibatch_schema;
mod plan_metadata;
mod request;
mod request_error;
mod sql_request;
mod ticket;
mod tokenizer;

pub use collection::{
    CollectionDefinition, DefinitionError, Join, COLLECTION_SUFFIX, DEFAULT_GENE_KEY,
    MAX_COLLECTION_FILE_BYTES, MAX_COLLECTION_MEMBERS, MAX_GENE_KEY_BYTES,
};
pub use dataset_metadata::DatasetMetadata;
pub use dataset_name::{DatasetName, InvalidDatasetName};
pub use dtype::{IndexType, ValueType, ValueTypeScan};
pub use manifest::{
    Categorical, Manifest, ManifestError, MatrixLayout, Provenance, TableLayout, FORMAT_NAME,
    FORMAT_VERSION,
};
pub use matrix_schema::{matrix_schema, INDICES_COLUMN, VALUES_COLUMN};
pub use minibatch_schema::{minibatch_schema, MinibatchLayout, N_GENES_METADATA_KEY};
pub use plan_metadata::{BatchPosition, PlanMetadata};
pub use request::{
    bounds, Format, Sampling, StreamRequest, Transform, CELL_ID_COLUMN, IS_PADDING_COLUMN,
    RESERVED_COLUMNS, X_COLUMN,
};
pub use request_error::RequestError;
pub use sql_request::SqlRequest;
pub use ticket::StreamTicket;
pub use tokenizer::{
    token_bounds, Padding, TokenLayout, Tokenizer, TokenizerKind, TokenizerSpec,
    ATTENTION_MASK_COLUMN, CLS_TOKEN, DEFAULT_MAX_LENGTH, DEFAULT_N_BINS, EOS_TOKEN,
    INPUT_IDS_COLUMN, PAD_TOKEN,
};
