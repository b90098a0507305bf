"""The training stream, read by a hand-written pyarrow client that follows
docs/protocol.md: a JSON request, tickets, one record batch a minibatch."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from cellflight_dataset import load_dataset
from cli import log, wait_until
from test_serve import start, stop

N_CELLS = 1000


@pytest.fixture(scope="module")
def served(cellflight, tmp_path_factory):
    """A generated dataset, served; yields (client, dataset)."""
    data = tmp_path_factory.mktemp("stream")
    cellflight.ok("generate", data / "cells", "--cells", N_CELLS, "--genes", 300, "--seed", 7)
    server, address = start(cellflight, data / "cells")
    try:
        yield flight.connect(address), load_dataset(data / "cells")
    finally:
        stop(server)


def plan(client, **request) -> flight.FlightInfo:
    return client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))


def read_partition(client, endpoint, start_batch=None) -> list[tuple[dict, pa.RecordBatch]]:
    ticket = endpoint.ticket.ticket
    if start_batch is not None:
        ticket = json.dumps({**json.loads(ticket), "start_batch": start_batch}).encode()
    reader = client.do_get(flight.Ticket(ticket))
    batches = []
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return batches
        batches.append((json.loads(chunk.app_metadata.to_pybytes()), chunk.data))


def test_every_cell_once_per_epoch_across_partitions_with_padding_flagged(served):
    client, _ = served
    info = plan(client, batch_size=16, block_size=4, fetch_factor=3, partitions=3, seed=5)
    assert len(info.endpoints) == 3
    streams = [read_partition(client, e) for e in info.endpoints]
    counts = {len(s) for s in streams}
    assert len(counts) == 1, "every partition streams the same number of batches"
    real, padding = [], []
    for p, stream in enumerate(streams):
        assert [m for m, _ in stream] == [{"partition": p, "batch": k} for k in range(len(stream))]
        for _, batch in stream:
            ids = batch.column("cell_id").to_numpy()
            flags = batch.column("is_padding").to_numpy(zero_copy_only=False)
            real.extend(ids[~flags])
            padding.extend(ids[flags])
    assert sorted(real) == list(range(N_CELLS))
    assert len(padding) == (-N_CELLS) % 3
    assert info.total_records == N_CELLS + len(padding)


def test_minibatch_values_equal_the_stored_rows(served):
    client, dataset = served
    info = plan(client, batch_size=32, seed=1)
    for _, batch in read_partition(client, info.endpoints[0]):
        for row, cell in enumerate(batch.column("cell_id").to_numpy()):
            stored = dataset.X[cell]
            assert batch.column("indices")[row].values.to_numpy().tolist() == stored.indices.tolist()
            assert batch.column("values")[row].values.to_numpy().tolist() == stored.data.tolist()


def test_the_same_request_gives_the_same_stream_and_epochs_differ(served):
    client, _ = served
    order = lambda **r: [
        cell for _, b in read_partition(client, plan(client, **r).endpoints[0]) for cell in b.column("cell_id").to_pylist()
    ]
    assert order(seed=3, epoch=1) == order(seed=3, epoch=1)
    assert order(seed=3, epoch=1) != order(seed=3, epoch=2)
    assert order(sampling="sequential") == list(range(N_CELLS))


def test_resuming_from_start_batch_gives_exactly_the_rest(served):
    client, _ = served
    endpoint = plan(client, batch_size=10, fetch_factor=4, seed=9).endpoints[0]
    full = read_partition(client, endpoint)
    for start in (0, 3, 4, 57, len(full)):
        rest = read_partition(client, endpoint, start_batch=start)
        assert [m for m, _ in rest] == [m for m, _ in full[start:]]
        assert [b.equals(c) for (_, b), (_, c) in zip(rest, full[start:])] == [True] * len(rest)


# pyarrow's exception by gRPC code: INVALID_ARGUMENT -> ArrowInvalid,
# NOT_FOUND -> ArrowKeyError, UNIMPLEMENTED -> ArrowNotImplementedError,
# FAILED_PRECONDITION -> ArrowInvalid (its message says "precondition failed").
@pytest.mark.parametrize(
    "request_json, error, words",
    [
        ("{not json", pa.ArrowInvalid, ["invalid argument", "invalid request"]),
        ('{"batchsize": 3}', pa.ArrowInvalid, ["unknown field `batchsize`"]),
        ('{"batch_size": 0}', pa.ArrowInvalid, ["batch_size", "at least 1"]),
        ('{"batch_size": -4}', pa.ArrowInvalid, ["invalid value"]),
        ('{"dataset": "nope"}', pa.ArrowKeyError, ["not found", "unknown dataset", "nope"]),
        ('{"batch_size": 100000}', pa.ArrowInvalid, ["batch_size must be at most 65536, got 100000"]),
        ('{"partitions": 4294967295}', pa.ArrowInvalid, ["partitions must be at most 65536, got 4294967295"]),
        ('{"query": "no_such_column > 1"}', pa.ArrowInvalid, ["unknown column", "no_such_column"]),
        ('{"query": "plate = 1"}', pa.ArrowInvalid, ["invalid query", "Int64"]),
        ("\x00\x01garbage", pa.ArrowInvalid, ["neither a JSON object", "nor a Flight SQL command"]),
    ],
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(served, request_json, error, words):
    client, _ = served
    with pytest.raises(error) as raised:
        client.get_flight_info(flight.FlightDescriptor.for_command(request_json))
    for word in words:
        assert word in str(raised.value), str(raised.value)
    assert plan(client).total_records == N_CELLS


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t: b"garbage", ["invalid argument", "invalid ticket", "neither a JSON object"]),
        (lambda t: {**t, "partition": 5}, ["invalid argument", "partition 5", "1 partitions"]),
        (lambda t: {**t, "start_batch": -1}, ["invalid argument", "invalid ticket"]),
        (lambda t: {**t, "start_batch": 10_000}, ["invalid argument", "start_batch"]),
        (lambda t: {**t, "dataset_version": "old"}, ["precondition failed", "version old", "plan again"]),
    ],
)
def test_bad_tickets_are_refused_with_the_reason(served, edit, words):
    client, _ = served
    ticket = json.loads(plan(client).endpoints[0].ticket.ticket)
    edited = edit(ticket)
    raw = edited if isinstance(edited, bytes) else json.dumps(edited).encode()
    with pytest.raises(pa.ArrowInvalid) as raised:
        client.do_get(flight.Ticket(raw)).read_all()
    for word in words:
        assert word in str(raised.value), str(raised.value)


def test_a_client_that_goes_away_mid_stream_frees_its_stream(cellflight, tmp_path):
    """The server's producer notices the closed stream and ends (its log
    says so), rather than reading the rest of the epoch for nobody."""
    cellflight.ok("generate", tmp_path / "cells", "--cells", 20_000, "--genes", 300)
    server = cellflight.popen("serve", "--data", tmp_path / "cells", "--listen", "127.0.0.1:0", "--log", "cellflight=debug")
    try:
        address = server.stdout.readline().split()[-1]
        client = flight.connect(address)
        info = plan(client, batch_size=8, fetch_factor=2)
        reader = client.do_get(info.endpoints[0].ticket)
        reader.read_chunk()
        reader.cancel()
        client.close()
        wait_until(lambda: "stream freed" in log(server), 30, "the server never reported the abandoned stream as freed")
    finally:
        stop(server)
