"""`cellflight ingest` of files written here by anndata (and edited with
h5py): every matrix layout and compression, every kind of obs column, layers,
wide index arrays, unsorted rows, and the choice of value type."""

import h5py
import numpy as np
import pytest
import scipy.sparse

import h5ad_files as hf
from cellflight_dataset import matrix_content
from expect import assert_holds, assert_same_tables, read_source

ENCODING = {"csr": "csr_matrix", "csc": "csc_matrix", "dense": "array"}


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("layout", ["csr", "csc", "dense"])
def test_every_matrix_layout_and_compression(cellflight, tmp_path, layout, compression):
    """300 cells x 50 genes of counts, some explicit zeros in the sparse
    layouts, every kind of obs column (categoricals with NaN and unused
    categories, ordered, Int64/boolean with NA, strings, floats with NaN)."""
    X = hf.counts(300, 50, np.random.default_rng(1))
    X = {"csr": X, "csc": scipy.sparse.csc_matrix(X), "dense": X.toarray()}[layout]
    path = hf.write(hf.annotated(X), tmp_path / "in" / "cells.h5ad", compression)
    with h5py.File(path) as f:
        x = f["X"]
        assert x.attrs["encoding-type"] == ENCODING[layout]
        data = x if layout == "dense" else x["data"]
        assert data.compression == compression
        assert layout == "dense" or np.any(data[()] == 0), "premise: explicit zeros stored"
    assert_holds(cellflight.ingest(path, tmp_path / "out" / f"{layout}_{compression or 'plain'}"), read_source(path))


def test_a_layer_is_ingested_instead_of_x(cellflight, tmp_path):
    rng = np.random.default_rng(2)
    raw = hf.counts(200, 40, rng)
    normalised = scipy.sparse.csr_matrix(raw.multiply(1 / (raw.sum(axis=1) + 1)), dtype=np.float32)
    path = hf.write(hf.annotated(normalised, counts=raw), tmp_path / "in" / "layered.h5ad")
    ds = cellflight.ingest(path, tmp_path / "out" / "counts", "--layer", "counts")
    assert_holds(ds, read_source(path, "layers/counts"))
    assert ds.manifest["matrix"]["value_type"] == "uint8"


def test_a_missing_layer_is_refused_listing_the_layers_there(cellflight, tmp_path):
    path = hf.small_h5ad(tmp_path / "in" / "small.h5ad")
    output = tmp_path / "out" / "nope"
    mentions = ["small.h5ad", "velocity", "counts", "spliced"]
    cellflight.fails("ingest", path, output, "--layer", "velocity", mentions=mentions)
    assert not output.exists()


@pytest.mark.parametrize("name", ["X/indptr", "X/indices"])
def test_int64_index_arrays(cellflight, tmp_path, name):
    path = hf.small_h5ad(tmp_path / "in" / "wide.h5ad", n_cells=300, n_genes=50)
    hf.replace_dataset(path, name, hf.read_dataset(path, name).astype(np.int64))
    assert hf.read_dataset(path, name).dtype == np.int64
    assert_holds(cellflight.ingest(path, tmp_path / "out" / "wide"), read_source(path))


def test_unsorted_indices_within_cells_are_stored_sorted(cellflight, tmp_path):
    path = hf.small_h5ad(tmp_path / "in" / "unsorted.h5ad", n_cells=300, n_genes=50)
    hf.shuffle_rows(path)
    indptr, indices = hf.read_dataset(path, "X/indptr"), hf.read_dataset(path, "X/indices")
    unsorted = [i for i in range(len(indptr) - 1) if np.any(np.diff(indices[indptr[i] : indptr[i + 1]]) < 0)]
    assert len(unsorted) > 100, "premise: most rows are unsorted"
    assert_holds(cellflight.ingest(path, tmp_path / "out" / "unsorted"), read_source(path))


# id: (stored values, dtype of X in the file, value type the dataset needs)
VALUE_TYPES = {
    "counts_up_to_255": ([1, 2, 255], np.float32, "uint8"),
    "integer_typed_counts": ([1, 7, 200], np.int32, "uint8"),
    "counts_from_256": ([1, 256, 65535], np.float32, "uint16"),
    "counts_past_65535": ([1, 65536, 4_000_000], np.float32, "uint32"),
    "fractions": ([0.5, 1.25, 3.0, 1e-7], np.float32, "float32"),
    "negative_integers": ([-3, 1, 2], np.float32, "float32"),
    "float64_holding_float32_values": ([0.5, 0.25, 3.0], np.float64, "float32"),
    "float64_needing_double": ([0.1, 1 / 3, 2.0], np.float64, "float64"),
    "large_count_beside_a_fraction": ([70001, 0.5], np.float32, "float32"),
}


@pytest.mark.parametrize("case", list(VALUE_TYPES))
def test_values_get_the_narrowest_type_holding_them_exactly(cellflight, tmp_path, case):
    values, dtype, expected = VALUE_TYPES[case]
    X = hf.sparse_values(40, 30, np.random.default_rng(3), np.array(values, dtype=dtype))
    path = hf.write(hf.annotated(X), tmp_path / "in" / "values.h5ad")
    ds = cellflight.ingest(path, tmp_path / "out" / "values")
    assert ds.manifest["matrix"]["value_type"] == expected
    assert_holds(ds, read_source(path))


def test_a_memory_budget_changes_nothing_in_the_data(cellflight, tmp_path):
    path = hf.small_h5ad(tmp_path / "in" / "budget.h5ad", n_cells=3000, n_genes=200)
    default = cellflight.ingest(path, tmp_path / "out" / "default")
    budget = cellflight.ingest(path, tmp_path / "out" / "budget", "--memory", "64MiB")
    assert_holds(budget, read_source(path))
    assert matrix_content(budget.path).equals(matrix_content(default.path))
    assert_same_tables(budget.cells, default.cells)
