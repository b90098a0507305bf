"""Faults: a server killed with SIGKILL mid-epoch and started again (or
another server of the same dataset) serves the rest of the epoch from the
Python client's resume point, exactly; a stream cut short without an error
is noticed by the client."""

from __future__ import annotations

import json
import os
import signal

import client_helpers  # noqa: F401  (the package of this checkout)
import cellflight as cf
import numpy as np
import pyarrow.flight as flight
import pytest

from test_serve import start, stop

N_CELLS = 3000


@pytest.fixture(scope="module")
def dataset(cellflight, tmp_path_factory):
    data = tmp_path_factory.mktemp("faults")
    cellflight.ok("generate", data / "cells", "--cells", N_CELLS, "--genes", 100, "--seed", 9)
    return data / "cells"


def loader(address: str, start_batches=None):
    return cf.connect(address).loader(
        "cells", batch_size=50, seed=3, epoch=1, streams=2, start_batches=start_batches
    )


def test_a_killed_server_restarted_serves_the_rest_of_the_epoch_from_the_resume_point(cellflight, dataset):
    server, address = start(cellflight, dataset)
    seen, next_batch = [], {}
    for batch in loader(address):
        seen.extend(batch.cell_id[~batch.is_padding].tolist())
        next_batch[batch.partition] = batch.index + 1
        if len(next_batch) == 2 and sum(next_batch.values()) >= 12:
            break
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)

    restarted, address = start(cellflight, dataset)
    try:
        for batch in loader(address, start_batches=next_batch):
            seen.extend(batch.cell_id[~batch.is_padding].tolist())
    finally:
        assert stop(restarted) == 0
    assert len(seen) == N_CELLS, "no cell twice, none missing"
    assert np.array_equal(np.sort(seen), np.arange(N_CELLS))


class TruncatingProxy(flight.FlightServerBase):
    """Stands between the client and a real server and ends every stream
    quietly (no error) after `keep` batches: a broken proxy or replica the
    client must not take for a finished epoch."""

    def __init__(self, upstream: str, keep: int):
        super().__init__("grpc://127.0.0.1:0")
        self.upstream, self.keep = flight.connect(upstream), keep

    def get_flight_info(self, context, descriptor):
        return self.upstream.get_flight_info(descriptor)

    def do_get(self, context, ticket):
        reader = self.upstream.do_get(ticket)
        schema = reader.schema

        def first_batches():
            for _ in range(self.keep):
                chunk = reader.read_chunk()
                yield chunk.data, chunk.app_metadata
            reader.cancel()

        return flight.GeneratorStream(schema, first_batches())


def test_a_stream_that_ends_early_without_an_error_raises_naming_the_resume_point(cellflight, dataset):
    server, address = start(cellflight, dataset)
    try:
        with TruncatingProxy(address, keep=3) as proxy:
            batches = []
            with pytest.raises(cf.IncompleteStream) as raised:
                for batch in cf.connect(f"grpc://127.0.0.1:{proxy.port}").loader("cells", batch_size=50):
                    batches.append(batch.index)
            assert batches == [0, 1, 2]
            assert raised.value.code == "DATA_LOSS"
            assert "partition 0 ended before batch 3 of its 60; resume from start_batch 3" in raised.value.message
    finally:
        assert stop(server) == 0


def test_a_matrix_truncated_under_the_server_is_an_error_status_not_a_crash(cellflight, tmp_path):
    data = tmp_path / "data"
    cellflight.ok("generate", data / "doomed", "--cells", 3000, "--genes", 500, "--seed", 8)
    cellflight.ok("generate", data / "intact", "--cells", 300, "--genes", 50, "--seed", 9)
    server, address = start(cellflight, data)
    try:
        client = flight.connect(address)

        def read_all(dataset: str):
            info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"dataset": dataset})))
            return client.do_get(info.endpoints[0].ticket).read_all()

        assert read_all("doomed").num_rows == 3000  # mapped and read once
        matrix = data / "doomed" / json.loads((data / "doomed" / "manifest.json").read_text())["matrix"]["file"]
        os.truncate(matrix, matrix.stat().st_size // 4)  # another process, in place
        with pytest.raises(flight.FlightInternalError, match="truncated while it was being read"):
            read_all("doomed")
        assert server.poll() is None, "the server survived the fault"
        assert read_all("intact").num_rows == 300
    finally:
        assert stop(server) == 0
