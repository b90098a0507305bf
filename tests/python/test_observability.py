"""What an operator sees: Prometheus counters on `--metrics` that add up to
what clients received, failed calls by gRPC code, and a log line per
stream naming its client, dataset, partition and what it sent."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from cli import log
from test_serve import serving, start, stop
from test_stream import plan, read_partition
from test_stream_limits import metric, metrics_url


@pytest.fixture(scope="module")
def observed(cellflight, tmp_path_factory):
    """A server with metrics; yields (flight address, metrics URL, server)."""
    data = tmp_path_factory.mktemp("observed")
    cellflight.ok("generate", data / "cells", "--cells", 301, "--genes", 200, "--seed", 4)
    with serving(cellflight, data / "cells", "--metrics", "127.0.0.1:0", "--log", "info") as (server, address):
        yield address, metrics_url(server), server


def test_counters_add_up_to_what_the_clients_received(observed):
    address, url, _ = observed
    client = flight.connect(address)
    info = plan(client, batch_size=32, partitions=2, seed=1)
    received = [read_partition(client, endpoint) for endpoint in info.endpoints]
    minibatches = sum(len(p) for p in received)
    cells = sum(batch.num_rows for p in received for _, batch in p)
    assert cells == info.total_records == 302  # 301 cells, one padding
    assert metric(url, "cellflight_streams_started_total") == 2
    assert metric(url, "cellflight_minibatches_sent_total") == minibatches
    assert metric(url, "cellflight_cells_sent_total") == cells
    assert metric(url, "cellflight_bytes_sent_total") > cells * 4
    assert metric(url, "cellflight_streams_open") == 0


def test_failed_calls_are_counted_by_code(observed):
    address, url, _ = observed
    client = flight.connect(address)
    before = {code: metric(url, f'cellflight_errors_total{{code="{code}"}}') for code in ("INVALID_ARGUMENT", "NOT_FOUND")}
    with pytest.raises(pa.ArrowInvalid):
        plan(client, batch_size=0)
    with pytest.raises(pa.ArrowKeyError):
        plan(client, dataset="nope")
    with pytest.raises(pa.ArrowInvalid):
        client.do_get(flight.Ticket(b"{not json")).read_all()
    assert metric(url, 'cellflight_errors_total{code="INVALID_ARGUMENT"}') == before["INVALID_ARGUMENT"] + 2
    assert metric(url, 'cellflight_errors_total{code="NOT_FOUND"}') == before["NOT_FOUND"] + 1


def test_the_metrics_port_serves_only_metrics(observed):
    _, url, _ = observed
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
    assert raised.value.code == 404
    response = urllib.request.urlopen(url, timeout=10)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_each_stream_logs_its_client_dataset_partition_and_what_it_sent(cellflight, tmp_path):
    cellflight.ok("generate", tmp_path / "logged", "--cells", 100, "--genes", 50, "--seed", 4)
    server, address = start(cellflight, tmp_path / "logged", "--log", "info")
    try:
        client = flight.connect(address)
        info = plan(client, batch_size=10, partitions=2)
        read_partition(client, info.endpoints[1])
    finally:
        assert stop(server) == 0
    text = log(server)
    complete = [line for line in text.splitlines() if "stream complete" in line]
    assert len(complete) == 1, text
    for field in ("peer=127.0.0.1", "dataset=\"logged\"", "partition=1", "minibatches=5", "cells=50", "seconds="):
        assert field in complete[0], complete[0]
    starts = [line for line in text.splitlines() if "stream starts" in line]
    assert "cohort=100" in starts[0] and "batches=5" in starts[0], starts
    assert json.loads(info.app_metadata)["cohort_size"] == 100
