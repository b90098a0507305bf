"""A corpus of hostile requests, tickets and SQL sent to a running server:
each is refused with its own status and a short message naming what is
wrong, nothing is read or written outside the datasets, and the server
goes on serving."""

from __future__ import annotations

import json
import os

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from cli import status_bytes
from test_serve import serving, start, stop

MEGABYTE = "x" * (1 << 20)
# The server cuts its messages at about 2 kB; pyarrow may quote one twice
# in the text of its exception. A message repeating 1 MB would be far longer.
LONGEST_MESSAGE = 8192


MiB = 1 << 20
# Budgets small enough that the memory formula of docs/operations.md is a
# real bound on what the corpus below may cost: --max-memory, --sql-memory,
# the caches, and 512 MiB for each planning thread, over the idle server
# and its mapped matrix.
BUDGET_FLAGS = ["--max-memory", "256MiB", "--sql-memory", "128MiB", "--sql-query-memory", "128MiB",
                "--cohort-cache", "16MiB", "--column-cache", "16MiB", "--sql-planning-threads", "1"]  # fmt: skip
WORST_GROWTH = (256 + 128 + 16 + 16 + 1 * 512) * MiB


@pytest.fixture(scope="module")
def served(cellflight, tmp_path_factory):
    data = tmp_path_factory.mktemp("hostile") / "data"
    cellflight.ok("generate", data / "alpha", "--cells", 200, "--genes", 50, "--seed", 1)
    with serving(cellflight, data, *BUDGET_FLAGS) as (server, address):
        yield {"address": address, "server": server, "data": data, "idle_rss": status_bytes(server.pid, "VmRSS")}


def refusal(call) -> pa.ArrowException:
    with pytest.raises(pa.ArrowException) as raised:
        call()
    return raised.value


HOSTILE_REQUESTS = [
    ({"batch_size": 4294967296}, "invalid argument", "batch_size"),
    ({"batch_size": -1}, "invalid argument", "batch_size"),
    ({"batch_size": 0}, "invalid argument", "batch_size"),
    ({"batch_size": 50_000_000}, "invalid argument", "batch_size"),
    ({"epoch": -5}, "invalid argument", "epoch"),
    ({"seed": 1.5}, "invalid argument", "seed"),
    ({"partitions": 0}, "invalid argument", "partitions"),
    ({"partitions": 4294967295}, "invalid argument", "partitions must be at most 65536"),
    ({"batch_size": 65536, "fetch_factor": 4096}, "invalid argument", "batch_size × fetch_factor must be at most"),
    ({"block_size": 18446744073709551616}, "invalid argument", "block_size"),
    ({"dataset": MEGABYTE}, "not found", "unknown dataset"),
    ({MEGABYTE: 1}, "invalid argument", "unknown field"),
    ({"query": MEGABYTE}, "invalid argument", "column"),
    ({"obs_columns": [MEGABYTE]}, "invalid argument", "obs_columns"),
    ({"genes": ["g"] * 100_000}, "invalid argument", "genes"),
    ({"format": "parquet"}, "invalid argument", "format"),
    ({"query": "plate = 'a'; DROP TABLE cells"}, "invalid argument", "query"),
    ({"query": "cell_id IN (SELECT * FROM '/etc/passwd')"}, "invalid argument", "/etc/passwd"),
]


@pytest.mark.parametrize("command, status, named", HOSTILE_REQUESTS, ids=[f"request-{i}" for i in range(len(HOSTILE_REQUESTS))])
def test_hostile_requests_are_refused_briefly_naming_the_problem(served, command, status, named):
    client = flight.connect(served["address"])
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
    error = refusal(lambda: client.get_flight_info(descriptor))
    text = str(error)
    assert f"returned {status} error" in text, text[:500]
    assert named in text, text[:500]
    assert len(text) < LONGEST_MESSAGE, f"the message echoes the input: {len(text)} bytes"


HOSTILE_SQL = [
    ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
    ("COPY (SELECT 1) TO '/tmp/cellflight-hostile.csv'", "COPY"),
    ("INSERT INTO alpha.cells SELECT * FROM alpha.cells", "INSERT"),
    ("SET datafusion.execution.target_partitions = 1000000", "SET"),
    ("SELECT 1; SELECT 2", "2 statements"),
    ("SELECT '" + MEGABYTE + "' FROM nowhere", "nowhere"),
]


@pytest.mark.parametrize("sql, named", HOSTILE_SQL, ids=[s.split()[0] + str(i) for i, (s, _) in enumerate(HOSTILE_SQL)])
def test_sql_reaching_for_files_or_writes_is_refused(served, sql, named, tmp_path):
    client = flight.connect(served["address"])
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"sql": sql}))
    text = str(refusal(lambda: client.get_flight_info(descriptor)))
    assert named in text, text[:500]
    assert len(text) < LONGEST_MESSAGE, f"the message echoes the input: {len(text)} bytes"


ALLOCATING_SQL = [
    ("SELECT repeat('x', 100000000000)", "repeat would make a value of 100000000000 bytes"),
    ("SELECT lpad(plate, 100000000000) FROM cells", "lpad would make a value of"),
    ("SELECT regexp_replace(repeat('ab', 30000), 'a', repeat('x', 1000), 'g')", "regexp_replace would make"),
    ("WITH a AS (SELECT repeat('x', 40000) AS s) SELECT s || s FROM a", "|| would make a value of 80000 bytes"),
    ("WITH a AS (SELECT repeat('x', 40000) AS s) SELECT concat(s, s, s) FROM a", "concat would make a value of 120000 bytes"),
    ("SELECT count(*) FROM generate_series(0, 4000000000)", "a series of 4000000001 rows"),
]


@pytest.mark.parametrize("sql, named", ALLOCATING_SQL, ids=[f"sql-{i}" for i in range(len(ALLOCATING_SQL))])
def test_sql_allocating_in_proportion_to_an_argument_is_refused(served, sql, named):
    client = flight.connect(served["address"])

    def run():
        info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"sql": sql})))
        client.do_get(info.endpoints[0].ticket).read_all()

    text = str(refusal(run))
    assert "returned resource exhausted error" in text, text[:500]
    assert named in text, text[:500]
    assert served["server"].poll() is None


COHORTS_LONGER_THAN_THE_DATASET = [
    "SELECT c.cell_id FROM cells c CROSS JOIN generate_series(1, 1000)",
    "SELECT CAST(value AS INT UNSIGNED) AS cell_id FROM generate_series(0, 4000000)",
]


@pytest.mark.parametrize("query", COHORTS_LONGER_THAN_THE_DATASET, ids=["join", "series"])
def test_a_cohort_is_collected_only_up_to_the_dataset_cell_count(served, query):
    client = flight.connect(served["address"])
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"query": query}))
    text = str(refusal(lambda: client.get_flight_info(descriptor)))
    assert "returned invalid argument error" in text, text[:500]
    assert "more rows than the dataset has cells (200)" in text, text[:500]


def test_hostile_tickets_are_refused(served):
    client = flight.connect(served["address"])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"batch_size": 32})))
    ticket = json.loads(info.endpoints[0].ticket.ticket)
    for edit, named in [
        ({"partition": 99}, "partition"),
        ({"start_batch": -1}, "start_batch"),
        ({"start_batch": 10**9}, "start_batch"),
        ({"dataset_version": MEGABYTE}, "version"),
        ({"request": "not an object"}, "request"),
    ]:
        hostile = flight.Ticket(json.dumps({**ticket, **edit}).encode())
        text = str(refusal(lambda: client.do_get(hostile).read_all()))
        assert named in text, (edit, text[:500])
        assert len(text) < LONGEST_MESSAGE
    for raw in [b"", b"\x00\xff\xfe", b"{" * 100_000]:
        text = str(refusal(lambda: client.do_get(flight.Ticket(raw)).read_all()))
        assert "returned invalid argument error" in text, text[:500]


def or_chain(terms: int) -> str:
    return " OR ".join(f"cell_id = {i}" for i in range(terms))


LONG_EXPRESSIONS = [
    {"query": or_chain(5000)},
    {"query": f"SELECT cell_id FROM cells WHERE {or_chain(5000)}"},
    {"genes_query": " OR ".join(f"gene_idx = {i}" for i in range(5000))},
    {"sampling": "weighted", "weights": " + ".join(["stat_total"] * 5000)},
    {"sql": f"SELECT count(*) FROM cells WHERE {or_chain(5000)}"},
]


@pytest.mark.parametrize("command", LONG_EXPRESSIONS, ids=["query", "select", "genes_query", "weights", "sql"])
def test_a_generated_expression_past_the_operator_bound_is_refused_not_a_crash(served, command):
    client = flight.connect(served["address"])
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
    text = str(refusal(lambda: client.get_flight_info(descriptor)))
    assert "returned invalid argument error" in text, text[:500]
    assert "operators" in text and "cell_id IN (" in text, text[:500]
    assert served["server"].poll() is None


def test_a_long_expression_over_flight_sql_is_refused_not_a_crash(served):
    with adbc.connect(served["address"]) as conn, conn.cursor() as cursor:
        with pytest.raises(adbc.Error) as refused:
            cursor.execute(f"SELECT count(*) FROM cells WHERE {or_chain(5000)}")
    assert "operators" in str(refused.value) and "cell_id IN (" in str(refused.value)
    assert served["server"].poll() is None


def test_expressions_at_the_bound_and_a_100000_id_in_list_are_served(served):
    client = flight.connect(served["address"])
    for query in [or_chain(500), "cell_id IN ({})".format(", ".join(map(str, range(100_000))))]:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"query": query})))
        assert info.total_records == 200


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def protobuf_bytes(number: int, payload: bytes) -> bytes:
    """Field `number` of a protobuf message, holding bytes (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def only_field(message: bytes) -> bytes:
    """The bytes of a message of one field of wire type 2."""
    assert message[0] & 0x07 == 2, message[:8]
    length, shift, at = 0, 0, 1
    while True:
        length |= (message[at] & 0x7F) << shift
        shift, at = shift + 7, at + 1
        if message[at - 1] < 0x80:
            break
    assert len(message) == at + length, (len(message), at, length)
    return message[at:]


def prepared_statement(handle: bytes) -> flight.FlightDescriptor:
    """A Flight SQL CommandPreparedStatementQuery (in its Any) of `handle`."""
    command = protobuf_bytes(1, handle)
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandPreparedStatementQuery"
    return flight.FlightDescriptor.for_command(protobuf_bytes(1, type_url) + protobuf_bytes(2, command))


def ipc_stream(*batches: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def cell_ids(*values: int) -> pa.RecordBatch:
    return pa.record_batch([pa.array(values, pa.int64())], names=["0"])


# The server's handle: field 1 the SQL, field 2 the bound parameters as an
# Arrow IPC stream (flight/src/flight_sql/handle.rs). Clients carry it, so
# they can forge it.
ONE_PLACEHOLDER = protobuf_bytes(1, b"SELECT cell_id FROM alpha.cells WHERE cell_id = $1")
FORGED_HANDLES = [
    (os.urandom(64), "invalid statement handle"),
    (ONE_PLACEHOLDER + protobuf_bytes(2, ipc_stream(cell_ids())), "got 0 rows"),
    (ONE_PLACEHOLDER + protobuf_bytes(2, ipc_stream(cell_ids(*range(1000)))), "got 1000 rows"),
    (ONE_PLACEHOLDER + protobuf_bytes(2, ipc_stream(cell_ids(1), cell_ids(2))), "more than one parameter batch"),
    (
        ONE_PLACEHOLDER + protobuf_bytes(2, ipc_stream(pa.record_batch([[1], [2]], names=["0", "1"]))),
        "1 placeholders and 2 parameters",
    ),
    (ONE_PLACEHOLDER + protobuf_bytes(2, b"not arrow"), "invalid statement handle"),
]


def put_parameters(address: str, handle: bytes, *batches: pa.RecordBatch) -> bytes:
    """Binds `batches` to `handle` by DoPut, as ADBC does; the new handle."""
    writer, reader = flight.connect(address).do_put(prepared_statement(handle), batches[0].schema)
    for batch in batches:
        writer.write_batch(batch)
    writer.done_writing()
    answer = reader.read()
    writer.close()
    return answer.to_pybytes()


@pytest.mark.parametrize("handle, named", FORGED_HANDLES, ids=["random", "no-row", "many-rows", "two-batches", "two-columns", "not-ipc"])
def test_a_forged_prepared_statement_handle_is_invalid_argument(served, handle, named):
    client = flight.connect(served["address"])

    def run():
        info = client.get_flight_info(prepared_statement(handle))
        client.do_get(info.endpoints[0].ticket).read_all()

    error = refusal(run)
    assert isinstance(error, pa.ArrowInvalid) and named in str(error), error
    assert served["server"].poll() is None


@pytest.mark.parametrize(
    "handle, parameters, named",
    [
        (os.urandom(64), [cell_ids(1)], "invalid statement handle"),
        (ONE_PLACEHOLDER, [cell_ids()], "got 0 rows"),
        (ONE_PLACEHOLDER, [cell_ids(*range(1000))], "got 1000 rows"),
    ],
    ids=["random", "no-row", "many-rows"],
)
def test_parameters_put_to_a_forged_handle_or_not_one_row_are_invalid_argument(served, handle, parameters, named):
    error = refusal(lambda: put_parameters(served["address"], handle, *parameters))
    assert isinstance(error, pa.ArrowInvalid) and named in str(error), error
    bound = put_parameters(served["address"], ONE_PLACEHOLDER, cell_ids(7))
    client = flight.connect(served["address"])
    info = client.get_flight_info(prepared_statement(only_field(bound)))  # DoPutPreparedStatementResult's handle
    assert client.do_get(info.endpoints[0].ticket).read_all().column("cell_id").to_pylist() == [7]


def test_a_do_put_is_bounded_as_a_whole_not_per_message(cellflight, tmp_path):
    cellflight.ok("generate", tmp_path / "alpha", "--cells", 200, "--genes", 50, "--seed", 1)
    server, address = start(cellflight, tmp_path, "--max-request-size", "64KiB")
    try:
        message = pa.record_batch([pa.array([b"x" * 10_000], pa.binary())], names=["0"])
        error = refusal(lambda: put_parameters(address, ONE_PLACEHOLDER, *[message] * 10))
        assert "resource exhausted" in str(error).lower(), error
        assert "DoPut's messages together pass the server's --max-request-size of 65536 bytes" in str(error)
        # Five such messages are read whole: refused for their rows, not their size.
        error = refusal(lambda: put_parameters(address, ONE_PLACEHOLDER, *[message] * 5))
        assert "got 5 rows" in str(error), error
        assert server.poll() is None
    finally:
        assert stop(server) == 0


def test_after_the_corpus_the_server_still_serves_within_its_memory_formula(served):
    # Named so it runs after the corpus above, in file order.
    assert served["server"].poll() is None
    matrices = sum(f.stat().st_size for f in served["data"].glob("*/*.arrow"))
    grown = status_bytes(served["server"].pid, "VmHWM") - served["idle_rss"] - matrices
    assert grown <= WORST_GROWTH, f"the corpus grew the server by {grown / MiB:.0f} MiB"
    client = flight.connect(served["address"])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"batch_size": 50})))
    rows = sum(client.do_get(e.ticket).read_all().num_rows for e in info.endpoints)
    assert rows == 200
