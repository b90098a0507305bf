"""`cellflight serve`: every dataset under --data is listed over Arrow
Flight; hidden (half-written) directories are not; bad flags fail clearly."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from cli import log


@pytest.fixture
def data_dir(cellflight, tmp_path):
    data = tmp_path / "data"
    for name, cells in [("alpha", 300), ("beta", 120)]:
        cellflight.ok("generate", data / name, "--cells", cells, "--genes", 50, "--seed", 1)
    (data / ".gamma.partial-x").mkdir()  # an ingest in progress
    return data


def start(cellflight, data, *flags, env=None) -> tuple[subprocess.Popen, str]:
    """Starts `serve` on an ephemeral port (in `env`, default this process's
    environment); returns the process and its address."""
    server = cellflight.popen("serve", "--data", data, "--listen", "127.0.0.1:0", *flags, env=env)
    first = server.stdout.readline()
    assert first.startswith("cellflight listening on grpc"), first + log(server)
    return server, first.split()[-1]


def stop(server: subprocess.Popen) -> int:
    server.send_signal(signal.SIGINT)
    return server.wait(timeout=30)


@contextlib.contextmanager
def serving(cellflight, data, *flags, env=None):
    """`serve` for the with-block: (process, address) on entry; on the way
    out, stopped, and checked to have exited cleanly."""
    server, address = start(cellflight, data, *flags, env=env)
    try:
        yield server, address
    finally:
        assert stop(server) == 0


def test_lists_every_dataset_with_its_size_and_version(cellflight, data_dir):
    server, address = start(cellflight, data_dir)
    try:
        infos = list(flight.connect(address).list_flights())
    finally:
        assert stop(server) == 0
    by_name = {json.loads(i.descriptor.command)["dataset"]: i for i in infos}
    assert sorted(by_name) == ["alpha", "beta"]
    for name, cells in [("alpha", 300), ("beta", 120)]:
        info = by_name[name]
        assert info.total_records == cells
        manifest = json.loads((data_dir / name / "manifest.json").read_text())
        assert json.loads(info.app_metadata)["version"] == manifest["version"]
        assert info.schema.names[:2] == ["cell_id", "obs_name"]


def test_a_single_dataset_directory_can_be_served(cellflight, data_dir):
    server, address = start(cellflight, data_dir / "beta")
    try:
        infos = list(flight.connect(address).list_flights())
    finally:
        stop(server)
    assert [json.loads(i.descriptor.command)["dataset"] for i in infos] == ["beta"]


def test_unknown_actions_are_refused_by_name_and_the_server_stays_up(cellflight, data_dir):
    server, address = start(cellflight, data_dir)
    try:
        client = flight.connect(address)
        assert [a.type for a in client.list_actions()] == ["refresh", "CreatePreparedStatement", "ClosePreparedStatement"]
        with pytest.raises(pa.ArrowInvalid, match="frobnicate"):
            list(client.do_action(flight.Action("frobnicate", b"")))
        assert len(list(client.list_flights())) == 2
    finally:
        assert stop(server) == 0


def test_a_directory_without_datasets_is_refused(cellflight, tmp_path):
    cellflight.fails("serve", "--data", tmp_path, "--listen", "127.0.0.1:0", mentions=["no datasets found", str(tmp_path)])


def test_a_bad_listen_address_is_refused_naming_the_flag(cellflight, data_dir):
    result = cellflight.run("serve", "--data", data_dir, "--listen", "not-an-address")
    assert result.returncode != 0
    assert "--listen" in result.stderr
