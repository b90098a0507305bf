"""`cellflight ingest` of the real .h5ad files (tests/data/README.md): the dataset holds
exactly what anndata reads from each of them."""

import pytest

from cellflight_dataset import CELL_COLUMNS, CELL_STATS, GENE_COLUMNS, GENE_STATS
from expect import (
    assert_manifest_describes,
    assert_matrix_equals,
    assert_skipped_lists_the_rest,
    assert_stats_equal,
    assert_table_equals,
    assert_well_formed,
    read_source,
)

# dataset name: (file, matrix ingested, value type it needs, objects it must skip)
CASES = {
    "wu2020_v0_11": ("wu2020_200_v0_11.h5ad", "X", "uint16", ["obsm/X_umap_orig", "uns"]),
    "wu2020_v0_6_legacy": ("wu2020_200_v0_6.h5ad", "X", "uint16", ["obsm/X_umap_orig", "uns"]),
    "pbmc68k_dense_x": (
        "10x_pbmc68k_reduced.h5ad",
        "X",
        "float32",
        ["obsm/X_pca", "obsm/X_umap", "obsp/connectivities", "obsp/distances", "varm/PCs", "uns", "raw/X"],
    ),
    "pbmc68k_raw": (
        "10x_pbmc68k_reduced.h5ad",
        "raw/X",
        "float32",
        ["obsm/X_pca", "obsm/X_umap", "obsp/connectivities", "obsp/distances", "varm/PCs", "uns", "X"],
    ),
}


@pytest.fixture(scope="module", params=list(CASES))
def ingested(request, cellflight, data_file, tmp_path_factory):
    """(case name, dataset, what anndata reads), one ingest per case."""
    file, matrix, _, _ = CASES[request.param]
    source = read_source(data_file(file), matrix)
    output = tmp_path_factory.mktemp("datasets") / request.param
    dataset = cellflight.ingest(source.path, output, *(["--raw"] if matrix == "raw/X" else []))
    return request.param, dataset, source


def test_the_dataset_is_well_formed_and_alone(ingested):
    name, ds, _ = ingested
    assert_well_formed(ds)
    assert [p.name for p in ds.path.parent.iterdir()] == [name], "ingest left other files beside the dataset"


def test_the_manifest_describes_the_source(ingested):
    _, ds, source = ingested
    assert_manifest_describes(ds, source)


def test_the_value_type_is_the_narrowest_exact_one(ingested):
    name, ds, _ = ingested
    assert ds.manifest["matrix"]["value_type"] == CASES[name][2]


def test_every_value_equals_anndatas(ingested):
    _, ds, source = ingested
    assert_matrix_equals(ds, source)


def test_obs_equals_anndatas(ingested):
    _, ds, source = ingested
    assert_table_equals(ds.cells, source.obs, ds.manifest["cells"], CELL_COLUMNS, CELL_STATS)


def test_var_equals_anndatas(ingested):
    _, ds, source = ingested
    assert_table_equals(ds.genes, source.var, ds.manifest["genes"], GENE_COLUMNS, GENE_STATS)


def test_statistics_equal_numpys(ingested):
    _, ds, source = ingested
    assert_stats_equal(ds, source)


def test_skipped_lists_every_part_not_held(ingested):
    name, ds, source = ingested
    assert_skipped_lists_the_rest(ds, source)
    skipped = ds.manifest["skipped"]
    for part in CASES[name][3]:
        assert any(part == s or part.startswith(s + "/") for s in skipped), f"{part} not in skipped {skipped}"


def test_premise_pbmc68k_raw_rows_list_genes_in_descending_order(data_file):
    """So the pbmc68k_raw case also checks that ingest sorts each cell's genes."""
    source = read_source(data_file("10x_pbmc68k_reduced.h5ad"), "raw/X")
    first_row = source.X.indices[source.X.indptr[0] : source.X.indptr[1]]
    assert list(first_row) == sorted(first_row, reverse=True)
