"""Assertions shared by the tests: a dataset is well formed, and it holds
exactly what anndata reads from the source file."""

from __future__ import annotations

import datetime
import warnings
from dataclasses import dataclass
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse

from cellflight_dataset import (
    CELL_COLUMNS,
    CELL_STATS,
    GENE_COLUMNS,
    GENE_STATS,
    VERSION_KEY,
    Dataset,
    parquet_version,
)

STRING_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)


# --- the source of truth -------------------------------------------------


@dataclass
class Source:
    """What anndata reads from an .h5ad for one ingest."""

    path: Path
    matrix_key: str  # "X", "raw/X" or "layers/NAME": the provenance.matrix expected
    X: object  # numpy array or scipy sparse matrix, as anndata returns it
    obs: pd.DataFrame
    var: pd.DataFrame

    @property
    def csr(self) -> scipy.sparse.csr_matrix:
        """X as CSR with explicit zeros dropped and indices sorted, dtype kept."""
        matrix = scipy.sparse.csr_matrix(self.X, copy=True)
        matrix.eliminate_zeros()
        matrix.sort_indices()
        return matrix


def read_source(path: Path, matrix_key: str = "X") -> Source:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-encoding and name warnings
        adata = anndata.read_h5ad(path)
    if matrix_key == "X":
        X, var = adata.X, adata.var
    elif matrix_key == "raw/X":
        X, var = adata.raw.X, adata.raw.var
    else:
        X, var = adata.layers[matrix_key.removeprefix("layers/")], adata.var
    return Source(Path(path), matrix_key, X, adata.obs, var)


def narrowest_value_type(values: np.ndarray) -> str:
    """The contract's value type: the narrowest one holding every value exactly."""
    v = np.asarray(values, dtype=np.float64)
    if np.all((v >= 0) & (v == np.floor(v))):
        top = v.max(initial=0)
        for name, limit in (("uint8", 255), ("uint16", 65535), ("uint32", 2**32 - 1)):
            if top <= limit:
                return name
    if np.array_equal(v.astype(np.float32).astype(np.float64), v, equal_nan=True):
        return "float32"
    return "float64"


# --- the format, whatever the source -------------------------------------


def assert_well_formed(ds: Dataset) -> None:
    """Every promise of the format that needs no source to check."""
    m = ds.manifest
    assert m["format"] == "cellflight-dataset" and m["format_version"] == 1, m
    assert m["name"] == ds.path.name
    assert m["version"], m
    assert ds.cells.num_rows == m["n_cells"] == m["cells"]["n_rows"]
    assert ds.genes.num_rows == m["n_genes"] == m["genes"]["n_rows"]
    assert ds.cells.column_names[:2] == list(CELL_COLUMNS)
    assert ds.cells.column_names[-2:] == list(CELL_STATS)
    assert ds.genes.column_names[:2] == list(GENE_COLUMNS)
    assert ds.genes.column_names[-3:] == list(GENE_STATS)
    assert_column_type(ds.cells, "cell_id", pa.uint64())
    assert_column_type(ds.cells, "stat_n_genes", pa.uint32())
    assert_column_type(ds.cells, "stat_total", pa.float64())
    assert_column_type(ds.genes, "gene_idx", pa.uint32())
    assert_column_type(ds.genes, "stat_n_cells", pa.uint64())
    assert_column_type(ds.genes, "stat_mean", pa.float64())
    assert_column_type(ds.genes, "stat_variance", pa.float64())
    assert ds.cells.column("cell_id").to_pylist() == list(range(m["n_cells"]))
    assert ds.genes.column("gene_idx").to_pylist() == list(range(m["n_genes"]))
    for name in ("cells", "genes"):
        assert parquet_version(ds.path / m[name]["file"]) == m["version"], f"{name}: cellflight.version"
    if m["matrix"] is not None:
        assert_matrix_well_formed(ds)


def assert_column_type(table: pa.Table, column: str, expected: pa.DataType) -> None:
    actual = table.schema.field(column).type
    assert actual == expected, f"{column}: {actual}, expected {expected}"


def assert_matrix_well_formed(ds: Dataset) -> None:
    m, layout, X = ds.manifest, ds.manifest["matrix"], ds.X
    assert layout["file"] == "matrix.arrow"
    assert (ds.matrix_schema.metadata or {}).get(VERSION_KEY, b"").decode() == m["version"]
    assert ds.matrix_schema.names == ["indices", "values"]
    for column, type_name in (("indices", layout["index_type"]), ("values", layout["value_type"])):
        field_type = ds.matrix_schema.field(column).type
        assert pa.types.is_list(field_type), f"{column}: {field_type}, expected list<{type_name}>"
        assert field_type.value_type == pa.type_for_alias(type_name), f"{column}: {field_type}"
    assert layout["index_type"] == ("uint16" if m["n_genes"] <= 65536 else "uint32")
    # Batches: all but the last hold exactly cells_per_batch cells.
    per_batch, lengths = layout["cells_per_batch"], ds.batch_lengths
    assert layout["n_batches"] == len(lengths) == -(-m["n_cells"] // per_batch)
    assert all(n == per_batch for n in lengths[:-1]) and 0 < lengths[-1] <= per_batch, lengths
    assert X.shape == (m["n_cells"], m["n_genes"])
    assert X.nnz == m["nnz"]
    assert not np.any(X.data == 0), "an explicit zero is stored"
    assert np.all(X.indices < m["n_genes"]), "a gene index is out of range"
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    same_row = rows[1:] == rows[:-1]
    assert np.all(np.diff(X.indices.astype(np.int64))[same_row] > 0), "indices not strictly ascending"
    assert narrowest_value_type(X.data) == layout["value_type"]


# --- the dataset holds the source ----------------------------------------


def assert_holds(ds: Dataset, source: Source) -> None:
    """The whole comparison of an ingested dataset with its source."""
    assert_well_formed(ds)
    assert_manifest_describes(ds, source)
    assert_matrix_equals(ds, source)
    assert_table_equals(ds.cells, source.obs, ds.manifest["cells"], CELL_COLUMNS, CELL_STATS)
    assert_table_equals(ds.genes, source.var, ds.manifest["genes"], GENE_COLUMNS, GENE_STATS)
    assert_stats_equal(ds, source)
    assert_skipped_lists_the_rest(ds, source)


def assert_manifest_describes(ds: Dataset, source: Source) -> None:
    m, csr = ds.manifest, source.csr
    assert (m["n_cells"], m["n_genes"], m["nnz"]) == (*csr.shape, csr.nnz)
    p = m["provenance"]
    assert p["matrix"] == source.matrix_key
    assert source.path.name in p["source"], p
    assert p["tool"].startswith("cellflight"), p
    created = datetime.datetime.fromisoformat(p["created_at"].replace("Z", "+00:00"))
    assert created.tzinfo is not None and created.utcoffset() == datetime.timedelta(0), p


def assert_matrix_equals(ds: Dataset, source: Source) -> None:
    """Every stored value equals anndata's, exactly; zeros are not stored."""
    expected, actual = source.csr, ds.X
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual.indptr, expected.indptr, err_msg="cells' entry counts")
    np.testing.assert_array_equal(actual.indices, expected.indices, err_msg="gene indices")
    assert actual.data.dtype == np.dtype(ds.manifest["matrix"]["value_type"])
    assert ds.manifest["matrix"]["value_type"] == narrowest_value_type(expected.data)
    np.testing.assert_array_equal(actual.data.astype(np.float64), expected.data.astype(np.float64))
    if not scipy.sparse.issparse(source.X):
        dense = np.asarray(source.X, dtype=np.float64)
        np.testing.assert_array_equal(actual.toarray().astype(np.float64), dense)


def expected_arrow_type(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "dictionary<string>"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return str(pa.from_numpy_dtype(getattr(dtype, "numpy_dtype", dtype)))
    return "string"


def describe_arrow_type(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return f"dictionary<{describe_arrow_type(t.value_type)}>"
    return "string" if any(is_(t) for is_ in STRING_TYPES) else str(t)


def column_values(values) -> list:
    """Comparable values: None for every missing one (NaN, NA, null)."""
    return [None if pd.api.types.is_scalar(v) and pd.isna(v) else v for v in values]


def assert_same_values(actual: list, expected: list, what: str) -> None:
    assert len(actual) == len(expected), f"{what}: {len(actual)} values, expected {len(expected)}"
    differ = [i for i, (a, e) in enumerate(zip(actual, expected)) if a != e]
    if differ:
        i = differ[0]
        raise AssertionError(f"{what}: {len(differ)} values differ, first in row {i}: {actual[i]!r} vs {expected[i]!r}")


def assert_same_tables(actual: pa.Table, expected: pa.Table) -> None:
    """Same columns, types and values (NaN equal to NaN), whatever the chunking and metadata."""
    assert actual.schema.remove_metadata() == expected.schema.remove_metadata()
    for name in expected.column_names:
        values = (column_values(table.column(name).to_pylist()) for table in (actual, expected))
        assert_same_values(*values, name)


def expected_values(series: pd.Series) -> list:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return column_values(str(v) if not pd.isna(v) else None for v in series)
    return column_values(series.astype(object).tolist())


def assert_table_equals(table: pa.Table, frame: pd.DataFrame, layout: dict, ids: tuple, stats: tuple) -> None:
    """cells.parquet / genes.parquet hold obs / var: names, columns, types,
    values and the manifest's category lists."""
    id_column, name_column = ids
    assert table.column_names == [id_column, name_column, *map(str, frame.columns), *stats]
    assert_same_values(table.column(name_column).to_pylist(), [str(v) for v in frame.index], name_column)
    for column in map(str, frame.columns):
        series, arrow = frame[column], table.column(column)
        expected_type = expected_arrow_type(series)
        assert describe_arrow_type(arrow.type) == expected_type, f"{column}: {arrow.type} for {series.dtype}"
        assert_same_values(column_values(arrow.to_pylist()), expected_values(series), column)
    expected_cats = {
        str(c): {"categories": [str(v) for v in frame[c].cat.categories], "ordered": bool(frame[c].cat.ordered)}
        for c in frame.columns
        if isinstance(frame[c].dtype, pd.CategoricalDtype)
    }
    actual_cats = {c["column"]: {k: c[k] for k in ("categories", "ordered")} for c in layout["categoricals"]}
    assert actual_cats == expected_cats


def assert_close(actual, expected, tolerance, what: str) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    bad = ~(np.abs(actual - expected) <= tolerance)
    where = np.flatnonzero(bad)
    assert not bad.any(), f"{what}: {bad.sum()} differ, e.g. at {where[:3]}: {actual[where[:3]]} vs {expected[where[:3]]}"


def assert_stats_equal(ds: Dataset, source: Source) -> None:
    """Per-cell and per-gene statistics equal numpy's over anndata's values
    (means and variances over all cells, zeros included, ddof=1)."""
    csr = source.csr.astype(np.float64)
    n = csr.shape[0]
    assert ds.cells.column("stat_n_genes").to_pylist() == np.diff(csr.indptr).tolist()
    totals, abs_totals = (np.asarray(m.sum(axis=1)).ravel() for m in (csr, abs(csr)))
    stat_total = ds.cells.column("stat_total").to_numpy()
    assert_close(stat_total, totals, 1e-9 * np.abs(totals) + 1e-12 * abs_totals, "stat_total")

    n_cells = np.bincount(csr.indices, minlength=csr.shape[1])
    assert ds.genes.column("stat_n_cells").to_pylist() == n_cells.tolist()
    mean = np.asarray(csr.sum(axis=0)).ravel() / n
    mean_abs = np.asarray(abs(csr).sum(axis=0)).ravel() / n
    centred = np.bincount(csr.indices, (csr.data - mean[csr.indices]) ** 2, minlength=csr.shape[1])
    variance = (centred + (n - n_cells) * mean**2) / (n - 1)
    mean_square = np.asarray(csr.multiply(csr).sum(axis=0)).ravel() / (n - 1)
    assert_close(ds.genes.column("stat_mean").to_numpy(), mean, 1e-6 * np.abs(mean) + 1e-9 * mean_abs, "stat_mean")
    assert_close(
        ds.genes.column("stat_variance").to_numpy(), variance, 1e-6 * variance + 1e-9 * mean_square, "stat_variance"
    )


# --- skipped --------------------------------------------------------------


def non_empty(obj) -> bool:
    return not isinstance(obj, h5py.Group) or len(obj) > 0


def unheld_objects(path: Path, matrix_key: str) -> list[str]:
    """The objects of an .h5ad that a dataset ingesting `matrix_key` does not
    hold: every non-empty obsm/obsp/varm/varp/layers entry but the ingested
    layer, uns, raw (unless ingested) and X (unless ingested)."""
    with h5py.File(path, "r") as f:
        unheld = [
            f"{group}/{key}"
            for group in ("obsm", "obsp", "varm", "varp", "layers")
            if group in f
            for key, obj in f[group].items()
            if f"{group}/{key}" != matrix_key and non_empty(obj)
        ]
        if "uns" in f and non_empty(f["uns"]):
            unheld.append("uns")
        if matrix_key != "X" and "X" in f:
            unheld.append("X")
        if "raw" in f and non_empty(f["raw"]):
            if matrix_key == "raw/X":
                unheld += [f"raw/{k}" for k, v in f["raw"].items() if k not in ("X", "var") and non_empty(v)]
            else:
                unheld.append("raw")
    return unheld


def assert_skipped_lists_the_rest(ds: Dataset, source: Source) -> None:
    """`skipped` names (at the object or a finer level) every part of the file
    the dataset does not hold, and nothing that it does hold or that isn't there."""
    skipped = ds.manifest["skipped"]
    held = ("obs", "raw/var" if source.matrix_key == "raw/X" else "var", source.matrix_key)
    covers = lambda s, p: s == p or p.startswith(s + "/") or s.startswith(p + "/")  # noqa: E731
    with h5py.File(source.path, "r") as f:
        assert [s for s in skipped if s.strip("/") not in f] == [], f"skipped names objects not in the file: {skipped}"
    assert [s for s in skipped if any(covers(s, h) for h in held)] == [], f"skipped names held objects: {skipped}"
    missing = [p for p in unheld_objects(source.path, source.matrix_key) if not any(covers(s, p) for s in skipped)]
    assert missing == [], f"not listed in skipped {skipped}: {missing}"
