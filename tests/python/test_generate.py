"""`cellflight generate`: synthetic Tahoe-like datasets, their .h5ad twin
(read back by anndata), obs-only datasets and seeded determinism."""

import h5py
import numpy as np
import pytest

from cellflight_dataset import CELL_COLUMNS, CELL_STATS, GENE_COLUMNS, GENE_STATS, load_dataset, matrix_content
from expect import (
    assert_matrix_equals,
    assert_same_tables,
    assert_stats_equal,
    assert_table_equals,
    assert_well_formed,
    read_source,
)

OBS_COLUMNS = ["plate", "cell_line", "drug", "dose", "n_genes", "total_counts"]


@pytest.fixture(scope="module")
def generated(cellflight, tmp_path_factory):
    """(dataset, .h5ad) of 20k cells x 2000 genes."""
    root = tmp_path_factory.mktemp("generated")
    h5ad = root / "tahoe_20k.h5ad"
    cellflight.ok("generate", root / "tahoe_20k", "--cells", 20_000, "--genes", 2000, "--seed", 7, "--h5ad", h5ad)
    return load_dataset(root / "tahoe_20k"), h5ad


def generate(cellflight, output, *args):
    cellflight.ok("generate", output, *args)
    return load_dataset(output)


def test_a_generated_dataset_passes_verify(cellflight, generated):
    ds, _ = generated
    assert (ds.manifest["n_cells"], ds.manifest["n_genes"]) == (20_000, 2000)
    assert ds.manifest["nnz"] > 0
    assert_well_formed(ds)
    cellflight.ok("inspect", ds.path, "--verify")
    assert set(OBS_COLUMNS) <= set(ds.cells.column_names)


def test_the_h5ad_twin_holds_the_same_data(generated):
    ds, h5ad = generated
    with h5py.File(h5ad) as f:
        assert f["X"].attrs["encoding-type"] == "csr_matrix"
        assert (f["X/data"].dtype, f["X/indices"].dtype) == (np.float32, np.int32)
    source = read_source(h5ad)
    assert set(OBS_COLUMNS) <= set(source.obs.columns)
    assert_matrix_equals(ds, source)
    assert_table_equals(ds.cells, source.obs, ds.manifest["cells"], CELL_COLUMNS, CELL_STATS)
    assert_table_equals(ds.genes, source.var, ds.manifest["genes"], GENE_COLUMNS, GENE_STATS)
    assert_stats_equal(ds, source)


def test_cells_are_grouped_by_plate_then_drug(generated):
    ds, _ = generated
    plate = ds.obs["plate"].cat.codes.to_numpy()
    drug = ds.obs["drug"].cat.codes.to_numpy()
    assert np.all(np.diff(plate) >= 0), "plate codes decrease somewhere"
    assert len(np.unique(plate)) > 1
    starts = np.flatnonzero((np.diff(plate) != 0) | (np.diff(drug) != 0)) + 1
    runs = list(zip(plate[np.r_[0, starts]], drug[np.r_[0, starts]]))
    assert len(runs) == len(set(runs)), "a drug's cells are split within a plate"


def test_obs_only_has_cells_and_no_matrix(cellflight, tmp_path):
    ds = generate(cellflight, tmp_path / "obs_only", "--cells", 5000, "--genes", 2000, "--seed", 7, "--obs-only")
    assert ds.manifest["matrix"] is None and ds.X is None
    assert ds.manifest["n_cells"] == ds.cells.num_rows == 5000
    assert set(OBS_COLUMNS) <= set(ds.cells.column_names)
    assert ds.cells.column_names[-2:] == list(CELL_STATS)
    assert_well_formed(ds)
    cellflight.ok("inspect", ds.path, "--verify")


def test_the_same_seed_gives_the_same_data(cellflight, tmp_path):
    args = ("--cells", 3000, "--genes", 500)
    first, again, other = (
        generate(cellflight, tmp_path / name, *args, "--seed", seed)
        for name, seed in (("first", 11), ("again", 11), ("other", 12))
    )
    assert first.version != again.version
    assert matrix_content(first.path).equals(matrix_content(again.path))
    assert_same_tables(first.cells, again.cells)
    assert not matrix_content(first.path).equals(matrix_content(other.path))


def test_the_default_gene_count_is_tahoes(cellflight, tmp_path):
    ds = generate(cellflight, tmp_path / "default_genes", "--cells", 30)
    assert ds.manifest["n_genes"] == ds.genes.num_rows == 62710
    assert ds.manifest["matrix"]["index_type"] == "uint16"
    assert_well_formed(ds)
