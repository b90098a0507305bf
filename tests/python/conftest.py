"""Fixtures of the end-to-end suite: the real `cellflight` binary and the
real .h5ad files in shared/data beside the repository."""

from __future__ import annotations

import os

import pytest

from cli import REPO, Cellflight, binary_path

DATA_DIR = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Tests that run the binary are marked `binary`; if it is missing the
    whole run stops with an error (never skips)."""
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


@pytest.fixture(scope="session")
def cellflight() -> Cellflight:
    exe = binary_path()
    if not exe.is_file():
        pytest.fail(f"the cellflight binary is missing: {exe}")
    return Cellflight(exe)


@pytest.fixture(scope="session")
def data_file():
    """Path of a real file in shared/data; a missing one fails the test."""

    def path(name: str) -> Path:
        p = DATA_DIR / name
        if not p.is_file():
            pytest.fail(f"missing test data {p} (shared/ must sit beside the repository)")
        return p

    return path


@pytest.fixture(scope="session")
def wide_dataset(cellflight, tmp_path_factory):
    """4,000 cells × 4,000 genes: dense, an epoch is 64 MB, so a stream whose
    reader stops reading stays open (limits, shutdown)."""
    root = tmp_path_factory.mktemp("wide")
    cellflight.ok("generate", root / "cells", "--cells", 4000, "--genes", 4000, "--seed", 2)
    return root / "cells"
