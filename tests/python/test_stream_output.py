"""What a minibatch holds, by request key, read by a hand-written pyarrow
client: SQL cohorts, obs columns, gene selections, transforms, dense rows,
weighted sampling; and the stream over a Unix socket and from two servers.
Expected values come from the dataset files read independently
(cellflight_dataset) and from numpy."""

from __future__ import annotations

import json
from collections import Counter

import anndata
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest
import scipy.sparse

import h5ad_files as hf
from cellflight_dataset import load_dataset
from test_serve import serving, start, stop


@pytest.fixture(scope="module")
def data(cellflight, tmp_path_factory):
    """`tahoe`: generated; `pbmc`: ingested from a file with an all-zero cell
    and a gene symbol that two genes share."""
    data = tmp_path_factory.mktemp("output")
    cellflight.ok("generate", data / "tahoe", "--cells", 3000, "--genes", 400, "--seed", 11)
    rng = np.random.default_rng(2)
    X = hf.counts(80, 30, rng).tolil()
    X[5, :] = 0
    adata = hf.annotated(X.tocsr(), seed=2)
    adata.var["symbol"] = [f"S{i}" for i in range(29)] + ["S3"]
    cellflight.ingest(hf.write(adata, data / "src" / "pbmc.h5ad"), data / "pbmc")
    return data


@pytest.fixture(scope="module")
def client(cellflight, data):
    with serving(cellflight, data, "--default-dataset", "tahoe") as (server, address):
        yield flight.connect(address)


@pytest.fixture(scope="module")
def tahoe(data):
    return load_dataset(data / "tahoe")


@pytest.fixture(scope="module")
def pbmc(data):
    return load_dataset(data / "pbmc")


def plan(client, **request) -> flight.FlightInfo:
    return client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))


def epoch(client, **request) -> tuple[flight.FlightInfo, list[pa.RecordBatch]]:
    """The plan, and every minibatch of every partition, in order."""
    info = plan(client, **request)
    batches = []
    for endpoint in info.endpoints:
        for chunk in client.do_get(endpoint.ticket):
            batches.append(chunk.data)
    return info, batches


def real_cells(batches) -> list[int]:
    return [
        cell
        for b in batches
        for cell, padding in zip(b.column("cell_id").to_pylist(), b.column("is_padding").to_pylist())
        if not padding
    ]


def rows(batch: pa.RecordBatch) -> list[tuple[list[int], list]]:
    indices, values = batch.column("indices"), batch.column("values")
    return [(indices[i].values.to_pylist(), values[i].values.to_pylist()) for i in range(batch.num_rows)]


def test_a_predicate_cohort_streams_exactly_its_cells_once(client, tahoe):
    query = "plate = 'plate2' AND stat_n_genes > 40"
    info, batches = epoch(client, query=query, partitions=2, batch_size=16)
    obs = tahoe.cells.to_pandas()
    expected = obs.loc[(obs["plate"] == "plate2") & (obs["stat_n_genes"] > 40), "cell_id"].tolist()
    assert 0 < len(expected) < 3000
    assert sorted(real_cells(batches)) == sorted(expected)
    assert json.loads(info.app_metadata)["cohort_size"] == len(expected)
    for batch in batches[:3]:
        for cell, (indices, values) in zip(batch.column("cell_id").to_pylist(), rows(batch)):
            stored = tahoe.X[cell]
            assert (indices, values) == (stored.indices.tolist(), stored.data.tolist())


def test_a_select_cohort_may_join_and_use_subqueries(client, tahoe):
    query = "SELECT cell_id FROM cells WHERE drug IN (SELECT drug FROM cells WHERE cell_id < 2) AND cell_id % 3 = 0"
    _, batches = epoch(client, query=query, batch_size=32)
    obs = tahoe.cells.to_pandas()
    drugs = set(obs.loc[obs["cell_id"] < 2, "drug"])
    expected = obs.loc[obs["drug"].isin(drugs) & (obs["cell_id"] % 3 == 0), "cell_id"]
    assert sorted(real_cells(batches)) == sorted(expected) and len(expected) > 0


def test_obs_columns_come_with_each_cell_and_codes_follow_the_manifest(client, tahoe):
    _, batches = epoch(client, obs_columns=["plate", "stat_total", "obs_name"], batch_size=50)
    obs = tahoe.cells.to_pandas().set_index("cell_id")
    plates = next(c for c in tahoe.manifest["cells"]["categoricals"] if c["column"] == "plate")["categories"]
    for batch in batches:
        assert batch.schema.names == ["cell_id", "indices", "values", "is_padding", "plate", "stat_total", "obs_name"]
        cells = batch.column("cell_id").to_pylist()
        plate = batch.column("plate")
        assert plate.dictionary.to_pylist() == plates, "the full category list, in manifest order"
        assert [plates[code] for code in plate.indices.to_pylist()] == obs.loc[cells, "plate"].astype(str).tolist()
        assert batch.column("stat_total").to_pylist() == obs.loc[cells, "stat_total"].tolist()
        assert batch.column("obs_name").to_pylist() == obs.loc[cells, "obs_name"].tolist()


def test_tickets_name_the_dataset_even_when_the_request_left_it_to_the_default(client):
    info = plan(client, batch_size=100)
    ticket = json.loads(info.endpoints[0].ticket.ticket)
    assert ticket["request"]["dataset"] == "tahoe"


def test_the_schema_metadata_gives_the_width_of_the_output_gene_space(client):
    genes = ["ENSG00000000007", "ENSG00000000002", "ENSG00000000019"]
    for request, width in [({}, 400), ({"dataset": "pbmc", "genes": genes}, 3), ({"genes_query": "gene_idx < 10"}, 10)]:
        info = plan(client, **request)
        reader = client.do_get(info.endpoints[0].ticket)
        for schema in (info.schema, reader.schema):
            assert schema.metadata[b"cellflight.n_genes"] == str(width).encode()
        reader.cancel()


def test_named_genes_give_the_output_space_in_the_order_asked(client, pbmc):
    genes = ["ENSG00000000007", "ENSG00000000002", "ENSG00000000019"]
    stored = [pbmc.var.index.get_loc(g) for g in genes]
    _, batches = epoch(client, dataset="pbmc", genes=genes, batch_size=7)
    assert batches[0].schema.field("indices").type == pa.list_(pa.field("item", pa.uint16(), nullable=False))
    seen = 0
    for batch in batches:
        for cell, (indices, values) in zip(batch.column("cell_id").to_pylist(), rows(batch)):
            dense = pbmc.X[cell].toarray().ravel()[stored]
            assert indices == sorted(indices), "entries sorted by output position"
            assert indices == [j for j in range(3) if dense[j] != 0]
            assert values == [dense[j] for j in indices]
            seen += 1
    assert seen == 80


def test_genes_by_another_column_and_ambiguous_or_unknown_names_are_refused(client, pbmc):
    _, batches = epoch(client, dataset="pbmc", genes=["S4", "S1"], gene_column="symbol", format="dense")
    x = np.vstack([np.asarray(b.column("x").to_pylist(), dtype=np.float32) for b in batches])
    cells = np.concatenate([b.column("cell_id").to_numpy() for b in batches])
    np.testing.assert_array_equal(x, pbmc.X[cells][:, [4, 1]].toarray())
    with pytest.raises(pa.ArrowInvalid, match=r'ambiguous genes .*"S3"'):
        plan(client, dataset="pbmc", genes=["S3"], gene_column="symbol")
    with pytest.raises(pa.ArrowInvalid, match=r'unknown genes .*"NOPE", "ALSO_NOPE"'):
        plan(client, dataset="pbmc", genes=["S1", "NOPE", "ALSO_NOPE"], gene_column="symbol")
    with pytest.raises(pa.ArrowInvalid, match="genes has no column \"nope\""):
        plan(client, dataset="pbmc", genes=["S1"], gene_column="nope")


def test_a_genes_query_selects_genes_in_gene_idx_order(client, tahoe):
    _, batches = epoch(client, genes_query="gene_idx % 5 = 0 AND gene_idx < 300", sampling="sequential", batch_size=100)
    kept = np.arange(0, 300, 5)
    x = tahoe.X[:, kept].tocsr()
    for batch in batches:
        for cell, (indices, values) in zip(batch.column("cell_id").to_pylist(), rows(batch)):
            assert indices == x[cell].indices.tolist() and values == x[cell].data.tolist()
    with pytest.raises(pa.ArrowInvalid, match="gene selection is empty"):
        plan(client, genes_query="gene_idx > 100000")


def test_a_transform_normalises_over_all_genes_then_selects(client, pbmc):
    transform = {"normalize_total": 1e4, "log1p": True}
    genes = [f"ENSG{i:011d}" for i in (3, 0, 10)]
    _, batches = epoch(client, dataset="pbmc", genes=genes, transform=transform, format="dense", sampling="sequential")
    X = pbmc.X.astype(np.float64).toarray()
    totals = X.sum(axis=1, keepdims=True)
    expected = np.log1p(np.divide(X * 1e4, totals, out=np.zeros_like(X), where=totals > 0))[:, [3, 0, 10]]
    x = np.vstack([np.asarray(b.column("x").to_pylist()) for b in batches])
    np.testing.assert_allclose(x, expected.astype(np.float32), rtol=1e-6)
    assert not x[5].any(), "a cell with total 0 stays all zeros"
    _, csr = epoch(client, dataset="pbmc", transform={"log1p": True}, sampling="sequential")
    assert csr[0].schema.field("values").type.value_type == pa.float32()
    first = rows(csr[0])[0]
    np.testing.assert_allclose(first[1], np.log1p(pbmc.X[0].data.astype(np.float64)), rtol=1e-6)


def test_dense_rows_equal_the_csr_rows(client, tahoe):
    request = dict(batch_size=20, seed=4, epoch=2)
    _, csr = epoch(client, **request)
    _, dense = epoch(client, format="dense", **request)
    for c, d in zip(csr, dense):
        assert c.column("cell_id").equals(d.column("cell_id"))
        width = d.schema.field("x").type.list_size
        assert width == 400 and d.schema.field("x").type.value_type == pa.float32()
        offsets = c.column("indices").offsets.to_numpy()
        matrix = scipy.sparse.csr_matrix(
            (c.column("values").values.to_numpy().astype(np.float32), c.column("indices").values.to_numpy(), offsets),
            shape=(c.num_rows, width),
        )
        np.testing.assert_array_equal(np.asarray(d.column("x").to_pylist(), dtype=np.float32), matrix.toarray())


def test_a_dense_minibatch_beyond_the_limit_is_refused_with_the_figure(client):
    with pytest.raises(pa.ArrowInvalid, match=r"could reach 67\d{6} bytes .* lower batch_size or select fewer genes"):
        plan(client, format="dense", batch_size=41_944)


def test_balanced_sampling_draws_every_plate_of_the_cohort_about_equally(client, tahoe):
    query = "plate IN ('plate1', 'plate2') OR cell_id % 10 = 0"
    request = dict(query=query, sampling="weighted", balance_by="plate", num_samples=6000, batch_size=100, partitions=2)
    info, batches = epoch(client, **request)
    assert info.total_records == 6000
    obs = tahoe.cells.to_pandas().set_index("cell_id")
    plates = obs["plate"].astype(str)
    cohort = obs.index[plates.isin(["plate1", "plate2"]) | (obs.index % 10 == 0)]
    drawn = Counter(plates.loc[real_cells(batches)])
    stored = Counter(plates.loc[cohort])
    assert min(stored.values()) < 0.2 * max(stored.values()), "the cohort's plates are unbalanced"
    assert set(real_cells(batches)) <= set(cohort)
    share = 6000 / len(stored)
    assert all(abs(n - share) < 5 * np.sqrt(share) for n in drawn.values()), drawn


def test_weights_from_sql_leave_zero_weight_cells_out_and_repeat_streams(client, tahoe):
    request = dict(sampling="weighted", weights="CASE WHEN plate = 'plate1' THEN 0 ELSE stat_total END", seed=3, num_samples=500)
    _, first = epoch(client, **request)
    _, again = epoch(client, **request)
    cells = real_cells(first)
    assert cells == real_cells(again) and len(cells) == 500
    plates = tahoe.cells.to_pandas().set_index("cell_id")["plate"].astype(str)
    assert "plate1" not in set(plates.loc[cells])
    with pytest.raises(pa.ArrowInvalid, match="must be finite and at least 0"):
        plan(client, sampling="weighted", weights="-1.0")


def test_a_cohort_stream_resumes_from_its_ticket(client):
    info = plan(client, query="cell_id % 2 = 1", batch_size=10, fetch_factor=3, seed=8)
    endpoint = info.endpoints[0]
    full = [c.data for c in client.do_get(endpoint.ticket)]
    ticket = json.loads(endpoint.ticket.ticket)
    resumed = [c.data for c in client.do_get(flight.Ticket(json.dumps({**ticket, "start_batch": 40}).encode()))]
    assert [b.column("cell_id") for b in resumed] == [b.column("cell_id") for b in full[40:]]


def test_unix_socket_clients_get_the_same_stream(cellflight, data, tmp_path):
    socket = tmp_path / "cellflight.sock"
    server, address = start(cellflight, data / "tahoe", "--unix", socket)
    try:
        request = dict(batch_size=64, seed=1)
        tcp = [c.data for c in flight.connect(address).do_get(plan(flight.connect(address), **request).endpoints[0].ticket)]
        # gRPC C++ sends the socket path as :authority, which HTTP/2 servers
        # such as tonic's refuse; docs/protocol.md says to set localhost.
        local = flight.connect(f"grpc+unix://{socket}", generic_options=[("grpc.default_authority", "localhost")])
        unix = [c.data for c in local.do_get(plan(local, **request).endpoints[0].ticket)]
        assert len(unix) == len(tcp) and all(a.equals(b) for a, b in zip(unix, tcp))
    finally:
        assert stop(server) == 0
    assert not socket.exists(), "the socket is removed at shutdown"


def test_two_servers_of_one_dataset_version_send_identical_bytes(cellflight, data):
    """A ticket is served the same, byte for byte, by any server holding the
    version: no server-side state, a stable sampler."""
    servers = [start(cellflight, data / "tahoe") for _ in range(2)]
    try:
        request = dict(query="stat_n_genes > 30", batch_size=33, partitions=3, seed=12, epoch=5, obs_columns=["drug"])
        first, second = (flight.connect(address) for _, address in servers)
        info = plan(first, **request)
        for endpoint in info.endpoints:
            a = [c.data.serialize().to_pybytes() for c in first.do_get(endpoint.ticket)]
            b = [c.data.serialize().to_pybytes() for c in second.do_get(endpoint.ticket)]
            assert a == b and a
    finally:
        for server, _ in servers:
            assert stop(server) == 0
