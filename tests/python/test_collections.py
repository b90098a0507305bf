"""Collections: two datasets ingested from halves of a real .h5ad, with
overlapping gene sets in different orders and different obs columns,
served as one. Rows are checked against anndata's reading of the sources
placed by gene key, SQL against DuckDB over the members' Parquet files
unioned by the rules of docs/format.md."""

from __future__ import annotations

import json
import re
import warnings

import anndata
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import scipy.sparse

import client_helpers  # noqa: F401  (puts this checkout's package first)
import cellflight as package  # the name `cellflight` is the binary's fixture
from test_security import bearer, listed, users_file
from test_serve import serving, start, stop
from test_sql import flight_query, rows, versions

SOURCE = "wu2020_200_v0_11.h5ad"
N_A = 120  # part_a: the first 120 cells; part_b: the other 80
N_POOL = 4000  # genes drawn from: part_a has the first 3000, part_b the last 2500, reversed
SCALE_B = 300  # part_b's counts are scaled, so its values need a wider type


def read(path) -> anndata.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anndata.read_h5ad(path)


def stored(X) -> scipy.sparse.csr_matrix:
    """X as cellflight stores it: explicit zeros dropped, indices sorted."""
    X = scipy.sparse.csr_matrix(X, copy=True)
    X.eliminate_zeros()
    X.sort_indices()
    return X


@pytest.fixture(scope="module")
def members(data_file, tmp_path_factory) -> dict[str, anndata.AnnData]:
    """The two members' sources, written as .h5ad files beside them."""
    full = read(data_file(SOURCE))
    X = scipy.sparse.csr_matrix(full.X)
    pool = np.flatnonzero(~full.var_names.duplicated())[:N_POOL]
    genes_a, genes_b = pool[:3000], pool[1500:][::-1]
    rng = np.random.default_rng(17)
    n_b = full.n_obs - N_A
    a = anndata.AnnData(
        X=stored(X[:N_A][:, genes_a]),
        obs=pd.DataFrame(
            {
                "plate": pd.Categorical(rng.choice(["p1", "p2"], N_A), categories=["p1", "p2"]),
                "n_reads": np.arange(N_A, dtype=np.int16),
            },
            index=[f"a{i}" for i in range(N_A)],
        ),
        var=pd.DataFrame(index=full.var_names[genes_a]),
    )
    b = anndata.AnnData(
        X=stored(X[N_A:][:, genes_b] * SCALE_B),
        obs=pd.DataFrame(
            {
                "plate": pd.Categorical(rng.choice(["p3", "p1"], n_b), categories=["p3", "p1"]),
                "n_reads": np.arange(n_b, dtype=np.int64) * 1000,
                "donor": rng.choice(["d1", "d2"], n_b),
            },
            index=[f"b{i}" for i in range(n_b)],
        ),
        var=pd.DataFrame(index=full.var_names[genes_b]),
    )
    sources = tmp_path_factory.mktemp("collection-sources")
    for name, adata in [("part_a", a), ("part_b", b)]:
        adata.write_h5ad(sources / f"{name}.h5ad")
    return {"part_a": read(sources / "part_a.h5ad"), "part_b": read(sources / "part_b.h5ad"), "dir": sources}


def ingest_members(cellflight, members, data):
    for name in ("part_a", "part_b"):
        cellflight.ok("ingest", members["dir"] / f"{name}.h5ad", data / name, "--force")


@pytest.fixture(scope="module")
def data(cellflight, members, tmp_path_factory):
    """part_a and part_b; `pooled` (outer) made by the command line,
    `common` (inner) by writing its file."""
    data = tmp_path_factory.mktemp("collections") / "data"
    ingest_members(cellflight, members, data)
    cellflight.ok("collection", "create", "--data", data, "pooled", "--member", "part_a", "--member", "part_b")
    (data / "common.collection.json").write_text(json.dumps({"members": ["part_a", "part_b"], "join": "inner"}))
    return data


@pytest.fixture(scope="module")
def served(cellflight, data):
    with serving(cellflight, data) as (server, address):
        yield address


@pytest.fixture(scope="module")
def client(served):
    with package.connect(served) as client:
        yield client


def member_of(cell: int) -> tuple[str, int]:
    return ("part_a", cell) if cell < N_A else ("part_b", cell - N_A)


def expected_row(members, space: dict[str, int], cell: int) -> np.ndarray:
    """The source row of `cell`, each value placed at its gene's position
    in the collection's gene space (genes outside it dropped)."""
    name, local = member_of(cell)
    source = members[name]
    row = scipy.sparse.csr_matrix(source.X)[local]
    out = np.zeros(len(space), dtype=np.float64)
    for gene, value in zip(source.var_names[row.indices], row.data):
        if gene in space:
            out[space[gene]] = value
    return out


def gene_space(client, name: str) -> dict[str, int]:
    genes = client.genes(name, columns=["gene_idx", "gene_id"])
    return {g: i for i, g in zip(genes.column("gene_idx").to_pylist(), genes.column("gene_id").to_pylist())}


# --- the gene space and the listing ---------------------------------------------


def test_the_gene_spaces_follow_the_documented_orders(client, members):
    a, b = list(members["part_a"].var_names), list(members["part_b"].var_names)
    outer = a + [g for g in b if g not in set(a)]
    inner = [g for g in a if g in set(b)]
    assert list(gene_space(client, "pooled")) == outer
    assert list(gene_space(client, "common")) == inner
    assert len(outer) == N_POOL and len(inner) == 1500


def test_collections_are_listed_like_datasets(client, members):
    by_name = {d.name: d for d in client.datasets()}
    assert sorted(by_name) == ["common", "part_a", "part_b", "pooled"]
    nnz = by_name["part_a"].nnz + by_name["part_b"].nnz
    assert (by_name["pooled"].n_cells, by_name["pooled"].n_genes, by_name["pooled"].nnz) == (200, N_POOL, nnz)
    assert (by_name["common"].n_cells, by_name["common"].n_genes) == (200, 1500)
    assert by_name["pooled"].version != by_name["common"].version
    assert by_name["pooled"].schema.names == [
        "cell_id", "obs_name", "plate", "n_reads", "stat_n_genes", "stat_total", "donor", "source_dataset",
    ]  # fmt: skip


def test_inspect_describes_a_collection_and_verifies_its_members(cellflight, data, members):
    out = cellflight.ok("inspect", data / "common.collection.json", "--verify").stdout
    n_cells = members["part_a"].n_obs + members["part_b"].n_obs
    shared = len(set(members["part_a"].var_names) & set(members["part_b"].var_names))
    assert re.search(rf"shape +{n_cells} cells x {shared} genes", out), out
    assert re.search(r"join +inner on gene_id", out), out
    for name in ("part_a", "part_b"):
        assert re.search(rf"member +{name} \(.*{members[name].n_obs} cells", out), out
    assert re.search(rf"cells \(obs\): {n_cells} rows", out) and "source_dataset" in out, out
    assert re.search(rf"genes \(var\): {shared} rows", out) and "stat_n_members" in out, out
    assert "verified: no faults" in out


# --- rows -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pooled", "common"], ids=["outer", "inner"])
@pytest.mark.parametrize("form", ["csr", "dense"])
def test_every_row_is_the_source_row_placed_by_gene_key(client, members, name, form):
    space = gene_space(client, name)
    seen = set()
    for batch in client.loader(name, batch_size=32, seed=4, streams=2, format=form):
        assert batch.n_genes == len(space)
        for r, cell in enumerate(batch.cell_id.astype(np.int64)):
            expected = expected_row(members, space, cell)
            np.testing.assert_array_equal(batch.toarray(np.float64)[r], expected, err_msg=f"cell {cell}")
            seen.add(int(cell))
    assert seen == set(range(200))


def test_named_genes_come_in_the_order_asked_from_either_member(client, members):
    space = gene_space(client, "pooled")
    keys = list(space)
    named = [keys[-1], keys[0], keys[2000]]  # part_b's alone, part_a's alone, both's
    for batch in client.loader("pooled", genes=named, batch_size=50):
        for r, cell in enumerate(batch.cell_id.astype(np.int64)):
            expected = expected_row(members, space, cell)[[space[k] for k in named]]
            np.testing.assert_array_equal(batch.toarray(np.float64)[r], expected, err_msg=f"cell {cell}")


def test_csr_values_keep_the_widest_members_type_and_sorted_genes(client, data):
    types = ["uint8", "uint16", "uint32"]  # counts, narrowest first
    manifests = [json.loads((data / m / "manifest.json").read_text()) for m in ("part_a", "part_b")]
    member_types = [m["matrix"]["value_type"] for m in manifests]
    assert member_types[0] != member_types[1], "part_b's scaled counts need a wider type"
    batch = next(iter(client.loader("pooled", batch_size=200, sampling="sequential")))
    assert batch.values.dtype == np.dtype(max(member_types, key=types.index))
    for r in range(len(batch)):
        genes = batch.indices[batch.indptr[r] : batch.indptr[r + 1]]
        assert np.all(np.diff(genes.astype(np.int64)) > 0), f"row {r} is not sorted"


def test_normalize_total_takes_the_total_over_every_stored_gene_of_an_inner_collection(client, members):
    space = gene_space(client, "common")
    transform = {"normalize_total": 1e4, "log1p": True}
    for batch in client.loader("common", batch_size=50, format="dense", transform=transform):
        for r, cell in enumerate(batch.cell_id.astype(np.int64)):
            name, local = member_of(cell)
            total = scipy.sparse.csr_matrix(members[name].X)[local].sum()
            placed = expected_row(members, space, cell)
            expected = np.log1p(placed / total * 1e4) if total else placed
            np.testing.assert_allclose(batch.x[r], expected.astype(np.float32), rtol=1e-6)


# --- cohorts, weights, obs columns, partitions, resume --------------------------------


def test_an_epoch_holds_every_cohort_cell_once(client):
    loader = client.loader("pooled", query="n_reads % 2 = 0 AND plate <> 'p2'", batch_size=16, seed=3, streams=3)
    cells = [int(c) for b in loader for c in b.cell_id[~b.is_padding]]
    expected = client.sql("SELECT cell_id FROM pooled.cells WHERE n_reads % 2 = 0 AND plate <> 'p2'")
    assert sorted(cells) == sorted(expected.column("cell_id").to_pylist())
    assert len(cells) == len(set(cells))


def stream(client: flight.FlightClient, request: dict, partition: int, start_batch: int) -> list:
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))
    ticket = {**json.loads(info.endpoints[partition].ticket.ticket), "start_batch": start_batch}
    return [
        (c.data.column("cell_id").to_pylist(), c.data.column("values").to_pylist())
        for c in client.do_get(flight.Ticket(json.dumps(ticket).encode()))
    ]


def test_a_partition_resumed_mid_epoch_sends_the_rest_of_the_same_batches(served):
    client = flight.connect(served)
    request = {"dataset": "pooled", "batch_size": 8, "partitions": 3, "seed": 9, "epoch": 2}
    for partition in range(3):
        whole = stream(client, request, partition, 0)
        assert stream(client, request, partition, 3) == whole[3:]


def test_balance_by_source_dataset_draws_both_members_equally(client):
    loader = client.loader(
        "pooled", sampling="weighted", balance_by="source_dataset", num_samples=4000, batch_size=200, seed=1
    )
    cells = np.concatenate([b.cell_id[~b.is_padding] for b in loader]).astype(np.int64)
    from_a = int((cells < N_A).sum())
    assert len(cells) == 4000 and 1800 < from_a < 2200, from_a


def test_obs_columns_carry_the_united_categories_and_widened_numbers(client, members):
    loader = client.loader("pooled", obs_columns=["plate", "source_dataset", "n_reads"], batch_size=64)
    assert loader.categories["plate"] == ["p1", "p2", "p3"]
    assert loader.categories["source_dataset"] == ["part_a", "part_b"]
    for batch in loader:
        for r, cell in enumerate(batch.cell_id.astype(np.int64)):
            name, local = member_of(cell)
            obs = members[name].obs.iloc[local]
            assert loader.categories["plate"][batch.obs["plate"][r]] == obs["plate"]
            assert loader.categories["source_dataset"][batch.obs["source_dataset"][r]] == name
            assert batch.obs["n_reads"][r] == obs["n_reads"]
        assert batch.obs["n_reads"].dtype == np.int64


# --- SQL ----------------------------------------------------------------------------


def duckdb_union(data) -> duckdb.DuckDBPyConnection:
    """pooled.cells by the rules of docs/format.md, written out in DuckDB:
    member order, cell ids moved by 120, Int16 with Int64 as BIGINT, the
    missing donor null, the member's name as source_dataset."""
    con = duckdb.connect()
    a, b = data / "part_a" / "cells.parquet", data / "part_b" / "cells.parquet"
    con.execute(
        f"""CREATE VIEW pooled_cells AS
        SELECT cell_id, obs_name, plate::VARCHAR AS plate, n_reads::BIGINT AS n_reads, stat_n_genes,
               stat_total, NULL::VARCHAR AS donor, 'part_a' AS source_dataset
        FROM read_parquet('{a}')
        UNION ALL
        SELECT cell_id + {N_A}, obs_name, plate::VARCHAR, n_reads, stat_n_genes,
               stat_total, donor, 'part_b'
        FROM read_parquet('{b}')"""
    )
    return con


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM {cells}",
        "SELECT source_dataset, plate, count(*) AS n, sum(n_reads) AS reads FROM {cells} "
        "GROUP BY source_dataset, plate",
        "SELECT cell_id, donor FROM {cells} WHERE donor IS NULL OR n_reads > 5000",
        "SELECT plate, max(stat_total) AS most FROM {cells} WHERE cell_id >= 100 GROUP BY plate",
        "SELECT cell_id FROM {cells} WHERE source_dataset = 'part_b' AND plate = 'p1'",
    ],
)
def test_sql_over_cells_equals_duckdb_over_the_members_unioned(served, data, sql):
    ours = flight_query(served, sql.format(cells="pooled.cells"))
    theirs = duckdb_union(data).sql(sql.format(cells="pooled_cells")).to_arrow_table()
    assert ours.column_names == theirs.column_names
    assert rows(decoded(ours)) == rows(decoded(theirs))


def decoded(table: pa.Table) -> pa.Table:
    """Categoricals as their values, chunk by chunk: a chunk of a member
    without the column holds only nulls, which pyarrow cannot unify with
    another chunk's dictionary."""
    columns = [
        pa.chunked_array([c.cast(column.type.value_type) for c in column.chunks], column.type.value_type)
        if pa.types.is_dictionary(column.type)
        else column
        for column in table.columns
    ]
    return pa.table(columns, names=table.column_names)


def test_genes_sums_the_members_statistics(client):
    genes = client.genes("pooled", query="stat_n_members = 2", columns=["gene_id", "stat_n_cells"])
    a = client.genes("part_a", columns=["gene_id", "stat_n_cells"]).to_pandas().set_index("gene_id")
    b = client.genes("part_b", columns=["gene_id", "stat_n_cells"]).to_pandas().set_index("gene_id")
    assert genes.num_rows == 1500
    for gene, n_cells in zip(genes.column("gene_id").to_pylist(), genes.column("stat_n_cells").to_pylist()):
        assert n_cells == a.loc[gene, "stat_n_cells"] + b.loc[gene, "stat_n_cells"]


def test_a_gene_query_picks_from_the_collections_gene_space(client, members):
    space = gene_space(client, "common")
    picked = [g for g, i in space.items() if i % 7 == 0]
    for batch in client.loader("common", genes_query="gene_idx % 7 = 0", batch_size=100, format="dense"):
        assert batch.n_genes == len(picked)
        for r, cell in enumerate(batch.cell_id.astype(np.int64)):
            expected = expected_row(members, space, cell)[[space[g] for g in picked]]
            np.testing.assert_array_equal(batch.x[r], expected.astype(np.float32))


# --- versions, definitions, grants ------------------------------------------------------


def test_a_member_replaced_changes_the_version_and_old_tickets_are_refused(cellflight, members, tmp_path):
    data = tmp_path / "data"
    ingest_members(cellflight, members, data)
    cellflight.ok("collection", "create", "--data", data, "pooled", "--member", "part_a", "--member", "part_b")
    server, address = start(cellflight, data)
    try:
        client = flight.connect(address)
        request = {"dataset": "pooled", "batch_size": 50}
        info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))
        before = json.loads(info.app_metadata)["dataset_version"]
        cellflight.ok("ingest", members["dir"] / "part_b.h5ad", data / "part_b", "--force")
        list(client.do_action(flight.Action("refresh", b"")))
        assert versions(client)["pooled"] != before
        with pytest.raises(pa.ArrowException, match="plan again"):
            client.do_get(info.endpoints[0].ticket).read_all()
    finally:
        assert stop(server) == 0


@pytest.mark.parametrize(
    "arguments, mentions",
    [
        (["twice", "--member", "part_a", "--member", "part_a"], ["member part_a is listed more than once"]),
        (["lost", "--member", "part_a", "--member", "nope"], ["member nope is not a dataset"]),
        (["part_b", "--member", "part_a"], ["a dataset already has that name"]),
        (["nest", "--member", "pooled"], ["member pooled is a collection"]),
        (["keyed", "--member", "part_a", "--gene-key", "symbol"], ["member part_a's genes have no column \"symbol\""]),
        (["pooled", "--member", "part_a"], ["already exists", "--force"]),
    ],
)
def test_a_definition_breaking_a_rule_is_refused_and_nothing_is_written(cellflight, data, arguments, mentions):
    before = sorted(p.name for p in data.iterdir())
    cellflight.fails("collection", "create", "--data", data, *arguments, mentions=mentions)
    assert sorted(p.name for p in data.iterdir()) == before


def test_a_collection_needs_a_grant_on_every_member(cellflight, data, tmp_path):
    users = {
        "one": {"token": "one-token-0123456789abcdef", "datasets": ["part_a"]},
        "named": {"token": "named-token-0123456789abcdef", "datasets": ["pooled", "part_a"]},
        "both": {"token": "both-token-0123456789abcdef", "datasets": ["part_a", "part_b"]},
    }
    server, address = start(cellflight, data, "--auth-file", users_file(tmp_path, {"users": users}))
    try:
        assert listed(address, bearer(users["one"]["token"])) == ["part_a"]
        assert listed(address, bearer(users["named"]["token"])) == ["part_a"]
        assert listed(address, bearer(users["both"]["token"])) == ["common", "part_a", "part_b", "pooled"]
        client = flight.connect(address)
        for who in ("one", "named"):
            command = flight.FlightDescriptor.for_command(json.dumps({"dataset": "pooled"}))
            with pytest.raises(flight.FlightUnauthorizedError, match="pooled"):
                client.get_flight_info(command, options=bearer(users[who]["token"]))
            with pytest.raises(flight.FlightUnauthorizedError, match="pooled"):
                sql = json.dumps({"sql": "SELECT count(*) FROM pooled.cells"})
                client.get_flight_info(flight.FlightDescriptor.for_command(sql), options=bearer(users[who]["token"]))
    finally:
        assert stop(server) == 0
