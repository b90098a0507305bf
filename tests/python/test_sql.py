"""SQL over cell and gene metadata, through the real server: the ADBC Flight
SQL driver (what notebooks use) and plain pyarrow (`{"sql": ...}`), checked
against DuckDB reading the same Parquet files, an independent engine."""

from __future__ import annotations

import json
import math
import signal
import time

import adbc_driver_flightsql.dbapi as adbc
import duckdb
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from test_serve import start, stop

N_CELLS = 2000


@pytest.fixture(scope="module")
def data(cellflight, tmp_path_factory):
    data = tmp_path_factory.mktemp("sql")
    cellflight.ok("generate", data / "tahoe", "--cells", N_CELLS, "--genes", 200, "--seed", 3)
    cellflight.ok("generate", data / "small", "--cells", 300, "--genes", 50, "--seed", 4, "--obs-only")
    return data


@pytest.fixture(scope="module")
def server(cellflight, data):
    """Both datasets served, `tahoe` the default; yields the address."""
    process, address = start(cellflight, data, "--default-dataset", "tahoe")
    try:
        yield address
    finally:
        assert stop(process) == 0


@pytest.fixture
def adbc_conn(server):
    with adbc.connect(server) as conn:
        yield conn


def adbc_query(conn, sql: str, parameters=None) -> pa.Table:
    with conn.cursor() as cursor:
        cursor.execute(sql, parameters)
        return cursor.fetch_arrow_table()


def flight_query(address: str, sql: str) -> pa.Table:
    """Ad hoc SQL with pyarrow alone, as docs/protocol.md describes."""
    client = flight.connect(address)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"sql": sql})))
    assert len(info.endpoints) == 1
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.schema.equals(info.schema), (table.schema, info.schema)
    return table


def duckdb_query(data, sql: str) -> pa.Table:
    """The same query in DuckDB, over the Parquet files themselves."""
    con = duckdb.connect()
    for dataset in ("tahoe", "small"):
        for table in ("cells", "genes"):
            path = data / dataset / f"{table}.parquet"
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {dataset}")
            con.execute(f"CREATE VIEW {dataset}.{table} AS SELECT * FROM read_parquet('{path}')")
    return con.execute(sql).to_arrow_table()


def rows(table: pa.Table) -> list[tuple]:
    """Order-free, type-tolerant rows: categoricals as strings, floats to 9
    significant digits, nulls first."""

    def value(v):
        if isinstance(v, float):
            return None if math.isnan(v) else float(f"{v:.9g}")
        return v

    table = table.combine_chunks()
    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns.append(column.to_pylist())
    records = [tuple(value(v) for v in record) for record in zip(*columns)]
    return sorted(records, key=lambda r: tuple((v is not None, str(type(v)), v) for v in r))


# Each query names its tables the way both engines accept; DuckDB reads the
# same Parquet files through views of the same names.
AGREEING_QUERIES = [
    "SELECT plate, count(*) AS n FROM tahoe.cells GROUP BY plate",
    "SELECT drug, avg(stat_total) AS mean_total, max(stat_n_genes) AS most FROM tahoe.cells GROUP BY drug",
    "SELECT cell_id FROM tahoe.cells WHERE plate = 'plate2' AND stat_n_genes > 25",
    "SELECT cell_id, obs_name FROM tahoe.cells WHERE obs_name LIKE 'cell_1%5'",
    "SELECT cell_id, drug FROM tahoe.cells WHERE drug IN ('drug_010', 'drug_021', 'DMSO_TF')",
    "SELECT count(*) AS n, count(NULLIF(plate, 'plate1')) AS not_plate1, "
    "sum(CASE WHEN NULLIF(plate, 'plate1') IS NULL THEN 1 ELSE 0 END) AS nulls FROM tahoe.cells",
    "SELECT cell_line, min(NULLIF(stat_total, 220.0)) AS lowest FROM tahoe.cells GROUP BY cell_line",
    "SELECT g.gene_id, g.stat_n_cells, c.plate FROM tahoe.genes g "
    "JOIN tahoe.cells c ON g.gene_idx = c.cell_id WHERE c.stat_n_genes > 20",
    "SELECT s.plate, count(*) AS n FROM small.cells s JOIN tahoe.cells t ON s.cell_id = t.cell_id GROUP BY s.plate",
]


@pytest.mark.parametrize("sql", AGREEING_QUERIES)
def test_adbc_and_pyarrow_answers_equal_duckdb(server, adbc_conn, data, sql):
    expected = rows(duckdb_query(data, sql))
    assert expected, "a query that selects nothing checks nothing"
    assert rows(adbc_query(adbc_conn, sql)) == expected
    assert rows(flight_query(server, sql)) == expected


def test_the_default_dataset_is_reachable_unqualified(adbc_conn, data):
    got = adbc_query(adbc_conn, "SELECT count(*) AS n FROM cells WHERE plate = 'plate1'")
    expected = duckdb_query(data, "SELECT count(*) AS n FROM tahoe.cells WHERE plate = 'plate1'")
    assert got.column("n").to_pylist() == expected.column("n").to_pylist()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT cell_id FROM cells WHERE plate = ? AND stat_n_genes > ?",
        "SELECT cell_id FROM cells WHERE plate = $1 AND stat_n_genes > $2",
    ],
)
def test_bound_parameters_select_like_literals(adbc_conn, data, sql):
    got = adbc_query(adbc_conn, sql, ("plate3", 28))
    expected = duckdb_query(data, "SELECT cell_id FROM tahoe.cells WHERE plate = 'plate3' AND stat_n_genes > 28")
    assert rows(got) == rows(expected) and len(expected) > 0
    # The same prepared statement, bound again, answers for the new values.
    again = adbc_query(adbc_conn, sql, ("plate4", 28))
    assert rows(again) == rows(
        duckdb_query(data, "SELECT cell_id FROM tahoe.cells WHERE plate = 'plate4' AND stat_n_genes > 28")
    )


def test_pandas_frames_come_straight_from_a_query(adbc_conn):
    with adbc_conn.cursor() as cursor:
        cursor.execute("SELECT plate, count(*) AS n FROM cells GROUP BY plate ORDER BY plate")
        frame = cursor.fetch_df()
    assert list(frame.columns) == ["plate", "n"]
    assert frame["n"].sum() == N_CELLS


def test_get_objects_lists_every_dataset_table_and_column(adbc_conn, data):
    objects = adbc_conn.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["cellflight"]
    schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
    assert sorted(schemas) == ["small", "tahoe"]
    tables = {t["table_name"]: t for t in schemas["tahoe"]["db_schema_tables"]}
    assert sorted(tables) == ["cells", "genes"]
    columns = [c["column_name"] for c in tables["cells"]["table_columns"]]
    parquet_columns = duckdb_query(data, "SELECT * FROM tahoe.cells LIMIT 0").column_names
    assert columns == parquet_columns
    assert adbc_conn.adbc_get_table_types() == ["TABLE"]


def test_table_schemas_keep_the_stored_types(adbc_conn, data):
    schema = adbc_conn.adbc_get_table_schema("cells", db_schema_filter="tahoe", catalog_filter="cellflight")
    assert schema.field("cell_id").type == pa.uint64()
    assert schema.field("stat_n_genes").type == pa.uint32()
    assert pa.types.is_dictionary(schema.field("plate").type)
    genes = adbc_conn.adbc_get_table_schema("genes", db_schema_filter="small", catalog_filter="cellflight")
    assert genes.names[:2] == ["gene_idx", "gene_id"]


REFUSALS = [
    ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
    ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
    ("DROP TABLE cells", "DROP TABLE"),
    ("INSERT INTO cells SELECT * FROM cells", "INSERT"),
    ("DELETE FROM cells", "DELETE"),
    ("UPDATE cells SET plate = 'x'", "UPDATE"),
    ("SET datafusion.execution.batch_size = 1", "SET"),
    ("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
    ("SELECT 1; SELECT 2", "2 statements"),
    ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
]


@pytest.mark.parametrize("sql,named", REFUSALS)
def test_refusals_name_what_was_refused_and_the_next_query_works(server, adbc_conn, sql, named):
    with pytest.raises(pa.ArrowInvalid, match=named):
        flight_query(server, sql)
    with pytest.raises(adbc.Error, match=named):
        adbc_query(adbc_conn, sql)
    assert adbc_query(adbc_conn, "SELECT count(*) AS n FROM cells").column("n").to_pylist() == [N_CELLS]


def test_copy_to_is_refused_and_writes_no_file(server, adbc_conn, tmp_path):
    target = tmp_path / "out.csv"
    sql = f"COPY (SELECT 1) TO '{target}'"
    with pytest.raises(pa.ArrowInvalid, match="COPY"):
        flight_query(server, sql)
    with pytest.raises(adbc.Error, match="COPY"):
        adbc_query(adbc_conn, sql)
    assert not target.exists()


@pytest.mark.parametrize(
    "sql,error,named",
    [
        ("SELEC plate FROM cells", pa.ArrowInvalid, "SELEC"),
        ("SELECT no_such_column FROM cells", pa.ArrowInvalid, "no_such_column"),
        ("SELECT * FROM nowhere.cells", pa.ArrowKeyError, "nowhere"),
        ("SELECT * FROM tahoe.no_such_table", pa.ArrowKeyError, "no_such_table"),
        ("SELECT CAST(obs_name AS INT) FROM cells", pa.ArrowInvalid, "cell_"),
    ],
)
def test_mistakes_map_to_clear_errors_and_the_server_stays_up(server, sql, error, named):
    with pytest.raises(error, match=named):
        flight_query(server, sql)
    assert flight_query(server, "SELECT count(*) AS n FROM cells").column("n").to_pylist() == [N_CELLS]


def test_unknown_keys_of_a_sql_request_are_refused(server):
    client = flight.connect(server)
    command = json.dumps({"sql": "SELECT 1", "dataset": "tahoe"})
    with pytest.raises(pa.ArrowInvalid, match="unknown field `dataset`"):
        client.get_flight_info(flight.FlightDescriptor.for_command(command))


@pytest.fixture(scope="module")
def limited(cellflight, data):
    """A server with tight SQL limits; yields its address."""
    process, address = start(
        cellflight, data, "--default-dataset", "tahoe",
        "--sql-max-rows", "100", "--sql-timeout", "3s", "--sql-memory", "8MiB",
    )  # fmt: skip
    try:
        yield address
    finally:
        assert stop(process) == 0


def test_the_row_cap_is_named_when_exceeded(limited):
    assert flight_query(limited, "SELECT * FROM cells LIMIT 100").num_rows == 100
    # pyarrow raises RESOURCE_EXHAUSTED as ArrowInvalid, the code in its message.
    with pytest.raises(pa.ArrowInvalid, match="resource exhausted: row cap of 100 rows"):
        flight_query(limited, "SELECT * FROM cells")


def test_the_memory_limit_is_named_when_exceeded(limited):
    sql = "SELECT count(*) FROM (SELECT a.cell_id, b.cell_id FROM cells a, cells b GROUP BY 1, 2)"
    with pytest.raises(pa.ArrowInvalid, match="resource exhausted: memory limit of 8388608 bytes"):
        flight_query(limited, sql)
    assert flight_query(limited, "SELECT count(*) AS n FROM cells").column("n").to_pylist() == [N_CELLS]


def test_a_query_past_the_timeout_is_stopped(limited):
    started = time.monotonic()
    with pytest.raises(flight.FlightTimedOutError, match="timed out after 3s"):
        # The filter keeps the count from being answered from statistics.
        flight_query(limited, "SELECT count(*) FROM cells a, cells b, cells c WHERE a.stat_total + b.stat_total > c.stat_total")
    assert time.monotonic() - started < 30
    assert flight_query(limited, "SELECT count(*) AS n FROM cells").column("n").to_pylist() == [N_CELLS]


def versions(client) -> dict:
    return {json.loads(i.descriptor.command)["dataset"]: json.loads(i.app_metadata)["version"] for i in client.list_flights()}


def test_refresh_and_sighup_pick_up_new_and_replaced_datasets(cellflight, tmp_path):
    data = tmp_path / "data"
    cellflight.ok("generate", data / "first", "--cells", 100, "--genes", 20, "--obs-only")
    process, address = start(cellflight, data)
    try:
        client = flight.connect(address)
        assert sorted(versions(client)) == ["first"]
        # Written while serving: invisible until refreshed.
        cellflight.ok("generate", data / "second", "--cells", 50, "--genes", 20, "--obs-only")
        assert sorted(versions(client)) == ["first"]
        [result] = client.do_action(flight.Action("refresh", b""))
        answered = json.loads(result.body.to_pybytes())["datasets"]
        assert answered == versions(client) and sorted(answered) == ["first", "second"]
        assert flight_query(address, "SELECT count(*) AS n FROM second.cells").column("n").to_pylist() == [50]
        # Replaced in place, then SIGHUP: the new version serves.
        cellflight.ok("generate", data / "second", "--cells", 70, "--genes", 20, "--obs-only", "--force")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while versions(client)["second"] == answered["second"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert versions(client)["second"] != answered["second"]
        assert flight_query(address, "SELECT count(*) AS n FROM second.cells").column("n").to_pylist() == [70]
        # The sole dataset at startup stays the default.
        assert flight_query(address, "SELECT count(*) AS n FROM cells").column("n").to_pylist() == [100]
    finally:
        assert stop(process) == 0


def test_an_unknown_default_dataset_is_refused_at_startup(cellflight, data):
    cellflight.fails(
        "serve", "--data", data, "--listen", "127.0.0.1:0", "--default-dataset", "nope",
        mentions=["default dataset nope"],
    )  # fmt: skip


def test_a_query_running_across_a_replacement_finishes_on_the_old_version(cellflight, data_file, tmp_path):
    data = tmp_path / "data"
    cellflight.ok("generate", data / "atlas", "--cells", 30_000, "--genes", 20, "--obs-only", "--seed", 5)
    old_ids = duckdb.connect().execute(f"SELECT cell_id FROM read_parquet('{data / 'atlas' / 'cells.parquet'}')").fetchall()
    process, address = start(cellflight, data)
    try:
        client = flight.connect(address)
        command = json.dumps({"sql": "SELECT cell_id, obs_name FROM atlas.cells"})
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
        reader = client.do_get(info.endpoints[0].ticket)
        first = reader.read_chunk().data
        # Replaced by a 200-cell ingest, and the catalog refreshed, mid-query.
        cellflight.ok("ingest", data_file("wu2020_200_v0_11.h5ad"), data / "atlas", "--force")
        list(client.do_action(flight.Action("refresh", b"")))
        rest = reader.read_all()
        ids = first.column("cell_id").to_pylist() + rest.column("cell_id").to_pylist()
        assert sorted(ids) == sorted(i for (i,) in old_ids) and len(ids) == 30_000
        # New queries see the new version.
        assert flight_query(address, "SELECT count(*) AS n FROM atlas.cells").column("n").to_pylist() == [200]
    finally:
        assert stop(process) == 0
