"""The Python package's client, against the real server: SQL and cohorts,
AnnData subsets, the numpy loader (parallel streams, bounded prefetch,
zero-copy), and server errors as exceptions with the server's message and
gRPC code. Expected values come from anndata's reading of the ingested
.h5ad and from the dataset files read independently (cellflight_dataset)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse

from client_helpers import N_GENES_TAHOE, N_PBMC, N_TAHOE, dense_rows, make_data, source_csr
from cellflight_dataset import load_dataset
from test_serve import serving

import cellflight  # noqa: E402  (client_helpers puts this checkout's package first)


@pytest.fixture(scope="module")
def served(cellflight, tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    data, source = make_data(cellflight, root)
    socket = root / "cf.sock"
    with serving(cellflight, data, "--default-dataset", "tahoe", "--unix", socket) as (server, address):
        yield {"address": address, "socket": socket, "data": data, "source": source}


@pytest.fixture(scope="module")
def client(served):
    with cellflight.connect(served["address"]) as client:
        yield client


@pytest.fixture(scope="module")
def tahoe(served):
    return load_dataset(served["data"] / "tahoe")


def real_cells(batches) -> list[int]:
    return [int(c) for b in batches for c in b.cell_id[~b.is_padding]]


# --- metadata and SQL ---------------------------------------------------------


def test_datasets_lists_every_dataset_with_its_shape_and_version(client, served):
    infos = {d.name: d for d in client.datasets()}
    assert sorted(infos) == ["meta", "pbmc", "tahoe"]
    manifest = json.loads((served["data"] / "tahoe" / "manifest.json").read_text())
    tahoe = infos["tahoe"]
    assert (tahoe.n_cells, tahoe.n_genes, tahoe.nnz, tahoe.version) == (
        N_TAHOE, N_GENES_TAHOE, manifest["nnz"], manifest["version"])
    assert tahoe.schema.names[:2] == ["cell_id", "obs_name"]


def test_sql_returns_a_pyarrow_table(client, tahoe):
    table = client.sql("SELECT plate, count(*) AS n FROM tahoe.cells GROUP BY plate ORDER BY plate")
    assert isinstance(table, pa.Table)
    expected = tahoe.cells.to_pandas()["plate"].astype(str).value_counts()
    got = dict(zip(table.column("plate").cast(pa.string()).to_pylist(), table.column("n").to_pylist()))
    assert got == expected.to_dict()


def test_cells_count_and_genes_follow_the_cohort_query(client, tahoe):
    obs = tahoe.cells.to_pandas()
    predicate = "plate = 'plate2' AND stat_n_genes > 30"
    expected = obs.loc[(obs["plate"] == "plate2") & (obs["stat_n_genes"] > 30), "cell_id"].tolist()
    assert 0 < len(expected) < N_TAHOE
    table = client.cells("tahoe", query=predicate, columns=["cell_id", "stat_total"])
    assert table.column_names == ["cell_id", "stat_total"]
    assert table.column("cell_id").to_pylist() == expected, "the cohort, in cell_id order"
    assert client.count("tahoe", query=predicate) == len(expected)
    assert client.count("tahoe") == N_TAHOE
    # A full query's unqualified tables are the named dataset's, not the default's.
    full = "SELECT cell_id FROM cells WHERE cell_id IN (SELECT cell_id FROM cells WHERE cell_id < 7)"
    assert client.cells("pbmc", query=full, columns=["cell_id"]).column(0).to_pylist() == list(range(7))
    assert client.count("pbmc", query=full) == 7
    genes = client.genes("tahoe", query="stat_n_cells > 100")
    stats = tahoe.genes.to_pandas()
    assert genes.column("gene_idx").to_pylist() == stats.loc[stats["stat_n_cells"] > 100, "gene_idx"].tolist()


def test_cell_and_gene_counts_agree_with_the_stream(client):
    query = "stat_total > 400"
    loader = client.loader("tahoe", query=query)
    assert loader.cohort_size == client.count("tahoe", query=query)


def test_names_are_checked_and_quoted_not_spliced(client):
    with pytest.raises(ValueError, match="invalid dataset name"):
        client.cells("tahoe.cells; DROP TABLE x --")
    with pytest.raises(cellflight.InvalidArgument) as raised:
        client.cells("tahoe", columns=['cell_id" FROM tahoe.cells --'])
    assert raised.value.code == "INVALID_ARGUMENT"


def test_categories_are_the_full_lists_in_code_order(client, served):
    manifest = json.loads((served["data"] / "pbmc" / "manifest.json").read_text())
    expected = {c["column"]: c["categories"] for c in manifest["cells"]["categoricals"]}
    assert client.categories("pbmc") == expected
    assert expected["cell_type"] == ["B", "ILC", "T", "NK", "unused"], "unused categories kept"


def test_a_unix_socket_client_reads_the_same(served):
    with cellflight.connect(f"grpc+unix://{served['socket']}") as local, cellflight.connect(served["address"]) as tcp:
        assert [d.name for d in local.datasets()] == ["meta", "pbmc", "tahoe"]
        a = [b.cell_id.tolist() for b in local.loader("tahoe", seed=3)]
        b = [b.cell_id.tolist() for b in tcp.loader("tahoe", seed=3)]
        assert a == b and len(a) > 1


# --- AnnData --------------------------------------------------------------------


def assert_same_column(got: pd.Series, want: pd.Series, full: pd.Series, name: str):
    """Same values; a categorical with the source's full category list
    (anndata's own subset drops the unused ones, the dataset keeps them)
    and its `ordered` flag."""
    if isinstance(full.dtype, pd.CategoricalDtype):
        assert isinstance(got.dtype, pd.CategoricalDtype), name
        assert list(got.cat.categories) == list(full.cat.categories), f"{name}: the full category list"
        assert got.cat.ordered == full.cat.ordered, f"{name}: ordered"
    normal = lambda s: [None if pd.isna(v) else v for v in s.astype(object)]
    assert normal(got) == normal(want), name


def test_anndata_equals_the_sources_subset(client, served):
    source = served["source"]
    subset = source[(source.obs["cell_type"] == "T").to_numpy()]
    assert 0 < subset.n_obs < N_PBMC
    genes = list(source.var_names[[7, 2, 30]])
    adata = client.anndata("pbmc", query="cell_type = 'T'", genes=genes)
    assert list(adata.obs_names) == list(subset.obs_names)
    assert list(adata.var_names) == genes
    assert isinstance(adata.X, scipy.sparse.csr_matrix)
    np.testing.assert_array_equal(adata.X.toarray(), subset[:, genes].X.toarray())
    assert list(adata.obs.columns) == list(source.obs.columns)
    for name in source.obs.columns:
        assert_same_column(adata.obs[name], subset.obs[name], source.obs[name], name)
    for name in source.var.columns:
        got = adata.var[name].astype(object).tolist()
        assert got == source.var.loc[genes, name].astype(object).tolist(), name
    whole = client.anndata("pbmc")
    assert whole.shape == source.shape
    assert (whole.X != source_csr(source)).nnz == 0


def test_anndata_refuses_more_than_max_cells_before_reading(client):
    with pytest.raises(ValueError, match=rf"{N_TAHOE} cells, above max_cells=100"):
        client.anndata("tahoe", max_cells=100)


# --- the loader -------------------------------------------------------------------


@pytest.mark.parametrize("streams", [1, 3])
def test_an_epoch_holds_every_cohort_cell_once_and_len_counts_its_batches(client, streams):
    loader = client.loader("tahoe", query="cell_id % 3 = 0", batch_size=32, seed=2, streams=streams)
    batches = list(loader)
    assert len(batches) == len(loader) == loader.batches_per_partition * streams
    cells = real_cells(batches)
    assert sorted(cells) == list(range(0, N_TAHOE, 3))
    partitions = [b.partition for b in batches]
    assert partitions[:streams] == list(range(streams)), "endpoints are interleaved, in order"
    for p in range(streams):
        assert [b.index for b in batches if b.partition == p] == list(range(loader.batches_per_partition))


def test_epochs_differ_and_the_same_epoch_repeats(client):
    loader = client.loader("tahoe", batch_size=50, seed=1, streams=2)
    first = real_cells(loader)
    again = real_cells(loader)
    loader.set_epoch(1)
    second = real_cells(loader)
    assert first == again
    assert first != second and sorted(first) == sorted(second)


def test_values_match_anndatas_reading_of_the_source(client, served):
    X = source_csr(served["source"])
    loader = client.loader("pbmc", batch_size=16, seed=4, streams=2)
    seen = 0
    for batch in loader:
        cells = batch.cell_id.astype(np.int64)
        for r, cell in enumerate(cells):
            row = slice(batch.indptr[r], batch.indptr[r + 1])
            assert batch.indices[row].tolist() == X[cell].indices.tolist()
            assert batch.values[row].tolist() == X[cell].data.tolist()
        assert isinstance(batch.X, scipy.sparse.csr_matrix) and batch.X.shape == (len(batch), X.shape[1])
        np.testing.assert_array_equal(batch.X.toarray(), dense_rows(X, cells))
        seen += int((~batch.is_padding).sum())
    assert seen == N_PBMC


def test_sparse_and_dense_minibatches_agree(client):
    request = dict(batch_size=40, seed=7, epoch=2, genes_query="gene_idx % 4 = 1", transform={"log1p": True})
    csr = list(client.loader("tahoe", **request))
    dense = list(client.loader("tahoe", format="dense", **request))
    assert len(csr) == len(dense)
    assert csr[0].n_genes == dense[0].n_genes == N_GENES_TAHOE // 4
    for c, d in zip(csr, dense):
        np.testing.assert_array_equal(c.cell_id, d.cell_id)
        assert d.x.dtype == np.float32 and d.X is d.x
        np.testing.assert_array_equal(c.toarray(), d.x)


def test_obs_columns_come_as_numpy_with_categorical_codes(client, tahoe):
    loader = client.loader("tahoe", obs_columns=["plate", "stat_total", "obs_name"], batch_size=100)
    plates = loader.categories["plate"]
    obs = tahoe.cells.to_pandas().set_index("cell_id")
    assert plates == json.loads((tahoe.path / "manifest.json").read_text())["cells"]["categoricals"][0]["categories"]
    for batch in loader:
        cells = batch.cell_id.astype(np.int64)
        assert batch.obs["plate"].dtype == np.int32
        assert [plates[c] for c in batch.obs["plate"]] == obs.loc[cells, "plate"].astype(str).tolist()
        np.testing.assert_array_equal(batch.obs["stat_total"], obs.loc[cells, "stat_total"].to_numpy())
        assert batch.obs["obs_name"].tolist() == obs.loc[cells, "obs_name"].tolist()


def address_of(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def arrow_address(array: pa.Array) -> int:
    return array.buffers()[-1].address + array.offset * array.type.bit_width // 8


def test_arrow_buffers_reach_numpy_without_a_copy(client):
    for batch in client.loader("tahoe", batch_size=64):
        rb = batch.record_batch
        assert address_of(batch.cell_id) == arrow_address(rb.column("cell_id"))
        assert address_of(batch.indptr) == rb.column("indices").offsets.buffers()[1].address
        assert address_of(batch.indices) == arrow_address(rb.column("indices").values)
        assert address_of(batch.values) == arrow_address(rb.column("values").values)
    dense = next(iter(client.loader("tahoe", format="dense", batch_size=64)))
    assert address_of(dense.x) == arrow_address(dense.record_batch.column("x").values)
    assert not dense.x.flags.writeable, "a view of Arrow memory, not a copy"


def test_prefetch_is_bounded_while_the_consumer_waits(client):
    converted = []
    loader = cellflight.Loader(client, "tahoe", batch_size=10, prefetch=3, convert=lambda b: converted.append(1) or b)
    assert len(loader) == N_TAHOE // 10
    it = iter(loader)
    next(it)
    time.sleep(0.5)
    # 1 handed out, 3 queued, at most 1 more converted and waiting to be queued.
    assert 2 <= len(converted) <= 5
    rest = sum(1 for _ in it)
    assert 1 + rest == len(loader)


def test_a_loader_abandoned_mid_epoch_stops_its_threads(client):
    before = threading.active_count()
    it = iter(client.loader("tahoe", batch_size=8, streams=3))
    next(it)
    it.close()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


# --- errors -----------------------------------------------------------------------


def test_server_errors_carry_the_servers_message_and_code(client):
    with pytest.raises(cellflight.InvalidArgument) as raised:
        len(client.loader("tahoe", obs_columns=["no_such_column"]))
    error = raised.value
    assert error.code == "INVALID_ARGUMENT" and isinstance(error, ValueError)
    assert "no_such_column" in error.message
    assert "Flight returned" not in error.message and "gRPC" not in error.message

    with pytest.raises(cellflight.NotFound) as raised:
        len(client.loader("nope"))
    assert raised.value.code == "NOT_FOUND" and 'unknown dataset "nope"' in raised.value.message
    assert "tahoe" in raised.value.message, "the served datasets are listed"

    with pytest.raises(cellflight.FailedPrecondition) as raised:
        len(client.loader("meta"))
    assert raised.value.code == "FAILED_PRECONDITION" and "obs-only" in raised.value.message

    with pytest.raises(cellflight.InvalidArgument, match="sql parser error"):
        client.sql("SELEC 1")


def test_errors_of_a_stream_reach_the_consumer(client):
    loader = cellflight.Loader(client, "tahoe", batch_size=100, streams=2, start_batches={1: 1000})
    with pytest.raises(cellflight.InvalidArgument) as raised:
        list(loader)
    assert "start_batch" in raised.value.message


def test_an_unreachable_server_is_unavailable():
    with pytest.raises(cellflight.Unavailable) as raised:
        cellflight.connect("grpc://127.0.0.1:1").datasets()
    assert raised.value.code == "UNAVAILABLE" and isinstance(raised.value, ConnectionError)


def test_unknown_loader_keywords_are_refused(client):
    with pytest.raises(TypeError, match="batchsize"):
        client.loader("tahoe", batchsize=3)
    with pytest.raises(ValueError, match="format"):
        client.loader("tahoe", format="coo")


def test_the_default_dataset_is_reached_without_a_name(client, tahoe):
    loader = client.loader(obs_columns=["plate"], batch_size=500)
    assert loader.n_genes == N_GENES_TAHOE and len(loader) == 4
    assert loader.categories["plate"] == client.categories("tahoe")["plate"]
    assert sorted(real_cells(loader)) == list(range(N_TAHOE))
    assert client.count() == N_TAHOE
