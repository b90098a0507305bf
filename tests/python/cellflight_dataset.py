"""Reads a cellflight dataset directory with pyarrow alone.

Independent of the Rust code on purpose: the tests compare what this module
decodes from the files against what anndata reads from the source .h5ad, so a
bug shared by our writer and our reader cannot hide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse

VERSION_KEY = b"cellflight.version"
CELL_COLUMNS = ("cell_id", "obs_name")
CELL_STATS = ("stat_n_genes", "stat_total")
GENE_COLUMNS = ("gene_idx", "gene_id")
GENE_STATS = ("stat_n_cells", "stat_mean", "stat_variance")


@dataclass
class Dataset:
    path: Path
    manifest: dict
    # One row per cell, values in the stored dtype, indices in stored order
    # (not re-sorted); None for an obs-only dataset.
    X: scipy.sparse.csr_matrix | None
    # Index obs_name / gene_id; every other column of the file, categoricals
    # rebuilt from the manifest's category lists.
    obs: pd.DataFrame
    var: pd.DataFrame
    # The files as pyarrow reads them, for type and metadata checks.
    cells: pa.Table
    genes: pa.Table
    matrix_schema: pa.Schema | None
    batch_lengths: list[int]

    @property
    def version(self) -> str:
        return self.manifest["version"]


def read_manifest(path: Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


def read_matrix(path: Path, n_cells: int, n_genes: int):
    """(CSR matrix, Arrow schema, rows per record batch) of matrix.arrow."""
    lengths, indices, values = [], [], []
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        schema = reader.schema
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            for name in ("indices", "values"):
                assert batch.column(name).null_count == 0, f"{path}: null {name} list in batch {i}"
            lengths.append(batch.column("indices").value_lengths().to_numpy(zero_copy_only=False))
            indices.append(batch.column("indices").flatten().to_numpy(zero_copy_only=False))
            values.append(batch.column("values").flatten().to_numpy(zero_copy_only=False))
            assert len(indices[-1]) == len(values[-1]), f"{path}: batch {i} lists differ in length"
    value_dtype = schema.field("values").type.value_type.to_pandas_dtype()
    index_dtype = schema.field("indices").type.value_type.to_pandas_dtype()
    row_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    indptr = np.concatenate([[0], np.cumsum(row_lengths, dtype=np.int64)])
    data = np.concatenate(values) if values else np.zeros(0, value_dtype)
    cols = np.concatenate(indices) if indices else np.zeros(0, index_dtype)
    matrix = scipy.sparse.csr_matrix((data, cols, indptr), shape=(len(row_lengths), n_genes))
    assert matrix.shape[0] == n_cells, f"{path}: {matrix.shape[0]} rows for {n_cells} cells"
    return matrix, schema, [len(x) for x in lengths]


def table_to_frame(table: pa.Table, index: str, categoricals: list[dict]) -> pd.DataFrame:
    frame = table.to_pandas().set_index(index)
    for cat in categoricals:
        values = table.column(cat["column"]).to_pylist()
        frame[cat["column"]] = pd.Categorical(values, categories=cat["categories"], ordered=cat["ordered"])
    return frame


def load_dataset(path: Path) -> Dataset:
    path = Path(path)
    manifest = read_manifest(path)
    matrix = manifest["matrix"]
    X, schema, batch_lengths = None, None, []
    if matrix is not None:
        X, schema, batch_lengths = read_matrix(path / matrix["file"], manifest["n_cells"], manifest["n_genes"])
    cells = pq.read_table(path / manifest["cells"]["file"])
    genes = pq.read_table(path / manifest["genes"]["file"])
    return Dataset(
        path=path,
        manifest=manifest,
        X=X,
        obs=table_to_frame(cells, "obs_name", manifest["cells"]["categoricals"]),
        var=table_to_frame(genes, "gene_id", manifest["genes"]["categoricals"]),
        cells=cells,
        genes=genes,
        matrix_schema=schema,
        batch_lengths=batch_lengths,
    )


def parquet_version(path: Path) -> str | None:
    """The `cellflight.version` key-value metadata of a Parquet file."""
    metadata = pq.ParquetFile(path).metadata.metadata or {}
    value = metadata.get(VERSION_KEY)
    return value.decode() if value is not None else None


def matrix_content(path: Path) -> pa.Table:
    """matrix.arrow's rows without the schema metadata (which holds the version)."""
    with pa.memory_map(str(Path(path) / "matrix.arrow")) as source:
        table = pa.ipc.open_file(source).read_all()
    return table.replace_schema_metadata(None)
