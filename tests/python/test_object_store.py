"""Datasets in an S3-compatible store (moto, authentication on): ingested and
generated straight to it, served from it with ranged reads through a bounded
block cache, versions that never mix, and errors that name the object."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from cli import log
from test_serve import serving
from test_stream import plan, read_partition

WU = "wu2020_200_v0_11.h5ad"
REQUEST = dict(dataset="wu", batch_size=16, block_size=4, fetch_factor=4, partitions=2, seed=3)


@pytest.fixture(scope="module")
def published(cellflight, s3, data_file, tmp_path_factory):
    """The real wu2020 file ingested twice: to local disk and to the store."""
    local = tmp_path_factory.mktemp("local")
    cellflight.ok("ingest", data_file(WU), local / "wu")
    cellflight.ok("ingest", data_file(WU), s3.url("module", "wu"), env=s3.env())
    return local, s3.url("module")


def epoch(address: str, **request) -> dict[int, tuple[list, list]]:
    """Every non-padding cell of one epoch: cell_id → (indices, values)."""
    client = flight.connect(address)
    cells: dict[int, tuple[list, list]] = {}
    for endpoint in plan(client, **{**REQUEST, **request}).endpoints:
        for _, batch in read_partition(client, endpoint):
            rows = batch.to_pylist()
            for row in rows:
                if row["is_padding"]:
                    continue
                assert row["cell_id"] not in cells, f"cell {row['cell_id']} came twice"
                cells[row["cell_id"]] = (row["indices"], row["values"])
    return cells


def cache_files(cache: Path) -> list[Path]:
    return [p for p in (cache / "blocks").rglob("*") if p.is_file()]


def test_publishing_lays_out_a_version_and_then_the_pointer(s3, published):
    keys = s3.keys("module/wu/")
    manifest = json.loads(s3.client().get_object(Bucket=s3.bucket, Key="module/wu/manifest.json")["Body"].read())
    version = manifest["version"]
    assert keys == sorted(
        ["module/wu/manifest.json"]
        + [f"module/wu/v/{version}/{f}" for f in ["cells.parquet", "genes.parquet", "manifest.json", "matrix.arrow"]]
    )


def test_a_dataset_served_from_the_store_streams_what_local_disk_does(cellflight, s3, published, tmp_path):
    local, remote = published
    with serving(cellflight, local) as (_, address):
        expected = epoch(address)
    with serving(cellflight, remote, "--cache-dir", tmp_path / "cache", env=s3.env()) as (_, address):
        cold = epoch(address)
        warm = epoch(address)
        answer = flight.connect(address).do_get(
            flight.Ticket(json.dumps({"sql": "SELECT count(*) AS n FROM wu.cells"}).encode())
        ).read_all()
    assert len(expected) == 200
    assert cold == expected
    assert warm == expected
    assert answer.column("n").to_pylist() == [200]


def test_the_cache_holds_its_bound_and_refetches_damaged_blocks(cellflight, s3, published, tmp_path):
    local, remote = published
    cache = tmp_path / "cache"
    bound = 256 << 10
    with serving(cellflight, local) as (_, address):
        expected = epoch(address)
    flags = ("--cache-dir", cache, "--cache-size", "256KiB")
    with serving(cellflight, remote, *flags, env=s3.env()) as (_, address):
        assert epoch(address) == expected
        files = cache_files(cache)
        assert files, "blocks were cached"
        assert sum(f.stat().st_size for f in files) <= bound
    for number, file in enumerate(cache_files(cache)):
        data = bytearray(file.read_bytes())
        if number % 2:
            data[len(data) // 3] ^= 0xFF
            file.write_bytes(bytes(data))
        else:
            file.write_bytes(bytes(data[: len(data) // 2]))
    with serving(cellflight, remote, *flags, env=s3.env()) as (server, address):
        assert epoch(address) == expected
    assert "damaged" in log(server)


def test_wrong_credentials_fail_at_startup_naming_the_url(cellflight, s3, published):
    _, remote = published
    error = cellflight.fails("serve", "--data", remote, env=s3.env(secret_key="not-the-secret"), mentions=[remote])
    assert "signature" in error.lower() or "forbidden" in error.lower() or "403" in error


def test_an_object_store_url_written_wrong_is_refused(cellflight, tmp_path):
    cellflight.fails("serve", "--data", "s3:bucket/prefix", mentions=["s3:bucket/prefix", "s3://"])
    cellflight.fails("generate", "s3://bucket-only", "--cells", 10, "--genes", 10, mentions=["NAME"])


def test_publishing_over_an_existing_dataset_needs_force(cellflight, s3, data_file, published):
    _, remote = published
    cellflight.fails("ingest", data_file(WU), f"{remote}/wu", env=s3.env(), mentions=[f"{remote}/wu/manifest.json", "--force"])


def test_a_missing_object_is_not_found_naming_it(cellflight, s3, tmp_path):
    remote = s3.url("missing")
    cellflight.ok("generate", f"{remote}/gone", "--cells", 300, "--genes", 40, env=s3.env())
    # A cache too small for any block: every read goes to the store.
    flags = ("--cache-dir", tmp_path / "cache", "--cache-size", "1KiB")
    with serving(cellflight, remote, *flags, env=s3.env()) as (_, address):
        client = flight.connect(address)
        info = plan(client, dataset="gone", batch_size=8)
        [matrix] = [k for k in s3.keys("missing/gone/v/") if k.endswith("matrix.arrow")]
        s3.client().delete_object(Bucket=s3.bucket, Key=matrix)
        # pyarrow raises Flight's NOT_FOUND as ArrowKeyError.
        with pytest.raises(pa.ArrowKeyError, match="not found") as caught:
            read_partition(client, info.endpoints[0])
    assert f"s3://{s3.bucket}/{matrix}" in str(caught.value)


def test_a_forced_reingest_under_a_running_stream_never_mixes_versions(cellflight, s3, tmp_path):
    remote = s3.url("replace")
    generate = lambda seed, *flags: cellflight.ok(
        "generate", f"{remote}/cells", "--cells", 400, "--genes", 60, "--seed", seed, *flags, env=s3.env()
    )
    generate(1)
    reference = tmp_path / "reference"
    cellflight.ok("generate", reference / "cells", "--cells", 400, "--genes", 60, "--seed", 1)
    request = dict(dataset="cells", batch_size=16, partitions=1, seed=9)
    with serving(cellflight, reference) as (_, address):
        expected = epoch(address, **request)
    with serving(cellflight, remote, "--cache-dir", tmp_path / "cache", env=s3.env()) as (_, address):
        client = flight.connect(address)
        [endpoint] = plan(client, **request).endpoints
        reader = client.do_get(endpoint.ticket)
        first = [reader.read_chunk() for _ in range(3)]
        generate(2, "--force")
        list(client.do_action(flight.Action("refresh", b"")))
        rest = []
        while True:
            try:
                rest.append(reader.read_chunk())
            except StopIteration:
                break
        # The ticket of the old version still resumes, on a server whose
        # current version is the new one.
        resumed = read_partition(client, endpoint, start_batch=3)
        new_version = json.loads(plan(client, **request).endpoints[0].ticket.ticket)["dataset_version"]
    old_version = json.loads(endpoint.ticket.ticket)["dataset_version"]
    assert new_version != old_version
    chunks = [c.data for c in first + rest]
    got = {}
    for batch in chunks:
        for row in batch.to_pylist():
            if not row["is_padding"]:
                got[row["cell_id"]] = (row["indices"], row["values"])
    assert got == expected, "the running stream read the old version only"
    assert [b.to_pylist() for _, b in resumed] == [b.to_pylist() for b in chunks[3:]]


def test_prune_removes_versions_replaced_long_enough_ago(cellflight, s3, tmp_path):
    remote = s3.url("prune")
    for seed in (1, 2, 3):
        cellflight.ok("generate", f"{remote}/cells", "--cells", 50, "--genes", 20, "--seed", seed, "--force", env=s3.env())
    versions = sorted({k.split("/")[3] for k in s3.keys("prune/cells/v/")})
    assert len(versions) == 3
    kept = cellflight.ok("prune", f"{remote}/cells", "--keep-for", "1h", env=s3.env()).stdout
    assert "removed" not in kept
    # S3 keeps times to the second: let the last replacement be a second old.
    time.sleep(1.5)
    out = cellflight.ok("prune", f"{remote}/cells", "--keep-for", "0s", env=s3.env()).stdout
    current = json.loads(s3.client().get_object(Bucket=s3.bucket, Key="prune/cells/manifest.json")["Body"].read())["version"]
    assert sorted({k.split("/")[3] for k in s3.keys("prune/cells/v/")}) == [current]
    assert out.count("removed") == 2
