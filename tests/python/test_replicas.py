"""Replicas as Flight endpoint locations (docs/protocol.md, "Replicas"):
three servers of the same data on 127.0.0.2, .3 and .4 list all three in
every endpoint, partition p's first at replica p mod 3; any of them serves
a ticket byte for byte alike; a trainer reading through the Python package
loses one mid-epoch (killed, or hung with SIGSTOP) and still gets every
cell exactly once; replicas can also be found by DNS."""

from __future__ import annotations

import json
import re
import signal
import socket
import time

import client_helpers  # noqa: F401  (the package of this checkout)
import cellflight as cf
import numpy as np
import pyarrow.flight as flight
import pytest

from cellflight.loader import Stream, read_streams
from replicas import HOSTS, free_port, start_replica, three_replicas

FAILOVER_TIMEOUT = 2.0  # seconds; the clients' failover_timeout in these tests
SLACK = 6.0  # seconds beyond it for the failover to show (a loaded CI machine)


@pytest.fixture(scope="module")
def data(cellflight, s3):
    """Where the replicas' data lives: one S3 prefix, shared by all three
    (as in a deployment; each replica has its own block cache). 4,000 dense
    cells of 4,000 genes, so a partition (21 MB) cannot sit in the
    connection's buffers when its replica goes."""
    cellflight.ok("generate", s3.url("replicas", "cells"), "--cells", 4000, "--genes", 4000, "--seed", 2, env=s3.env())
    return s3.url("replicas")


@pytest.fixture(scope="module")
def data_env(s3):
    """The environment the replicas read the store with."""
    return s3.env()


@pytest.fixture
def replicas(cellflight, data, data_env, tmp_path):
    with three_replicas(cellflight, data, env=data_env, caches=tmp_path) as started:
        yield started


def plan(address: str, partitions: int) -> flight.FlightInfo:
    request = {"batch_size": 50, "seed": 1, "format": "dense", "partitions": partitions}
    return flight.connect(address).get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))


def locations(endpoint: flight.FlightEndpoint) -> list[str]:
    return [location.uri.decode() for location in endpoint.locations]


def test_every_endpoint_lists_the_replicas_partition_p_first_at_replica_p_mod_3(replicas):
    uris = sorted(replica.uri for replica in replicas)
    for replica in replicas:
        info = plan(replica.uri, partitions=7)
        for p, endpoint in enumerate(info.endpoints):
            assert locations(endpoint) == uris[p % 3:] + uris[:p % 3], p


def test_the_same_ticket_gives_byte_identical_batches_from_every_replica(replicas):
    info = plan(replicas[0].uri, partitions=2)
    endpoint = info.endpoints[1]

    def batches(uri: str) -> list[tuple[bytes, bytes]]:
        reader = flight.connect(uri).do_get(endpoint.ticket)
        return [(chunk.data.serialize().to_pybytes(), chunk.app_metadata.to_pybytes()) for chunk in reader]

    read = [batches(uri) for uri in locations(endpoint)]
    assert len(read[0]) == json.loads(info.app_metadata)["batches_per_partition"]
    assert read[1] == read[0] and read[2] == read[0]


def read_epoch_losing_one(replicas, lose) -> tuple[list[int], float]:
    """Reads an epoch (three partitions, one a replica) through the package
    from replica 0, calling `lose(replica 1)` once every partition has
    yielded a few batches. Answers the cells read (non-padding), and the
    longest wait for a batch after the loss."""
    client = cf.connect(replicas[0].uri, failover_timeout=FAILOVER_TIMEOUT)
    loader = client.loader(batch_size=50, seed=1, format="dense", streams=3, prefetch=3)
    seen, per_partition, lost_at, longest = [], {}, None, 0.0
    last = time.monotonic()
    for batch in loader:
        now = time.monotonic()
        if lost_at is not None:
            longest = max(longest, now - last)
        last = now
        seen.extend(batch.cell_id[~batch.is_padding].tolist())
        per_partition[batch.partition] = batch.index + 1
        if lost_at is None and len(per_partition) == 3 and min(per_partition.values()) >= 3:
            lose(replicas[1].process)
            lost_at = last = time.monotonic()
    assert lost_at is not None, "the epoch ended before a replica was lost"
    return seen, longest


def assert_exactly_once(seen: list[int], n_cells: int) -> None:
    assert len(seen) == n_cells, "no cell twice, none missing"
    assert np.array_equal(np.sort(seen), np.arange(n_cells))


def resumed_elsewhere(replicas, partition: int) -> bool:
    """Whether a replica other than replica 1 served `partition` from a later batch."""
    def resumes(line: str) -> bool:
        return "stream starts" in line and re.search(rf"\bpartition={partition}\b", line) is not None and (
            re.search(r"\bstart_batch=[1-9]", line) is not None
        )

    return any(resumes(line) for replica in (replicas[0], replicas[2]) for line in replica.log().splitlines())


def test_a_replica_killed_mid_epoch_leaves_the_epoch_exactly_once(replicas):
    def kill(process):
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    seen, _ = read_epoch_losing_one(replicas, kill)
    assert_exactly_once(seen, 4000)
    assert resumed_elsewhere(replicas, partition=1), "partition 1 went on at another replica"


def test_a_hung_replica_is_given_up_within_the_failover_timeout(replicas):
    seen, longest = read_epoch_losing_one(replicas, lambda process: process.send_signal(signal.SIGSTOP))
    assert_exactly_once(seen, 4000)
    assert resumed_elsewhere(replicas, partition=1), "partition 1 went on at another replica"
    assert longest < FAILOVER_TIMEOUT + SLACK, f"the stopped replica held the epoch for {longest:.1f} s"


def test_a_request_the_replicas_refuse_is_raised_not_failed_over(replicas):
    client = cf.connect(replicas[0].uri, failover_timeout=FAILOVER_TIMEOUT)
    stream = client.loader(batch_size=50, streams=3).streams()[1]
    ticket = json.loads(stream.ticket.ticket)
    ticket["request"]["dataset"] = "nope"
    unknown = Stream(flight.Ticket(json.dumps(ticket).encode()), 1, stream.batches, stream.locations)
    with pytest.raises(cf.errors.NotFound) as raised:
        list(read_streams(client, [unknown], lambda data, metadata, seconds: data, prefetch=2))
    assert "locations" not in raised.value.message, "raised by the first replica, not failed over"


def test_when_every_replica_is_gone_the_error_names_each(replicas):
    client = cf.connect(replicas[0].uri, failover_timeout=FAILOVER_TIMEOUT)
    loader = client.loader(batch_size=50, streams=3)
    loader.plan()
    for replica in replicas:
        replica.process.kill()
        replica.process.wait(timeout=30)
    with pytest.raises(cf.errors.Unavailable) as raised:
        list(loader)
    for replica in replicas:
        assert replica.uri in raised.value.message, raised.value.message


# --- discovery by DNS --------------------------------------------------------------


def test_the_addresses_a_dns_name_stands_for_are_the_endpoints_locations(cellflight, data, data_env):
    port = free_port()
    replica = start_replica(cellflight, data, HOSTS[0], port, "--peers-dns", f"localhost:{port}", env=data_env)
    try:
        endpoint = plan(replica.uri, partitions=1).endpoints[0]
    finally:
        replica.process.kill()
    # What the system's resolver answers for localhost (/etc/hosts), as URIs.
    answered = {
        f"grpc://{address}:{port}" if family == socket.AF_INET else f"grpc://[{address}]:{port}"
        for family, _, _, _, (address, *_) in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)
    }
    assert locations(endpoint) == sorted(answered | {replica.uri})


def test_a_name_without_records_leaves_a_replica_listing_itself_and_saying_so(cellflight, data, data_env):
    port = free_port()
    flags = ("--peers-dns", f"no-such-replica.invalid:{port}")
    replica = start_replica(cellflight, data, HOSTS[0], port, *flags, env=data_env)
    try:
        assert locations(plan(replica.uri, partitions=1).endpoints[0]) == [replica.uri]
        assert plan(replica.uri, partitions=2).total_records == 4000, "the server goes on serving"
    finally:
        replica.process.kill()
    assert "--peers-dns" in replica.log() and "keeping the last good answer" in replica.log()


# --- flags ------------------------------------------------------------------------------


def test_peers_without_advertise_are_refused(cellflight, data):
    cellflight.fails("serve", "--data", data, "--peers", "grpc://127.0.0.3:1", mentions=["--advertise"])
    cellflight.fails("serve", "--data", data, "--peers-dns", "x:1", mentions=["--advertise"])


def test_a_bad_replica_uri_is_refused_naming_it(cellflight, data):
    cellflight.fails(
        "serve", "--data", data, "--advertise", "http://127.0.0.2:1", mentions=["--advertise", "http://127.0.0.2:1"]
    )
    cellflight.fails(
        "serve", "--data", data, "--advertise", "grpc://127.0.0.2:1", "--peers", "grpc://127.0.0.3",
        mentions=["--peers", "grpc://127.0.0.3"],
    )
