"""`Client.anndata()`: a cohort as an in-memory AnnData, for notebooks."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

from .client import Client, MINIBATCH_LIMIT
from .loader import Loader, list_parts

STAT_PREFIX = "stat_"
MAX_BATCH = 4096


def _frame(table: pa.Table, index: str):
    """pandas, keeping Arrow's meaning: categoricals with their full
    dictionaries, integers and booleans with nulls as pandas' nullable types."""
    import pandas as pd

    nullable = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
                pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype()}
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if column.null_count and column.type in nullable:
            columns[name] = pd.array(column.to_pylist(), dtype=nullable[column.type])
        else:
            columns[name] = column.to_pandas()
    frame = pd.DataFrame(columns)
    frame.index = frame.pop(index).astype(str).to_numpy()
    frame.index.name = None
    return frame


def read_anndata(
    client: Client,
    dataset: str | None,
    *,
    query: str | None,
    genes: Sequence[str] | None,
    max_cells: int,
    gene_column: str | None,
    genes_query: str | None,
    transform: dict | None,
    obs_columns: Sequence[str] | None,
    stats: bool,
):
    import anndata
    import scipy.sparse

    info = client.dataset(dataset)
    n = client.count(info.name, query)
    if n > max_cells:
        raise ValueError(
            f"the cohort has {n} cells, above max_cells={max_cells}: narrow the query, raise max_cells, "
            "or stream it with Client.loader()"
        )
    if obs_columns is None:
        obs_columns = [c for c in info.schema.names if c not in ("cell_id", "obs_name") and (stats or not c.startswith(STAT_PREFIX))]
    obs_columns = ["obs_name", *[c for c in obs_columns if c != "obs_name"]]
    # The matrix and obs come in one sequential stream, in cell_id order, so
    # categoricals arrive with the dataset's full category lists.
    width = len(genes) if genes is not None else info.n_genes  # the output gene space, or a bound of it
    per_cell = width * 12 + 16  # the server's worst case per cell (uint32 indices, float64 values)
    batch_size = max(1, min(MAX_BATCH, MINIBATCH_LIMIT // 2 // per_cell))
    loader = Loader(
        client, info.name, query=query, batch_size=batch_size, sampling="sequential", genes=genes,
        gene_column=gene_column, genes_query=genes_query, transform=transform, obs_columns=obs_columns,
        prefetch=4,
    )
    record_batches = [batch.record_batch for batch in loader]
    schema = loader.schema
    n_genes = loader.n_genes
    value_type = schema.field("values").type.value_type.to_pandas_dtype()
    indptr, indices, values = [np.zeros(1, np.int64)], [], []
    total = 0
    for rb in record_batches:
        offsets, child = list_parts(rb.column("indices"))
        _, vals = list_parts(rb.column("values"))
        indptr.append(offsets[1:].astype(np.int64) + total)
        total += int(offsets[-1])
        indices.append(child.to_numpy().astype(np.int32))
        values.append(vals.to_numpy())
    X = scipy.sparse.csr_matrix(
        (
            np.concatenate(values) if values else np.zeros(0, value_type),
            np.concatenate(indices) if indices else np.zeros(0, np.int32),
            np.concatenate(indptr),
        ),
        shape=(sum(rb.num_rows for rb in record_batches), n_genes),
    )
    table = pa.Table.from_batches(record_batches, schema=schema) if record_batches else schema.empty_table()
    obs = _frame(table.select(obs_columns), "obs_name")
    var_table = loader.var()
    keep = [c for c in var_table.column_names if c != "gene_idx" and (stats or not c.startswith(STAT_PREFIX))]
    var = _frame(var_table.select(keep), "gene_id")
    adata = anndata.AnnData(X=X, obs=obs, var=var)
    adata.uns["cellflight"] = {"dataset": info.name, "version": loader.metadata["dataset_version"], "query": query or ""}
    return adata
