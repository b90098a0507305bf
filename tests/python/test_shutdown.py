"""Graceful shutdown: on SIGTERM the server stops accepting connections,
lets open streams finish within `--shutdown-grace`, and exits 0."""

from __future__ import annotations

import signal
import time

import pyarrow.flight as flight
import pytest

from cli import wait_until
from test_serve import start
from test_stream_limits import REQUEST, open_stream


def refuses_connections(address: str) -> bool:
    try:
        list(flight.connect(address).list_flights())
    except flight.FlightUnavailableError:
        return True
    return False


def test_sigterm_stops_new_connections_and_lets_an_open_stream_finish(cellflight, wide_dataset):
    server, address = start(cellflight, wide_dataset)
    reader = open_stream(address, 0)
    server.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses_connections(address), 10, "a new client is still served after SIGTERM")
    rest = reader.read_all()
    # Partition 0 of 4: 1,000 cells, the first 16 already read.
    assert rest.num_rows == 1000 - REQUEST["batch_size"]
    assert server.wait(timeout=30) == 0


def test_streams_open_past_the_grace_period_are_closed_and_the_server_exits_0(cellflight, wide_dataset):
    server, address = start(cellflight, wide_dataset, "--shutdown-grace", "1s")
    held = open_stream(address, 0)  # never read further
    signalled = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0
    assert time.monotonic() - signalled < 15, "the grace period was not enforced"
    held.cancel()


def test_a_bad_grace_period_is_refused_naming_the_flag(cellflight, wide_dataset):
    cellflight.fails("serve", "--data", wide_dataset, "--listen", "127.0.0.1:0", "--shutdown-grace", "soon",
                     mentions=["--shutdown-grace", "soon"])  # fmt: skip
