"""An ingest publishes its dataset in one step: killed midway it leaves no
dataset (only hidden leftovers) and keeps the one it was replacing; readers
racing a replacement see one whole version or the other, never a mix."""

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse

import h5ad_files as hf
from cellflight_dataset import load_dataset, read_manifest
from cli import describe
from expect import assert_holds, read_source


@pytest.fixture(scope="module")
def big_h5ad(tmp_path_factory):
    """~30 million stored counts (~250 MB uncompressed): an ingest that takes
    seconds, long enough to be killed midway."""
    n_cells, n_genes, per_cell = 120_000, 20_000, 250
    step = n_genes // per_cell
    indices = (np.arange(per_cell) * step)[None, :] + (np.arange(n_cells) % step)[:, None]
    nnz = n_cells * per_cell
    values = (np.arange(nnz) % 97 + 1).astype(np.float32)
    indptr = np.arange(0, nnz + 1, per_cell)
    X = scipy.sparse.csr_matrix((values, indices.ravel().astype(np.int32), indptr), shape=(n_cells, n_genes))
    obs = pd.DataFrame(index=pd.Index([f"cell{i}" for i in range(n_cells)]))
    var = pd.DataFrame(index=pd.Index([f"gene{i}" for i in range(n_genes)]))
    return hf.write(anndata.AnnData(X=X, obs=obs, var=var), tmp_path_factory.mktemp("big") / "big.h5ad")


def has_begun_writing(parent) -> bool:
    """A hidden staging entry in `parent` holds a file with bytes in it."""
    staged = [p for p in parent.iterdir() if p.name.startswith(".")]
    return any(f.is_file() and f.stat().st_size > 0 for entry in staged for f in entry.rglob("*"))


def kill_midway(cellflight, args, parent):
    """Starts `cellflight *args` and SIGKILLs it once it has begun writing
    (bytes in a hidden staging entry of `parent`); skips the test if it
    finished first."""
    process = cellflight.popen(*args)
    started, deadline = time.monotonic(), time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if has_begun_writing(parent):
                break
        except FileNotFoundError:
            pass  # an entry went away while it was listed: look again
        time.sleep(0.005)
    if process.poll() is not None:
        _, stderr = process.communicate()
        pytest.skip(
            f"the ingest finished (exit {process.returncode}, {time.monotonic() - started:.1f} s) before it could be "
            f"killed midway: big_h5ad needs more cells\n{stderr}"
        )
    process.send_signal(signal.SIGKILL)
    process.communicate()


def test_a_killed_ingest_leaves_no_dataset(cellflight, big_h5ad, tmp_path):
    output = tmp_path / "big"
    kill_midway(cellflight, ["ingest", big_h5ad, output], tmp_path)
    assert not output.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert all(name.startswith(".") for name in leftovers), leftovers
    cellflight.fails("inspect", output, mentions=["big"])


def test_a_killed_forced_ingest_keeps_the_old_dataset(cellflight, big_h5ad, tmp_path):
    small = hf.small_h5ad(tmp_path / "in" / "small.h5ad")
    output = tmp_path / "datasets" / "big"
    old = cellflight.ingest(small, output)
    kill_midway(cellflight, ["ingest", big_h5ad, output, "--force"], output.parent)
    assert read_manifest(output)["version"] == old.version
    cellflight.ok("inspect", output, "--verify")
    assert_holds(load_dataset(output), read_source(small))


def test_readers_racing_replacements_see_one_whole_version(cellflight, tmp_path):
    """`ingest --force` alternates two sources of different shapes while
    `inspect --verify` runs in a loop: every verify passes, and the versions
    seen change."""
    sources = [
        hf.small_h5ad(tmp_path / "in" / "a.h5ad", n_cells=3000, n_genes=300, seed=1),
        hf.small_h5ad(tmp_path / "in" / "b.h5ad", n_cells=1700, n_genes=450, seed=2),
    ]
    output = tmp_path / "out" / "flipping"
    versions = [cellflight.ingest(sources[0], output).version]

    def replace_repeatedly():
        for i in range(1, 13):
            cellflight.ok("ingest", sources[i % 2], output, "--force")
            versions.append(read_manifest(output)["version"])

    with ThreadPoolExecutor(1) as pool:
        writer = pool.submit(replace_repeatedly)
        results = []
        while not writer.done() or not results:
            results.append(cellflight.run("inspect", output, "--verify", timeout=120))
        writer.result()
    failures = [describe(r) for r in results if r.returncode != 0]
    assert not failures, f"{len(failures)} of {len(results)} verifies failed; first:\n{failures[0]}"
    seen = [[v for v in versions if v in r.stdout] for r in results]
    assert all(len(s) == 1 for s in seen), "each inspect names exactly one of the versions written"
    assert len({s[0] for s in seen}) >= 2, f"{len(results)} inspects all saw one version: replacements too fast?"
    assert [p.name for p in output.parent.iterdir()] == ["flipping"], "replaced versions left behind"
