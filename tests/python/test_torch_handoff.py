"""How batches reach the training loop (cellflight.torch, cellflight._shared),
against the real server: DataLoader workers hand batches over through a
ring of reused shared-memory files, and a reused slot never changes a batch
the loop still holds; workers started by fork or spawn deliver every cell
once; too little shared memory is a SharedMemoryError saying what to do;
a killed worker's files do not outlive the next start; `stats()` says where
the epoch's time went; `pin_memory` and the options are checked."""

from __future__ import annotations

import os
import resource
import signal
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

from client_helpers import N_TAHOE, make_data
from test_serve import serving

import cellflight  # noqa: E402  (client_helpers puts this checkout's package first)
from cellflight import _shared  # noqa: E402
from cellflight.torch import CellDataset, to_torch  # noqa: E402

COHORT = "cell_id % 4 != 1"
COHORT_CELLS = [c for c in range(N_TAHOE) if c % 4 != 1]
TIMEOUT = 120  # seconds a DataLoader may wait for one batch before the test fails instead of hanging


@pytest.fixture(scope="module")
def address(cellflight, tmp_path_factory):
    data, _ = make_data(cellflight, tmp_path_factory.mktemp("handoff"))
    with serving(cellflight, data, "--default-dataset", "tahoe") as (server, address):
        yield address


@pytest.fixture
def shm_dir(tmp_path, monkeypatch):
    """A directory of this test's own for the workers' ring files."""
    directory = tmp_path / "shm"
    directory.mkdir()
    monkeypatch.setenv(_shared.SHM_DIR_VARIABLE, str(directory))
    return directory


def real_cells(batches) -> list[int]:
    return [c for b in batches for c in b["cell_id"][~b["is_padding"]].tolist()]


def ring_files(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(_shared.PREFIX))


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_held_by_the_loop_keep_their_values_while_memory_is_reused(address, shm_dir, workers, monkeypatch):
    """Without workers the loader reuses private buffers, with workers each
    worker its ring of shared-memory files; neither rewrites a batch the
    loop still holds."""
    monkeypatch.setattr(cellflight.torch, "POOLED_BYTES", 0)  # these small batches too
    request = dict(query=COHORT, batch_size=8, seed=4, obs_columns=["plate"])
    fresh = [to_torch(b) for b in cellflight.connect(address).loader("tahoe", streams=1, **request)]  # new memory each
    ds = CellDataset(address, "tahoe", num_workers=workers, streams=1, **request)
    kept, files = [], set()
    for i, batch in enumerate(DataLoader(ds, batch_size=None, num_workers=workers)):
        files.add(batch["X"].values().untyped_storage().filename)
        if i % 3 == 0:
            kept.append((i, batch))  # held to the end while the batches between are let go
    assert len(kept) > 3 * _shared.RING_SLOTS, "more batches held than a ring has slots"
    for i, batch in kept:
        want = fresh[i]
        assert torch.equal(batch["cell_id"], want["cell_id"])
        assert torch.equal(batch["X"].to_dense(), want["X"].to_dense())
        assert torch.equal(batch["obs"]["plate"], want["obs"]["plate"])
    if workers:
        assert len(files) <= len(kept) + _shared.RING_SLOTS, "beyond a file per batch held, slots are reused"
        assert all(batch["X"].values().is_shared() for _, batch in kept)
    del kept, batch
    assert ring_files(shm_dir) == [], "a worker removes its files when it ends"


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_two_epochs_of_non_persistent_workers_deliver_every_cell_once(address, shm_dir, context):
    ds = CellDataset(address, "tahoe", query=COHORT, batch_size=32, num_workers=2)
    epochs = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=context, timeout=TIMEOUT)
        epochs.append(real_cells(ds.track(loader)))
    assert all(sorted(cells) == COHORT_CELLS for cells in epochs)
    assert epochs[0] != epochs[1], "the second epoch is reshuffled"
    assert ring_files(shm_dir) == []


def limit_file_size(_worker_id: int) -> None:
    """A worker that may not make a file over 4 KiB (so posix_fallocate
    fails with EFBIG), as a full /dev/shm would refuse it."""
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))


def test_too_little_shared_memory_is_an_error_that_says_what_to_do(address, shm_dir):
    ds = CellDataset(address, "tahoe", batch_size=32, num_workers=1)
    loader = DataLoader(ds, batch_size=None, num_workers=1, worker_init_fn=limit_file_size, timeout=TIMEOUT)
    with pytest.raises(cellflight.SharedMemoryError) as raised:
        next(iter(loader))
    message = str(raised.value)
    assert str(shm_dir) in message and "bytes" in message
    for fix in ("CELLFLIGHT_SHM_DIR", "--shm-size", "num_workers=0"):
        assert fix in message
    assert isinstance(raised.value, cellflight.CellflightError)
    assert ring_files(shm_dir) == [], "a file that could not be reserved is not left behind"


def test_a_killed_workers_files_are_gone_after_the_next_start(address, shm_dir):
    ds = CellDataset(address, "tahoe", batch_size=16, num_workers=2)
    batches = iter(DataLoader(ds, batch_size=None, num_workers=2, timeout=TIMEOUT))
    next(batches), next(batches)
    victim = int(ring_files(shm_dir)[0][len(_shared.PREFIX):].split("-")[0])
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        for _ in batches:
            pass
    del batches
    assert sorted(real_cells(DataLoader(ds, batch_size=None, num_workers=2, timeout=TIMEOUT))) == list(range(N_TAHOE))
    assert ring_files(shm_dir) == []


@pytest.mark.parametrize("workers", [0, 2])
def test_stats_say_where_the_epochs_time_went(address, workers):
    ds = CellDataset(address, "tahoe", query=COHORT, batch_size=32, num_workers=workers)
    cells = real_cells(ds.track(DataLoader(ds, batch_size=None, num_workers=workers)))
    stats = ds.stats()
    assert stats.epoch == 0 and stats.cells == len(cells) == len(COHORT_CELLS) and stats.batches == len(ds)
    assert stats.seconds > 0 and 0 <= stats.wait_seconds <= stats.seconds
    assert stats.convert_seconds > 0 and stats.server_cells_per_s > 0
    assert stats.bottleneck in ("data", "model") and stats.hint
    assert str(stats).startswith(f"epoch 0: {len(cells):,} cells in {len(ds)} batches")


def test_streams_default_to_two_without_workers_and_an_old_checkpoint_is_told_how_to_resume(address):
    assert CellDataset(address, "tahoe", num_workers=0).streams == 2
    assert CellDataset(address, "tahoe", num_workers=2).streams == 1
    old = CellDataset(address, "tahoe", num_workers=0, streams=1).state_dict()
    with pytest.raises(ValueError, match=r"streams=1"):
        CellDataset(address, "tahoe", num_workers=0).load_state_dict(old)
    CellDataset(address, "tahoe", num_workers=0, streams=1).load_state_dict(old)


@pytest.mark.skipif(torch.cuda.is_available(), reason="without CUDA only")
def test_pin_memory_without_cuda_warns_once_and_does_nothing(address):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CellDataset(address, "tahoe", batch_size=32, num_workers=0, pin_memory=True)
        batch = next(iter(DataLoader(ds, batch_size=None)))
    pinning = [w for w in caught if "pin_memory" in str(w.message)]
    assert len(pinning) == 1 and pinning[0].category is UserWarning
    assert batch["X"].layout == torch.sparse_csr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("workers", [0, 2])
def test_pin_memory_puts_the_tensors_in_page_locked_memory(address, workers):
    ds = CellDataset(address, "tahoe", batch_size=32, num_workers=workers, pin_memory=True)
    batch = next(iter(DataLoader(ds, batch_size=None, num_workers=workers)))
    assert batch["X"].values().is_pinned() and batch["cell_id"].is_pinned()


@pytest.mark.parametrize(
    "options, error, words",
    [
        (dict(num_workers="2"), TypeError, "num_workers must be an int"),
        (dict(num_workers=-1), ValueError, "num_workers must be at least 0"),
        (dict(streams=0), ValueError, "streams must be at least 1"),
        (dict(streams=1.5), TypeError, "streams must be an int"),
        (dict(prefetch=0), ValueError, "prefetch must be at least 1"),
        (dict(dtype="float32"), TypeError, "dtype must be a torch.dtype"),
        (dict(pin_memory="yes"), TypeError, "pin_memory must be True or False"),
    ],
)
def test_options_are_checked_when_the_dataset_is_made(address, options, error, words):
    with pytest.raises(error, match=words):
        CellDataset(address, "tahoe", **options)
