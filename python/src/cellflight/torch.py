"""PyTorch: `CellDataset`, an IterableDataset of minibatches that splits
the epoch between DDP ranks and DataLoader workers, with mid-epoch resume.

    ds = CellDataset(client, "demo", batch_size=64, num_workers=4, obs_columns=["plate"])
    loader = DataLoader(ds, batch_size=None, num_workers=4)
    for epoch in range(start_epoch, epochs):
        ds.set_epoch(epoch)
        for batch in ds.track(loader):        # records what the loop has consumed
            ...                               # batch["X"]: torch.sparse_csr_tensor
            checkpoint = {"data": ds.state_dict(), ...}

The epoch is dealt as `world_size × num_workers` partitions (× `streams`):
the worker `w` of rank `r` reads partition `r × num_workers + w`. Every
rank uses the same seed and epoch, so the ranks' cohorts are disjoint,
together hold every cell once, and have the same number of batches.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from .client import Client, as_client, check_dataset_name
from .loader import Batch, Loader, categorical_columns, read_categories

STATE_VERSION = 1

# torch warns once per process that its sparse CSR support is "beta"; every
# DataLoader worker would print it.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled", category=UserWarning)


def _from_arrow(array: pa.Array) -> torch.Tensor:
    """A tensor sharing the Arrow array's memory (DLPack), read-only in spirit."""
    return torch.from_dlpack(array)


# Conversions run in the loader's reader threads, and torch ops there would
# start an OpenMP team per thread that fights the gRPC threads for the
# cores (10x slower on 2 cores): numpy converts, torch only wraps.
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
          torch.int64: np.int64, torch.int32: np.int32}


def _as(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    if dtype in _NUMPY:
        return torch.from_numpy(array.astype(_NUMPY[dtype]))  # a new, writable array
    return torch.from_numpy(array.astype(np.float32)).to(dtype)


_TORCH = {np.dtype(k): v for k, v in {
    np.float16: torch.float16, np.float32: torch.float32, np.float64: torch.float64, np.int8: torch.int8,
    np.int16: torch.int16, np.int32: torch.int32, np.int64: torch.int64, np.uint8: torch.uint8, np.bool_: torch.bool,
}.items()}


def _obs_dtype(array: np.ndarray, categorical: bool):
    """The numpy type an obs column travels as, or None for a list."""
    if categorical:
        return np.dtype(np.int64)
    if array.dtype == object:
        return None  # strings (or booleans with nulls): no tensor type
    if array.dtype in _TORCH:
        return array.dtype
    return np.dtype(np.int64) if array.dtype.kind in "ui" else np.dtype(np.float64)


class _Arena:
    """Tensors carved out of one storage, filled from numpy (casting on the
    way). Crossing from a DataLoader worker, a batch is then one
    shared-memory segment instead of one per tensor."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, np.dtype]] = []

    def add(self, source: np.ndarray, dtype) -> int:
        self.parts.append((source, np.dtype(dtype)))
        return len(self.parts) - 1

    def build(self, shared: bool) -> list[torch.Tensor]:
        offsets, total = [], 0
        for source, dtype in self.parts:
            total = -(-total // 8) * 8
            offsets.append(total)
            total += source.size * dtype.itemsize
        buffer = torch.empty(max(total, 8), dtype=torch.uint8)
        if shared:
            buffer.share_memory_()
        raw = buffer.numpy()
        out = []
        for (source, dtype), offset in zip(self.parts, offsets):
            size = source.size * dtype.itemsize
            raw[offset:offset + size].view(dtype).reshape(source.shape)[...] = source
            out.append(buffer[offset:offset + size].view(_TORCH[dtype]).view(source.shape))
        return out


def to_torch(batch: Batch, dtype: torch.dtype = torch.float32, pack: bool = False) -> dict[str, Any]:
    """A minibatch as tensors: `X` (a `torch.sparse_csr_tensor` with int32
    indices for `csr`, a dense tensor for `dense`, values in `dtype`),
    `cell_id` (int64), `is_padding` (bool), `obs` (name → tensor;
    categoricals as int64 codes into the dataset's full category list, -1
    for missing; strings as lists), and the batch's place in its stream:
    `epoch`, `partition`, `batch_index`.

    Without `pack`, a dense float32 `X` is the received Arrow buffer itself
    (no copy). With `pack` (what DataLoader workers use), every tensor is a
    view of one shared-memory buffer, so handing the batch to the training
    process costs one segment rather than one per tensor."""
    rb = batch.record_batch
    n = rb.num_rows
    categorical = {f.name for f in rb.schema if pa.types.is_dictionary(f.type)}
    value_type = _NUMPY.get(dtype)
    arena = _Arena()
    lists = {}
    if batch.x is None:
        crow, col = arena.add(batch.indptr, np.int32), arena.add(batch.indices, np.int32)
        if value_type is not None:
            values = arena.add(batch.values, value_type)
    elif pack and value_type is not None:
        x = arena.add(batch.x, value_type)
    cell_id, padding = arena.add(batch.cell_id, np.int64), arena.add(batch.is_padding, np.bool_)
    obs = {}
    for name, array in batch.obs.items():
        kind = _obs_dtype(array, name in categorical)
        if kind is None:
            lists[name] = array.tolist()
        else:
            obs[name] = arena.add(array, kind)
    tensors = arena.build(shared=pack)
    if batch.x is None:
        vals = tensors[values] if value_type is not None else _as(batch.values, dtype)
        X = torch.sparse_csr_tensor(tensors[crow], tensors[col], vals, size=(n, batch.n_genes))
    elif pack and value_type is not None:
        X = tensors[x]
    elif dtype == torch.float32:
        column = rb.column("x")
        X = _from_arrow(column.flatten()).view(n, column.type.list_size)  # the Arrow buffer, no copy
    else:
        X = _as(batch.x, dtype)
    return {
        "X": X,
        "cell_id": tensors[cell_id],
        "is_padding": tensors[padding],
        "obs": {name: tensors[obs[name]] if name in obs else lists[name] for name in batch.obs},
        "epoch": batch.epoch,
        "partition": batch.partition,
        "batch_index": batch.index,
    }


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class CellDataset(IterableDataset):
    """Minibatches of a cohort for `DataLoader(ds, batch_size=None, num_workers=K)`.

    Keywords are the request keys of docs/protocol.md (`query`,
    `batch_size`, `block_size`, `fetch_factor`, `seed` (default 0, the
    same on every rank), `epoch`, `genes`, `gene_column`, `genes_query`,
    `format` (`csr` → `torch.sparse_csr_tensor`, `dense` → a dense
    tensor), `transform`, `obs_columns`, `sampling`, `weights`,
    `balance_by`, `num_samples`, `drop_last`), plus:

    - `num_workers`: the DataLoader's `num_workers` (0 for none). It fixes
      the partitioning and so `len()`; a DataLoader with another number of
      workers is refused when it starts. `None`: take it from the
      DataLoader (then `len()` is unknown and raises TypeError).
    - `rank`, `world_size`: default from `torch.distributed` when it is
      initialised, else 0 and 1.
    - `streams`: partitions each worker reads concurrently (default 1).
    - `dtype`: of `X`'s values (default float32).

    Each item is the dict of `to_torch`. `len(ds)`: batches this rank's
    DataLoader yields per epoch. `ds.categories[name]`: the full category
    list of a categorical obs column, what its codes index into.

    Epochs: `ds.set_epoch(e)` before each epoch. The epoch travels in the
    dataset object that the DataLoader sends to its workers, so it takes
    effect with non-persistent workers; persistent workers keep the copy
    they were started with and advance its epoch by one per pass.
    """

    def __init__(
        self,
        client: Client | str,
        dataset: str | None = None,
        *,
        num_workers: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        streams: int = 1,
        dtype: torch.dtype = torch.float32,
        prefetch: int | None = None,
        seed: int = 0,
        epoch: int = 0,
        batch_size: int = 64,
        format: str = "csr",
        **request,
    ):
        super().__init__()
        self.client = as_client(client)
        if dataset is not None:
            check_dataset_name(dataset)
        self.dataset = dataset
        self.request = dict(request, seed=seed, batch_size=batch_size, format=format)
        reserved = sorted({"partitions", "read", "start_batches", "convert"} & set(request))
        if reserved:
            raise TypeError(f"CellDataset sets {reserved} itself (partitions = world size × num_workers × streams)")
        self.num_workers = num_workers
        # Rank and world size are looked up when first needed, so a dataset
        # made before init_process_group still sees the process group.
        self._rank, self._world_size = rank, world_size
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if rank is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size}")
        if streams < 1:
            raise ValueError("streams must be at least 1")
        self.streams = int(streams)
        self.dtype = dtype
        self.prefetch = prefetch
        self.epoch = int(epoch)
        self._resume: dict | None = None  # {"epoch": e, "next_batch": [per slot]}
        self._progress: dict | None = None  # what the main process's loop consumed
        self._passes = 0  # passes made by this copy (persistent workers)
        self._loader_cache: Loader | None = None
        self._categories: dict[str, list[str]] | None = None
        Loader(self.client, dataset, partitions=1, **self.request)  # checks the keywords now, not in a worker

    # --- partitioning -------------------------------------------------------

    def _topology(self) -> tuple[int, int]:
        if self._rank is not None:
            return int(self._rank), int(self._world_size)
        return _distributed()

    @property
    def rank(self) -> int:
        """This process's DDP rank (torch.distributed's, unless given)."""
        return self._topology()[0]

    @property
    def world_size(self) -> int:
        return self._topology()[1]

    def _workers(self, strict: bool = True) -> int:
        if self.num_workers is None:
            if strict:
                raise TypeError(
                    "len() needs the partitioning: pass num_workers= (the DataLoader's) to CellDataset"
                )
            return 1
        return max(1, int(self.num_workers))

    @property
    def slots(self) -> int:
        """Partitions each rank reads (its workers × streams)."""
        return self._workers() * self.streams

    @property
    def partitions(self) -> int:
        """Partitions of the whole epoch (world size × workers × streams)."""
        return self.world_size * self.slots

    def _loader(self, workers: int, worker: int, epoch: int, start: list[int] | None) -> Loader:
        slots = workers * self.streams
        first = self.rank * slots + worker * self.streams
        read = list(range(first, first + self.streams))
        start_batches = {}
        if start is not None:
            for p in read:
                start_batches[p] = start[p - self.rank * slots]
        return Loader(
            self.client, self.dataset, partitions=self.world_size * slots, read=read, epoch=epoch,
            start_batches=start_batches, prefetch=self.prefetch, convert=self._convert, **self.request,
        )

    def _convert(self, batch: Batch):
        return to_torch(batch, self.dtype, pack=get_worker_info() is not None)

    def _plan_loader(self, strict: bool = True) -> Loader:
        """A loader of this rank's first worker, for planning in the main process."""
        workers = self._workers(strict)
        key = (self.epoch, workers, self._topology())
        if self._loader_cache is None or getattr(self._loader_cache, "_key", None) != key:
            self._loader_cache = self._loader(workers, 0, self.epoch, None)
            self._loader_cache._key = key
        return self._loader_cache

    def __len__(self) -> int:
        """Batches this rank's DataLoader yields in one epoch."""
        loader = self._plan_loader()
        return loader.batches_per_partition * self.slots

    @property
    def n_genes(self) -> int:
        """Width of the output gene space (the columns of `X`)."""
        return self._plan_loader(strict=False).n_genes

    @property
    def metadata(self) -> dict:
        """The epoch's plan: cohort_size, batches_per_partition, seed, dataset_version."""
        return self._plan_loader().metadata

    @property
    def categories(self) -> dict[str, list[str]]:
        """The full category list of each categorical obs column asked for."""
        if self._categories is None:
            wanted = [c for c in (self.request.get("obs_columns") or ())]
            cats = categorical_columns(self.client.cells_schema(self.dataset), wanted)
            self._categories = read_categories(self.client, self.dataset, cats) if cats else {}
        return self._categories

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_loader_cache"] = None
        state["_progress"] = None  # the main process's record stays there
        state["_passes"] = 0
        state["_rank"], state["_world_size"] = self._topology()  # as the main process sees it
        return state

    # --- iteration ------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass; a resume point of another epoch is dropped."""
        self.epoch = int(epoch)
        if self._resume is not None and self._resume["epoch"] != self.epoch:
            self._resume = None

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        if self.num_workers is not None and max(1, self.num_workers) != workers:
            raise ValueError(
                f"CellDataset(num_workers={self.num_workers}) is read by a DataLoader with {workers} workers: "
                "give both the same num_workers"
            )
        epoch = self.epoch
        if info is not None:
            epoch += self._passes  # persistent workers: a copy that passes again moves on an epoch
        self._passes += 1
        resume = self._resume
        start = resume["next_batch"] if resume is not None and resume["epoch"] == epoch else None
        if info is not None and self._passes > 1:
            start = None
        yield from self._loader(workers, worker, epoch, start)

    # --- resume -----------------------------------------------------------------

    def track(self, batches):
        """Yields `batches` (the DataLoader), recording each one the training
        loop receives, so `state_dict()` says where to resume."""
        for batch in batches:
            self.record(batch)
            yield batch
        if self._resume is not None and self._progress is not None and self._resume["epoch"] == self._progress["epoch"]:
            self._resume = None  # the resumed epoch is done

    def record(self, batch: dict) -> None:
        """Marks a batch (an item of this dataset) as consumed by the loop."""
        if self.num_workers is None:
            raise TypeError("resume needs the partitioning: pass num_workers= to CellDataset")
        epoch, partition, index = int(batch["epoch"]), int(batch["partition"]), int(batch["batch_index"])
        slots = self.slots
        if self._progress is None or self._progress["epoch"] != epoch:
            resume = self._resume
            start = resume["next_batch"] if resume is not None and resume["epoch"] == epoch else None
            self._progress = {"epoch": epoch, "next_batch": dict(enumerate(start)) if start else {}}
        slot = partition - self.rank * slots
        if not 0 <= slot < slots:
            raise ValueError(f"batch of partition {partition} is not one of rank {self.rank}'s")
        done = self._progress["next_batch"]
        done[slot] = max(done.get(slot, 0), index + 1)

    def state_dict(self) -> dict:
        """Where the training loop is: the epoch and, for each of this rank's
        partitions (relative to the rank, so any rank can load it: the ranks
        step in lockstep), the next batch to read."""
        slots = self.slots
        progress = self._progress
        if progress is None:
            start = self._resume["next_batch"] if self._resume is not None and self._resume["epoch"] == self.epoch else None
            progress = {"epoch": self.epoch, "next_batch": dict(enumerate(start)) if start else {}}
        return {
            "version": STATE_VERSION,
            "epoch": progress["epoch"],
            "seed": self.request["seed"],
            "partitions": self.partitions,
            "next_batch": [int(progress["next_batch"].get(s, 0)) for s in range(slots)],
        }

    def load_state_dict(self, state: dict) -> None:
        """Resumes at `state` (from `state_dict`): the next pass is its epoch,
        each partition starting at its next batch."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"not a CellDataset state of version {STATE_VERSION}: {state!r}")
        if state["partitions"] != self.partitions or len(state["next_batch"]) != self.slots:
            raise ValueError(
                f"the state is for {state['partitions']} partitions ({len(state['next_batch'])} per rank); this dataset "
                f"has {self.partitions} ({self.slots} per rank): resume with the same world size, workers and streams"
            )
        if state["seed"] != self.request["seed"]:
            raise ValueError(f"the state is for seed {state['seed']}, this dataset has seed {self.request['seed']}")
        self.epoch = int(state["epoch"])
        self._resume = {"epoch": self.epoch, "next_batch": [int(k) for k in state["next_batch"]]}
        self._progress = None
