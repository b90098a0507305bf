"""Open-stream limits (`--max-streams`, `--max-streams-per-client`): a
stream past either is refused with RESOURCE_EXHAUSTED naming the limit,
others keep being served, and a slot comes back when its stream ends, its
client dies (or vanishes without closing its connection: keepalive), or
its client leaves it unread past `--stream-idle-timeout` (then the loader
resumes it by itself); and streams stay within the memory formula."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import cellflight

from cli import status_bytes, wait_until
from test_serve import start, stop
from test_stream import plan

# Dense rows of wide_dataset's 4,000 genes: an epoch (64 MB) cannot hide in
# gRPC's buffers, so a stream whose reader stops reading stays open.
REQUEST = {"format": "dense", "batch_size": 16, "fetch_factor": 2, "partitions": 4}


@pytest.fixture
def limited(cellflight, wide_dataset, tmp_path):
    """A server of its own allowing 3 streams, 2 per client, on TCP and a
    Unix socket, with metrics; yields (tcp address, unix address, metrics URL)."""
    socket = tmp_path / "cf.sock"
    server, address = start(
        cellflight, wide_dataset, "--unix", socket, "--max-streams", 3, "--max-streams-per-client", 2,
        "--metrics", "127.0.0.1:0",
    )  # fmt: skip
    try:
        yield address, f"grpc+unix://{socket}", metrics_url(server)
    finally:
        assert stop(server) == 0, "the server exits cleanly"


def metrics_url(server: subprocess.Popen) -> str:
    """The URL `serve` printed for its --metrics endpoint."""
    for line in server.stdout:
        if line.startswith("cellflight metrics on "):
            return line.split()[-1]
    raise AssertionError("serve did not print its metrics address")


def metric(url: str, name: str) -> float:
    """One sample of the server's Prometheus text, by name with labels."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} missing from\n{text}"
    return float(match.group(1))


def open_stream(address: str, partition: int) -> flight.FlightStreamReader:
    """Partition `partition` of REQUEST, its first minibatch read."""
    # Over a Unix socket gRPC names the socket path as :authority, which
    # the server's HTTP/2 stack refuses; any plain name will do.
    unix = address.startswith("grpc+unix://")
    client = flight.connect(address, generic_options=[("grpc.default_authority", "localhost")] if unix else None)
    reader = client.do_get(plan(client, **REQUEST).endpoints[partition].ticket)
    reader.read_chunk()
    return reader


def refusal(address: str, partition: int) -> str:
    with pytest.raises(pa.ArrowException) as raised:
        open_stream(address, partition)
    message = str(raised.value)
    assert "resource exhausted" in message.lower(), message
    return message


def eventually_opens(address: str, partition: int, seconds: float = 15) -> flight.FlightStreamReader:
    """A freed slot is given back once the server sees the stream gone."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return open_stream(address, partition)
        except pa.ArrowException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_client_past_its_limit_is_refused_and_the_server_limit_holds_for_all(limited):
    tcp, unix, metrics = limited
    held = [open_stream(tcp, 0), open_stream(tcp, 1)]
    assert "--max-streams-per-client" in refusal(tcp, 2)
    held.append(open_stream(unix, 2))  # another client: served
    assert "--max-streams)" in refusal(unix, 3)
    assert metric(metrics, "cellflight_streams_open") == 3
    assert metric(metrics, 'cellflight_errors_total{code="RESOURCE_EXHAUSTED"}') == 2
    for reader in held:
        reader.cancel()
    eventually_opens(tcp, 3).cancel()


def test_a_stream_read_to_its_end_gives_its_slot_back(limited):
    tcp, _, _ = limited
    for _ in range(3):  # more streams in turn than the limit allows at once
        client = flight.connect(tcp)
        info = plan(client, **{**REQUEST, "partitions": 64})
        assert client.do_get(info.endpoints[0].ticket).read_all().num_rows > 0
    eventually_opens(tcp, 0).cancel()


def test_a_killed_client_frees_its_streams(limited):
    tcp, _, metrics = limited
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_TWO_STREAMS, tcp, *map(str, REQUEST.values())],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "holding", "the holder opened its streams"
        assert "--max-streams-per-client" in refusal(tcp, 2)
        assert metric(metrics, "cellflight_streams_open") == 2
    finally:
        holder.kill()
        holder.wait()
    wait_until(lambda: metric(metrics, "cellflight_streams_open") == 0, 15, "the killed client's streams stay open")
    first = eventually_opens(tcp, 0)
    second = eventually_opens(tcp, 1)
    first.cancel()
    second.cancel()


HOLD_TWO_STREAMS = textwrap.dedent(
    """
    import json, sys, time
    import pyarrow.flight as flight
    address, fmt, batch, fetch, parts = sys.argv[1:]
    request = {"format": fmt, "batch_size": int(batch), "fetch_factor": int(fetch), "partitions": int(parts)}
    client = flight.connect(address)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))
    readers = [client.do_get(e.ticket) for e in info.endpoints[:2]]
    for r in readers:
        r.read_chunk()
    print("holding", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("flag", ["--max-streams", "--max-streams-per-client"])
@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_limit_that_is_not_a_positive_count_is_refused_naming_the_flag(cellflight, wide_dataset, flag, value):
    cellflight.fails("serve", "--data", wide_dataset, "--listen", "127.0.0.1:0", f"{flag}={value}", mentions=[flag, value])


@pytest.fixture
def impatient(cellflight, wide_dataset):
    """A server of one stream slot, reclaimed after a second unread; yields
    (address, metrics URL)."""
    server, address = start(
        cellflight, wide_dataset, "--max-streams", 1, "--stream-idle-timeout", "1s", "--metrics", "127.0.0.1:0",
    )  # fmt: skip
    try:
        yield address, metrics_url(server)
    finally:
        assert stop(server) == 0, "the server exits cleanly"


def test_a_paused_loader_loses_its_slot_then_resumes_and_reads_each_cell_once(impatient):
    address, metrics = impatient
    loader = cellflight.connect(address).loader(format="dense", batch_size=16, fetch_factor=2, prefetch=2)
    batches = iter(loader)
    cells = [next(batches).cell_id.copy()]
    # The trainer validates: nothing reads, and the slot goes to others.
    wait_until(lambda: metric(metrics, "cellflight_streams_open") == 0, 15, "the unread stream keeps its slot")
    eventually_opens(address, 0).cancel()
    cells.extend(batch.cell_id.copy() for batch in batches)
    assert metric(metrics, 'cellflight_errors_total{code="ABORTED"}') == 1
    np.testing.assert_array_equal(np.sort(np.concatenate(cells)), np.arange(4000))


MiB = 1 << 20
# Small budgets, so the formula of docs/operations.md is a tight check.
MAX_MEMORY, SQL_MEMORY, CACHES = 200 * MiB, 16 * MiB, 2 * 8 * MiB


@pytest.fixture
def budgeted(cellflight, wide_dataset):
    """A server with small memory budgets; yields (address, metrics URL, process)."""
    server, address = start(
        cellflight, wide_dataset, "--max-memory", "200MiB", "--sql-memory", "16MiB", "--sql-query-memory", "16MiB",
        "--cohort-cache", "8MiB", "--column-cache", "8MiB", "--metrics", "127.0.0.1:0",
    )  # fmt: skip
    try:
        yield address, metrics_url(server), server
    finally:
        assert stop(server) == 0, "the server exits cleanly"


def test_streams_whose_clients_stop_reading_stay_within_the_memory_formula(budgeted, wide_dataset):
    address, metrics, server = budgeted
    baseline = status_bytes(server.pid, "VmRSS")
    client = flight.connect(address)
    # A whole epoch a stream (4,000 dense cells, 64 MB), 1 MB minibatches,
    # fetches larger than the epoch: each stream reserves ~37 MiB, five fit.
    request = {"format": "dense", "batch_size": 64, "fetch_factor": 128}
    readers = []
    for seed in range(5):
        reader = client.do_get(plan(client, **request, seed=seed).endpoints[0].ticket)
        reader.read_chunk()  # then nothing: a paused trainer
        readers.append(reader)
    with pytest.raises(pa.ArrowException, match=r"--max-memory"):
        client.do_get(plan(client, **request, seed=5).endpoints[0].ticket).read_chunk()
    time.sleep(3)  # every producer fills its send queue
    assert metric(metrics, "cellflight_memory_reserved_bytes") <= MAX_MEMORY

    matrix = sum(f.stat().st_size for f in wide_dataset.glob("*.arrow"))
    grown = status_bytes(server.pid, "VmHWM") - baseline - matrix
    assert grown <= MAX_MEMORY + SQL_MEMORY + CACHES, f"the server grew {grown / MiB:.0f} MiB"
    for reader in readers:
        reader.cancel()
    wait_until(lambda: metric(metrics, "cellflight_memory_reserved_bytes") == 0, 15, "reservations outlive their streams")
    assert client.do_get(plan(client, **request).endpoints[0].ticket).read_all().num_rows == 4000


class FreezingProxy:
    """A TCP proxy for one connection that can go silent at once, keeping
    both sockets open: a peer that vanished without closing its
    connection (a node that lost power, a cut network)."""

    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("grpc://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"grpc://127.0.0.1:{self.listener.getsockname()[1]}"
        self.frozen = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(self.upstream)
        self.sockets += [client, server]
        threading.Thread(target=self.pump, args=(client, server), daemon=True).start()
        self.pump(server, client)

    def pump(self, source: socket.socket, sink: socket.socket):
        while not self.frozen.is_set():
            data = source.recv(65536)
            if not data or self.frozen.is_set():
                return
            sink.sendall(data)

    def close(self):
        for each in [self.listener, *self.sockets]:
            each.close()


def test_a_peer_that_vanishes_without_closing_loses_its_streams_to_keepalive(cellflight, wide_dataset):
    server, address = start(
        cellflight, wide_dataset, "--keepalive-interval", "1s", "--keepalive-timeout", "1s", "--metrics", "127.0.0.1:0",
    )  # fmt: skip
    proxy = FreezingProxy(address)
    try:
        metrics = metrics_url(server)
        client = flight.connect(proxy.address)
        reader = client.do_get(plan(client, **REQUEST).endpoints[0].ticket)
        reader.read_chunk()
        assert metric(metrics, "cellflight_streams_open") == 1
        proxy.frozen.set()  # the peer is gone; its connection is not closed
        wait_until(lambda: metric(metrics, "cellflight_streams_open") == 0, 15, "a vanished peer keeps its stream")
    finally:
        proxy.close()
        assert stop(server) == 0
