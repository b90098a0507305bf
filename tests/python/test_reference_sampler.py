"""The server's streams are exactly those of docs/protocol.md's rules, as
implemented independently in reference_sampler.py: for every cohort kind,
sampling mode, partition count and resume point below."""

from __future__ import annotations

import json

import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

import reference_sampler
from test_serve import serving

N_CELLS = 700


@pytest.fixture(scope="module")
def served(cellflight, tmp_path_factory):
    data = tmp_path_factory.mktemp("reference")
    cellflight.ok("generate", data / "cells", "--cells", N_CELLS, "--genes", 50, "--seed", 21)
    with serving(cellflight, data / "cells") as (server, address):
        yield flight.connect(address), pq.read_table(data / "cells" / "cells.parquet").to_pandas()


def server_stream(client, request: dict, partition: int, start_batch: int = 0) -> list[list[tuple[int, bool]]]:
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))
    ticket = {**json.loads(info.endpoints[partition].ticket.ticket), "start_batch": start_batch}
    return [
        list(zip(c.data.column("cell_id").to_pylist(), c.data.column("is_padding").to_pylist()))
        for c in client.do_get(flight.Ticket(json.dumps(ticket).encode()))
    ]


def as_cells(batches, cohort: list[int]) -> list[list[tuple[int, bool]]]:
    return [[(cohort[p], padding) for p, padding in batch] for batch in batches]


SHAPES = [
    dict(batch_size=8, block_size=4, fetch_factor=2, seed=42, epoch=3, partitions=2),
    dict(batch_size=5, block_size=3, fetch_factor=7, seed=1, partitions=3, drop_last=True),
    dict(batch_size=64, block_size=16, fetch_factor=64, seed=9, epoch=1, partitions=4),
    dict(batch_size=10, fetch_factor=3, partitions=3, sampling="sequential"),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_whole_dataset_streams_match_the_reference(served, shape):
    client, _ = served
    for partition in range(shape["partitions"]):
        expected = reference_sampler.partition_stream(N_CELLS, partition=partition, **shape)
        assert server_stream(client, shape, partition) == expected


@pytest.mark.parametrize("shape", SHAPES[:2], ids=["small", "drop_last"])
def test_cohort_streams_match_the_reference_through_the_sorted_cohort(served, shape):
    client, obs = served
    query = "stat_n_genes % 3 <> 0"
    cohort = sorted(obs.loc[obs["stat_n_genes"] % 3 != 0, "cell_id"])
    for partition in range(shape["partitions"]):
        expected = reference_sampler.partition_stream(len(cohort), partition=partition, **shape)
        got = server_stream(client, {**shape, "query": query}, partition)
        assert got == as_cells(expected, cohort)
        assert server_stream(client, {**shape, "query": query}, partition, start_batch=3) == got[3:]


def test_weighted_streams_match_the_reference(served):
    client, obs = served
    shape = dict(batch_size=6, fetch_factor=4, seed=5, epoch=2, partitions=3, sampling="weighted", num_samples=250)
    request = {**shape, "query": "cell_id >= 100", "weights": "CAST(cell_id % 7 AS DOUBLE)"}
    cohort = sorted(obs.loc[obs["cell_id"] >= 100, "cell_id"])
    weights = [float(c % 7) for c in cohort]
    for partition in range(3):
        expected = reference_sampler.partition_stream(len(cohort), partition=partition, weights=weights, **shape)
        assert server_stream(client, request, partition) == as_cells(expected, cohort)
