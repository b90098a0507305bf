"""One rank of the DDP test (test_torch.py): trains a linear model under
DistributedDataParallel (gloo, CPU) on a CellDataset read by a DataLoader
with two workers, and writes what it saw as JSON.

    RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=... python client_ddp.py ADDRESS DATASET OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python" / "src"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from cellflight.torch import CellDataset  # noqa: E402


def main(address: str, dataset: str, out: str) -> None:
    # Made before the process group, as scripts often do: the rank is looked up when needed.
    ds = CellDataset(address, dataset, batch_size=16, num_workers=2, query="cell_id % 2 = 0", seed=3)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(ds.n_genes, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    cells, positions = [], []
    for batch in ds.track(DataLoader(ds, batch_size=None, num_workers=2)):
        optimizer.zero_grad()
        model(batch["X"].to_dense()).sum().backward()  # all-reduce: every rank must step the same number of times
        optimizer.step()
        cells.extend(batch["cell_id"][~batch["is_padding"]].tolist())
        positions.append((batch["partition"], batch["batch_index"]))
    Path(out).write_text(json.dumps({
        "rank": rank, "world_size": dist.get_world_size(), "len": len(ds), "batches": len(positions),
        "cells": cells, "positions": positions, "state": ds.state_dict(),
    }))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
