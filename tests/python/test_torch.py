"""cellflight.torch.CellDataset through torch's DataLoader with worker
processes, against the real server: each epoch holds every cohort cell
exactly once, epochs reshuffle (non-persistent and persistent workers), a
2-rank DDP run gets disjoint cohorts with equal batch counts, a mid-epoch
state_dict resumes with exactly the rest of the epoch, and tensors hold
what anndata reads from the source. Plus the Lightning DataModule."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from client_helpers import N_PBMC, N_TAHOE, dense_rows, make_data, source_csr
from test_serve import serving

import cellflight  # noqa: E402  (client_helpers puts this checkout's package first)
from cellflight.torch import CellDataset, to_torch  # noqa: E402

COHORT = "cell_id % 4 != 1"
COHORT_CELLS = [c for c in range(N_TAHOE) if c % 4 != 1]


@pytest.fixture(scope="module")
def served(cellflight, tmp_path_factory):
    root = tmp_path_factory.mktemp("torch")
    data, source = make_data(cellflight, root)
    with serving(cellflight, data, "--default-dataset", "tahoe") as (server, address):
        yield {"address": address, "data": data, "source": source}


@pytest.fixture(scope="module")
def address(served):
    return served["address"]


def epoch_of(ds: CellDataset, **loader) -> list[dict]:
    """One pass of a DataLoader over ds, in the order the loop sees it."""
    return list(DataLoader(ds, batch_size=None, num_workers=loader.pop("num_workers", ds.num_workers), **loader))


def real_cells(batches) -> list[int]:
    return [c for b in batches for c in b["cell_id"][~b["is_padding"]].tolist()]


def positions(batches) -> list[tuple[int, int]]:
    return [(b["partition"], b["batch_index"]) for b in batches]


def test_two_workers_cover_the_cohort_exactly_once_each_on_its_partition(address):
    ds = CellDataset(address, "tahoe", query=COHORT, batch_size=32, num_workers=2, seed=1)
    batches = epoch_of(ds)
    assert sorted(real_cells(batches)) == COHORT_CELLS, "every cohort cell exactly once"
    assert len(batches) == len(ds) == 2 * ds.metadata["batches_per_partition"]
    assert Counter(b["partition"] for b in batches) == {0: len(ds) // 2, 1: len(ds) // 2}
    assert positions(batches)[:4] == [(0, 0), (1, 0), (0, 1), (1, 1)], "DataLoader's round robin over the workers"
    assert len(DataLoader(ds, batch_size=None, num_workers=2)) == len(ds), "len() for schedulers"


def test_epochs_reshuffle_with_non_persistent_workers(address):
    ds = CellDataset(address, "tahoe", query=COHORT, batch_size=32, num_workers=2)
    first = real_cells(epoch_of(ds))
    ds.set_epoch(1)
    second = real_cells(epoch_of(ds))
    ds.set_epoch(0)
    again = real_cells(epoch_of(ds))
    assert sorted(second) == COHORT_CELLS
    assert first != second, "the epoch reaches workers started after set_epoch"
    assert first == again, "an epoch is a pure function of seed and epoch"


def test_persistent_workers_move_on_an_epoch_per_pass(address):
    ds = CellDataset(address, "tahoe", query=COHORT, batch_size=32, num_workers=2)
    expected = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected.append(real_cells(epoch_of(ds)))
    ds.set_epoch(0)
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    passes = [real_cells(loader) for _ in range(2)]
    assert passes == expected


def test_every_rank_and_worker_reads_its_own_partition(address):
    """partition = rank × num_workers + worker, over world_size × num_workers."""
    seen = {}
    for rank in range(3):
        ds = CellDataset(address, "tahoe", query=COHORT, batch_size=50, num_workers=2, rank=rank, world_size=3)
        assert ds.partitions == 6
        batches = epoch_of(ds)
        seen[rank] = real_cells(batches)
        assert {b["partition"] for b in batches} == {2 * rank, 2 * rank + 1}
        assert len(batches) == len(ds)
    assert sorted(c for cells in seen.values() for c in cells) == COHORT_CELLS


def test_a_two_process_ddp_run_gets_disjoint_cohorts_and_equal_batch_counts(address, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).with_name("client_ddp.py")
    ranks = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        out = tmp_path / f"rank{rank}.json"
        ranks.append((out, subprocess.Popen([sys.executable, str(script), address, "tahoe", str(out)], env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    results = []
    for out, process in ranks:
        try:
            output, _ = process.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for _, p in ranks:
                p.kill()
            pytest.fail("the DDP run hung (unequal batch counts make DDP's all-reduce wait forever)")
        assert process.returncode == 0, output
        results.append(json.loads(out.read_text()))
    zero, one = results
    assert zero["batches"] == one["batches"] == zero["len"] == one["len"] > 0
    assert not set(zero["cells"]) & set(one["cells"]), "the ranks' cohorts are disjoint"
    assert sorted(zero["cells"] + one["cells"]) == list(range(0, N_TAHOE, 2)), "together: every cell once"
    assert {p for p, _ in zero["positions"]} == {0, 1} and {p for p, _ in one["positions"]} == {2, 3}
    assert zero["state"] == one["state"], "ranks step in lockstep, so rank 0's state resumes every rank"


def test_resume_from_a_mid_epoch_state_dict_with_two_workers_gives_exactly_the_rest(address):
    request = dict(query=COHORT, batch_size=20, fetch_factor=4, num_workers=2, seed=6)
    full = CellDataset(address, "tahoe", **request)
    full.set_epoch(2)
    everything = epoch_of(full)

    ds = CellDataset(address, "tahoe", **request)
    ds.set_epoch(2)
    before, state = [], None
    for batch in ds.track(DataLoader(ds, batch_size=None, num_workers=2)):
        before.append(batch)
        if len(before) == 13:  # odd: the workers are at different batches
            state = ds.state_dict()
            break
    assert state["epoch"] == 2 and state["next_batch"] == [7, 6]
    state = json.loads(json.dumps(state))  # as a checkpoint would keep it

    resumed = CellDataset(address, "tahoe", **request)
    resumed.load_state_dict(state)
    after = list(resumed.track(DataLoader(resumed, batch_size=None, num_workers=2)))
    assert len(before) + len(after) == len(everything)
    assert sorted(positions(before) + positions(after)) == sorted(positions(everything))
    assert not set(positions(before)) & set(positions(after))
    by_position = {(b["partition"], b["batch_index"]): b["cell_id"].tolist() for b in everything}
    assert all(b["cell_id"].tolist() == by_position[(b["partition"], b["batch_index"])] for b in after)
    assert sorted(real_cells(before) + real_cells(after)) == COHORT_CELLS

    resumed.set_epoch(3)  # the next epoch starts from its beginning
    assert sorted(real_cells(epoch_of(resumed))) == COHORT_CELLS


def test_a_state_for_another_partitioning_is_refused(address):
    state = CellDataset(address, "tahoe", num_workers=2).state_dict()
    with pytest.raises(ValueError, match="same world size, workers and streams"):
        CellDataset(address, "tahoe", num_workers=3).load_state_dict(state)


def test_a_dataloader_with_other_workers_than_declared_is_refused(address):
    ds = CellDataset(address, "tahoe", num_workers=2)
    with pytest.raises(ValueError, match="num_workers=2.*1 workers"):
        next(iter(DataLoader(ds, batch_size=None, num_workers=0)))


def test_sparse_and_dense_tensors_agree_and_hold_the_sources_values(served):
    X = source_csr(served["source"])
    request = dict(batch_size=16, seed=2, num_workers=2, obs_columns=["cell_type", "score"])
    sparse = epoch_of(CellDataset(served["address"], "pbmc", **request))
    dense = epoch_of(CellDataset(served["address"], "pbmc", format="dense", **request))
    assert len(sparse) == len(dense)
    for s, d in zip(sparse, dense):
        assert s["X"].layout == torch.sparse_csr and d["X"].layout == torch.strided
        assert s["X"].dtype == d["X"].dtype == torch.float32
        assert torch.equal(s["cell_id"], d["cell_id"])
        expected = torch.from_numpy(dense_rows(X, s["cell_id"].numpy()))
        assert torch.equal(s["X"].to_dense(), expected)
        assert torch.equal(d["X"], expected)
    assert sorted(real_cells(sparse)) == list(range(N_PBMC))


def test_categoricals_are_codes_into_the_datasets_full_category_list(served):
    source = served["source"].obs
    ds = CellDataset(served["address"], "pbmc", batch_size=32, num_workers=2, obs_columns=["cell_type", "grade", "umis"])
    assert ds.categories["cell_type"] == list(source["cell_type"].cat.categories) == ["B", "ILC", "T", "NK", "unused"]
    assert ds.categories["grade"] == ["low", "mid", "high"]
    for batch in epoch_of(ds):
        cells = batch["cell_id"].numpy()
        codes = batch["obs"]["cell_type"]
        assert codes.dtype == torch.int64
        assert codes.tolist() == source["cell_type"].cat.codes.to_numpy()[cells].tolist(), "missing → -1"
        umis = batch["obs"]["umis"].numpy()
        want = source["umis"].to_numpy(dtype=np.float64, na_value=np.nan)[cells]
        np.testing.assert_array_equal(umis, want)


def test_a_dense_tensor_shares_the_arrow_buffer(address):
    batch = next(iter(cellflight.connect(address).loader("tahoe", format="dense", batch_size=32)))
    X = to_torch(batch)["X"]
    column = batch.record_batch.column("x").values
    assert X.data_ptr() == column.buffers()[1].address + 4 * column.offset
    assert X.shape == (32, batch.n_genes)


class _Stop(Exception):
    pass


def test_the_lightning_datamodule_follows_the_trainers_epochs_and_resumes_a_mid_epoch_checkpoint(address, tmp_path):
    import lightning.pytorch as pl

    from cellflight.lightning import CellFlightDataModule

    checkpoint = tmp_path / "mid.ckpt"

    class Model(pl.LightningModule):
        def __init__(self, stop_after=None):
            super().__init__()
            self.layer = torch.nn.Linear(300, 1)
            self.seen, self.stop_after = [], stop_after

        def training_step(self, batch, _):
            self.seen.append((batch["epoch"], batch["partition"], batch["batch_index"], real_cells([batch])))
            if len(self.seen) == self.stop_after:
                self.trainer.save_checkpoint(checkpoint)  # then the job dies
                raise _Stop
            return self.layer(batch["X"].to_dense()).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-6)

    def fit(model, ckpt_path=None):
        dm = CellFlightDataModule(address, "tahoe", num_workers=2, train=dict(query=COHORT, batch_size=100))
        trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
        try:
            trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        except _Stop:
            pass
        return dm

    whole = Model()
    fit(whole)
    epochs = [[cells for e, _, _, cells in whole.seen if e == epoch] for epoch in (0, 1)]
    for cells in epochs:
        assert sorted(c for batch in cells for c in batch) == COHORT_CELLS
    assert epochs[0] != epochs[1], "the trainer's epoch reaches the workers"

    first = Model(stop_after=5)
    fit(first)
    second = Model()
    dm = fit(second, ckpt_path=checkpoint)
    place = lambda seen: sorted((e, p, k) for e, p, k, _ in seen)
    assert place(first.seen + second.seen) == place(whole.seen), "the rest of epoch 0, then epoch 1, exactly"
    assert dm.state_dict()["train"]["next_batch"] == [dm.train_dataset.metadata["batches_per_partition"]] * 2


def test_workers_forked_after_the_parent_used_the_server_work(address):
    """gRPC does not survive fork(); the package closes its idle connections
    before one, so planning in the parent (len, categories, SQL) is fine."""
    client = cellflight.connect(address)
    assert client.count("tahoe") == N_TAHOE
    ds = CellDataset(client, "tahoe", batch_size=500, num_workers=2, obs_columns=["plate"])
    assert len(ds) == 4 and ds.categories["plate"]
    for _ in range(2):
        assert sorted(real_cells(epoch_of(ds))) == list(range(N_TAHOE))


def test_a_worker_forked_while_the_parent_streams_refuses_instead_of_hanging(address):
    stream = iter(cellflight.connect(address).loader("tahoe", batch_size=10))
    next(stream)
    try:
        ds = CellDataset(address, "tahoe", num_workers=2)
        with pytest.raises(cellflight.CellflightError, match="forked while gRPC was running.*multiprocessing_context"):
            epoch_of(ds, timeout=60)
    finally:
        stream.close()
    assert sorted(real_cells(epoch_of(ds))) == list(range(N_TAHOE)), "once the stream is closed, forks are fine"


def test_a_batch_from_a_worker_travels_as_one_shared_memory_buffer(address):
    """One shared-memory segment per batch, not one per tensor: the
    DataLoader's cost of handing a batch to the training process."""
    ds = CellDataset(address, "tahoe", batch_size=64, num_workers=1, obs_columns=["plate", "stat_total"])
    batch = next(iter(DataLoader(ds, batch_size=None, num_workers=1)))
    X = batch["X"]
    tensors = [X.crow_indices(), X.col_indices(), X.values(), batch["cell_id"], batch["is_padding"], *batch["obs"].values()]
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == 1
    assert all(t.is_shared() for t in tensors)
    assert X.values().dtype == torch.float32 and X.col_indices().dtype == torch.int32
