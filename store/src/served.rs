//! What a server serves under a name: a dataset, or a collection of
//! datasets. Everything a request needs to know of either, without
//! caring which.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_schema::{FieldRef, Schema, SchemaRef};
use cellflight_schemas::{IndexType, ValueType};

use crate::collection::Collection;
use crate::{Dataset, StoreError, Table, GENE_ID};

#[derive(Debug, Clone)]
pub enum Served {
    Dataset(Arc<Dataset>),
    Collection(Arc<Collection>),
}

impl Served {
    pub fn name(&self) -> &str {
        match self {
            Self::Dataset(d) => d.manifest().name.as_str(),
            Self::Collection(c) => c.name().as_str(),
        }
    }

    /// Changes whenever what is served under the name does (for a
    /// collection: its definition or any member's version).
    pub fn version(&self) -> &str {
        match self {
            Self::Dataset(d) => &d.manifest().version,
            Self::Collection(c) => c.version(),
        }
    }

    pub fn n_cells(&self) -> u64 {
        match self {
            Self::Dataset(d) => d.manifest().n_cells,
            Self::Collection(c) => c.n_cells(),
        }
    }

    /// Genes of the gene space: rows of `genes`.
    pub fn n_genes(&self) -> u64 {
        match self {
            Self::Dataset(d) => d.manifest().n_genes,
            Self::Collection(c) => c.n_genes(),
        }
    }

    pub fn nnz(&self) -> u64 {
        match self {
            Self::Dataset(d) => d.manifest().nnz,
            Self::Collection(c) => c.nnz(),
        }
    }

    pub fn cells_schema(&self) -> SchemaRef {
        match self {
            Self::Dataset(d) => d.cells_table().schema().clone(),
            Self::Collection(c) => {
                let fields: Vec<FieldRef> = c.cells().iter().map(|c| c.field.clone()).collect();
                Arc::new(Schema::new(fields))
            }
        }
    }

    pub fn genes_schema(&self) -> SchemaRef {
        match self {
            Self::Dataset(d) => d.genes_table().schema().clone(),
            Self::Collection(c) => c.genes_table().schema(),
        }
    }

    /// Column `name` of `table`, all rows in order, with its field.
    pub fn column(&self, table: Table, name: &str) -> Result<(FieldRef, ArrayRef), StoreError> {
        match self {
            Self::Dataset(d) => d.column(table, name),
            Self::Collection(c) => c.column(table, name),
        }
    }

    /// The `genes` column that names genes when a request does not say:
    /// a collection's gene key.
    pub fn gene_key(&self) -> &str {
        match self {
            Self::Dataset(_) => GENE_ID,
            Self::Collection(c) => &c.definition().gene_key,
        }
    }

    /// The types rows are stored (or, for a collection, read) in; `None`
    /// without a matrix.
    pub fn matrix_types(&self) -> Option<(IndexType, ValueType)> {
        match self {
            Self::Dataset(d) => d
                .manifest()
                .matrix
                .as_ref()
                .map(|m| (m.index_type, m.value_type)),
            Self::Collection(c) => c.matrix_types(),
        }
    }

    /// Width of the rows as read: a dataset's genes; a collection's
    /// stored space (its members' genes united).
    pub fn n_stored_genes(&self) -> u64 {
        match self {
            Self::Dataset(d) => d.manifest().n_genes,
            Self::Collection(c) => c.n_stored_genes(),
        }
    }

    /// The stored position of each `gene_idx`; `None` when they are one.
    pub fn gene_space(&self) -> Option<&[u32]> {
        match self {
            Self::Dataset(_) => None,
            Self::Collection(c) => c.gene_space(),
        }
    }

    /// The most genes one cell stores, from the footers' statistics.
    pub fn largest_cell_genes(&self) -> Option<u64> {
        match self {
            Self::Dataset(d) => d.largest_cell_genes(),
            Self::Collection(c) => c.largest_cell_genes(),
        }
    }
}
