"""The training loop README.md and docs/python.md show runs as written
against a served dataset named `demo`, and resumes from its checkpoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_serve import start, stop

ROOT = Path(__file__).resolve().parents[2]
DEMO_ADDRESS = "grpc://127.0.0.1:50051"


def training_loop(doc: Path) -> str:
    """The first python block after the doc's training-loop heading."""
    text = doc.read_text()
    heading = re.search(r"^##+ (A training loop|Train in PyTorch)$", text, re.MULTILINE)
    assert heading, f"{doc.name} has a training-loop section"
    block = re.search(r"```python\n(.*?)```", text[heading.end():], re.DOTALL)
    assert block, f"{doc.name}: its training-loop section has a python block"
    return block.group(1)


def test_the_readme_and_the_python_guide_show_the_same_loop():
    loop = training_loop(ROOT / "docs" / "python.md")
    assert training_loop(ROOT / "README.md") == loop
    assert len(loop.strip().splitlines()) <= 25, "a short loop"


@pytest.fixture(scope="module")
def demo(cellflight, tmp_path_factory):
    """A small dataset named demo, as `serve` with no --data would serve."""
    data = tmp_path_factory.mktemp("docs")
    cellflight.ok("generate", data / "demo", "--cells", 4000, "--genes", 500, "--seed", 3)
    server, address = start(cellflight, data)
    try:
        yield address
    finally:
        stop(server)


def run_loop(address: str, workdir: Path) -> str:
    code = training_loop(ROOT / "docs" / "python.md").replace(DEMO_ADDRESS, address)
    assert address in code, "the loop connects to the demo server's address"
    # This checkout's package, whichever clone the venv's editable install points at.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python" / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_training_loop_runs_as_written_and_resumes_from_its_checkpoint(demo, tmp_path):
    first = run_loop(demo, tmp_path)
    assert "epoch 0 step 0/" in first and "epoch 1 step 0/" in first
    assert (tmp_path / "checkpoint.pt").exists()
    # The checkpoint was taken during epoch 1: a second run finishes that
    # epoch and does not start again at epoch 0.
    second = run_loop(demo, tmp_path)
    assert "epoch 0" not in second
