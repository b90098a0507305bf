"""Fixtures of the end-to-end suite: the real `cellflight` binary and the
real .h5ad files in the directory CELLFLIGHT_TEST_DATA names (fetched by
scripts/test.sh; see tests/data/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli import REPO, Cellflight, binary_path

HOW_TO_FETCH = (
    "scripts/test.sh fetches them; to run the tests alone: export "
    'CELLFLIGHT_TEST_DATA="$(python3 tests/data/fetch_real_files.py ~/.cache/cellflight/test-data)"'
)


def real_files_dir() -> Path | None:
    """Where the real .h5ad files are, if the environment says."""
    value = os.environ.get("CELLFLIGHT_TEST_DATA")
    return Path(value) if value else None


def pytest_collection_modifyitems(config, items):
    """Tests that run the binary are marked `binary`; if it or the real
    files are missing the whole run stops with one error (never skips)."""
    needing = [item for item in items if "cellflight" in getattr(item, "fixturenames", ())]
    for item in needing:
        item.add_marker(pytest.mark.binary)
    exe = binary_path()
    if needing and not (exe.is_file() and os.access(exe, os.X_OK)):
        pytest.exit(
            f"the cellflight binary is missing: {exe} ({len(needing)} tests need it). Build it with "
            "`cargo build -p cellflight` (honours CARGO_TARGET_DIR) or point CELLFLIGHT_BIN at it.",
            returncode=1,
        )
    reading = sum("data_file" in getattr(item, "fixturenames", ()) for item in items)
    if reading and real_files_dir() is None:
        pytest.exit(
            f"CELLFLIGHT_TEST_DATA is not set ({reading} tests read the real .h5ad files): {HOW_TO_FETCH}",
            returncode=1,
        )


@pytest.fixture(scope="session")
def cellflight() -> Cellflight:
    exe = binary_path()
    if not exe.is_file():
        pytest.fail(f"the cellflight binary is missing: {exe}")
    return Cellflight(exe)


@pytest.fixture(scope="session")
def data_file():
    """Path of a real .h5ad file; a missing one fails the test."""

    def path(name: str) -> Path:
        p = real_files_dir() / name
        if not p.is_file():
            pytest.fail(f"{p} is missing: {HOW_TO_FETCH}")
        return p

    return path


@pytest.fixture(scope="session")
def wide_dataset(cellflight, tmp_path_factory):
    """4,000 cells × 4,000 genes: dense, an epoch is 64 MB, so a stream whose
    reader stops reading stays open (limits, shutdown)."""
    root = tmp_path_factory.mktemp("wide")
    cellflight.ok("generate", root / "cells", "--cells", 4000, "--genes", 4000, "--seed", 2)
    return root / "cells"


@pytest.fixture(scope="session")
def s3():
    """An S3-compatible server (moto, authentication on) with an empty bucket,
    for the whole session; see s3_server.py."""
    from s3_server import start_s3_server

    server = start_s3_server()
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)
