"""PyTorch: `CellDataset`, an IterableDataset of minibatches that splits
the epoch between DDP ranks and DataLoader workers, with mid-epoch resume.

    ds = CellDataset(client, "demo", batch_size=64, num_workers=0, obs_columns=["plate"])
    loader = DataLoader(ds, batch_size=None, num_workers=0)
    for epoch in range(start_epoch, epochs):
        ds.set_epoch(epoch)
        for batch in ds.track(loader):        # records what the loop has consumed
            ...                               # batch["X"]: torch.sparse_csr_tensor
            checkpoint = {"data": ds.state_dict(), ...}
        print(ds.stats())                     # where the epoch's time went

With `num_workers=0` (the fastest: the loader's threads read `streams`
endpoints in this process) nothing crosses a process boundary; DataLoader
workers hand their batches over through a ring of reused shared-memory
files (`_shared`).

The epoch is dealt as `world_size × num_workers` partitions (× `streams`):
the worker `w` of rank `r` reads partition `r × num_workers + w`. Every
rank uses the same seed and epoch, so the ranks' cohorts are disjoint,
together hold every cell once, and have the same number of batches.
"""

from __future__ import annotations

import time
import uuid
import warnings
import weakref
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from . import _shared
from ._stats import EpochMeter, EpochStats
from .client import Client, as_client, check_dataset_name
from .loader import Batch, Loader, Tokens, categorical_columns, read_categories

STATE_VERSION = 1

# torch warns once per process that its sparse CSR support is "beta"; every
# DataLoader worker would print it.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)


def _from_arrow(array: pa.Array) -> torch.Tensor:
    """A tensor sharing the Arrow array's memory (DLPack), read-only in spirit."""
    return torch.from_dlpack(array)


# Conversions run in the loader's reader threads, and torch ops there would
# start an OpenMP team per thread that fights the gRPC threads for the
# cores (10x slower on 2 cores): numpy converts, torch only wraps. Value
# types numpy lacks (bfloat16) travel as float32 and are cast by torch last.
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16,
          torch.int64: np.int64, torch.int32: np.int32}


def _obs_dtype(array: np.ndarray, categorical: bool):
    """The numpy type an obs column travels as, or None for a list."""
    if categorical:
        return np.dtype(np.int64)
    if array.dtype == object:
        return None  # strings (or booleans with nulls): no tensor type
    if array.dtype in _shared.TORCH_TYPES:
        return array.dtype
    return np.dtype(np.int64) if array.dtype.kind in "ui" else np.dtype(np.float64)


# Token ids and bins become int64: what nn.Embedding and Hugging Face models
# take (int32 works with nn.Embedding too, but not everywhere).
TOKEN_TYPE = np.dtype(np.int64)


_TOKEN_TENSORS = ("input_ids", "values", "attention_mask", "cu_seqlens")


def _token_parts(tokens: Tokens) -> dict[str, tuple[np.ndarray, np.dtype]]:
    """`input_ids`, `values` (scGPT), and `attention_mask` (padded) or
    `cu_seqlens` (ragged: int32 row offsets, what varlen attention takes)."""
    parts = {"input_ids": (tokens.input_ids, TOKEN_TYPE)}
    if tokens.values is not None:
        parts["values"] = (tokens.values, TOKEN_TYPE)
    if tokens.padded:
        parts["attention_mask"] = (tokens.attention_mask, np.dtype(np.bool_))
    else:
        parts["cu_seqlens"] = (tokens.offsets, np.dtype(np.int32))
    return parts


def tensor_parts(batch: Batch, dtype: torch.dtype) -> tuple[dict[str, tuple[np.ndarray, np.dtype]], dict]:
    """The batch's arrays that become tensors, by name, each with the numpy
    type it becomes; and the rest of the item (`info`), for `assemble`."""
    value_type = np.dtype(_NUMPY.get(dtype, np.float32))
    if batch.tokens is not None:
        parts = _token_parts(batch.tokens)
    elif batch.x is None:
        parts = {"crow_indices": (batch.indptr, np.dtype(np.int32)), "col_indices": (batch.indices, np.dtype(np.int32)),
                 "values": (batch.values, value_type)}  # fmt: skip
    else:
        parts = {"x": (batch.x, value_type)}
    parts["cell_id"] = (batch.cell_id, np.dtype(np.int64))
    parts["is_padding"] = (batch.is_padding, np.dtype(np.bool_))
    categorical = {f.name for f in batch.record_batch.schema if pa.types.is_dictionary(f.type)}
    lists = {}
    for name, array in batch.obs.items():
        kind = _obs_dtype(array, name in categorical)
        if kind is None:
            lists[name] = array.tolist()
        else:
            parts["obs." + name] = (array, kind)
    info = {"shape": batch.shape, "dtype": dtype, "obs": list(batch.obs), "lists": lists, "epoch": batch.epoch,
            "partition": batch.partition, "batch_index": batch.index, "tokens": batch.tokens is not None}  # fmt: skip
    return parts, info


def _data(tensors: dict[str, torch.Tensor], info: dict) -> dict[str, torch.Tensor]:
    """The item's data: its token tensors, or `X`."""
    if info["tokens"]:
        return {name: tensors[name] for name in _TOKEN_TENSORS if name in tensors}
    if "x" in tensors:
        return {"X": tensors["x"].to(info["dtype"])}  # the same tensor when it has the type already
    # The server's batches are valid CSR; checking them again would cost a pass over the indices.
    X = torch.sparse_csr_tensor(tensors["crow_indices"], tensors["col_indices"], tensors["values"].to(info["dtype"]),
                                size=info["shape"], check_invariants=False)  # fmt: skip
    return {"X": X}


def assemble(tensors: dict[str, torch.Tensor], info: dict) -> dict[str, Any]:
    """The item of `to_torch` from the tensors of `tensor_parts`' arrays."""
    obs = {name: tensors["obs." + name] if name not in info["lists"] else info["lists"][name] for name in info["obs"]}
    return {**_data(tensors, info), "cell_id": tensors["cell_id"], "is_padding": tensors["is_padding"], "obs": obs,
            "epoch": info["epoch"], "partition": info["partition"], "batch_index": info["batch_index"]}  # fmt: skip


def _packed(parts: dict) -> dict[str, torch.Tensor]:
    """Every array as a view of one new shared-memory buffer."""
    places, total = _shared.layout(parts)
    buffer = torch.empty(max(total, 8), dtype=torch.uint8).share_memory_()
    _shared.fill(buffer.numpy(), parts, places)
    return _shared.views(buffer.untyped_storage(), 0, places)


def to_torch(batch: Batch, dtype: torch.dtype = torch.float32, pack: bool = False) -> dict[str, Any]:
    """A minibatch as tensors: `X` (a `torch.sparse_csr_tensor` with int32
    indices for `csr`, a dense tensor for `dense`, values in `dtype`), or
    for `tokens` `input_ids` (int64), `values` (scGPT's bins, int64) and
    `attention_mask` (bool) of shape (cells, max_length), or when ragged
    flat `input_ids`/`values` with `cu_seqlens` (int32 offsets of the rows:
    the packed layout of varlen attention, e.g. flash-attn),
    `cell_id` (int64), `is_padding` (bool), `obs` (name → tensor;
    categoricals as int64 codes into the dataset's full category list, -1
    for missing; strings as lists), and the batch's place in its stream:
    `epoch`, `partition`, `batch_index`.

    Whole arrays are cast at once (numpy), never a loop per cell. Without
    `pack`, a dense float32 `X` is the received Arrow buffer itself (no
    copy), every other tensor a new array of its own. With `pack`, every
    tensor is a view of one new shared-memory buffer."""
    return _item(batch, dtype, _packed if pack else _copied)


def _copy(source: np.ndarray, kind: np.dtype) -> torch.Tensor:
    return torch.from_numpy(source.astype(kind))  # a new, writable array


def _copied(parts: dict) -> dict[str, torch.Tensor]:
    return {name: _copy(source, kind) for name, (source, kind) in parts.items()}


_pool = _shared.BufferPool()
POOLED_BYTES = 1 << 16  # smaller arrays come from the allocator's free lists anyway


def _pooled(parts: dict) -> dict[str, torch.Tensor]:
    """Like `_copied`, the large arrays in reused buffers."""
    return {name: (_pool.tensor if source.size * kind.itemsize >= POOLED_BYTES else _copy)(source, kind)
            for name, (source, kind) in parts.items()}  # fmt: skip


def _item(batch: Batch, dtype: torch.dtype, tensors_of) -> dict[str, Any]:
    """The item, the arrays made tensors by `tensors_of`; a dense float32
    `X` is the Arrow buffer itself unless packed into shared memory."""
    parts, info = tensor_parts(batch, dtype)
    arrow_x = batch.x is not None and dtype == torch.float32 and tensors_of is not _packed
    if arrow_x:
        del parts["x"]
    tensors = tensors_of(parts)
    if arrow_x:
        column = batch.record_batch.column("x")
        tensors["x"] = _from_arrow(column.flatten()).view(len(batch), column.type.list_size)
    return assemble(tensors, info)


def _pinned(item: dict) -> dict:
    """The item with its tensors in page-locked memory."""
    pin = lambda value: value.pin_memory() if isinstance(value, torch.Tensor) else value  # noqa: E731
    return {**{key: pin(value) for key, value in item.items() if key != "obs"},
            "obs": {name: pin(value) for name, value in item["obs"].items()}}  # fmt: skip


# The epoch figures of each dataset of this process, by the dataset's token,
# for the batches of its DataLoader workers to report to when they arrive.
_meters: weakref.WeakValueDictionary[str, EpochMeter] = weakref.WeakValueDictionary()


def _meter_for(token: str) -> EpochMeter:
    meter = _meters.get(token)
    if meter is None:
        meter = _meters[token] = EpochMeter()
    return meter


def _arrived(tensors: dict[str, torch.Tensor], info: dict) -> dict[str, Any]:
    """A DataLoader worker's batch, in the training process (see _shared)."""
    started = time.perf_counter()
    item = assemble(tensors, info)
    if info["pin"]:
        item = _pinned(item)
    meter = _meters.get(info["meter"])
    if meter is not None:
        seconds = info["convert_seconds"] + time.perf_counter() - started
        meter.converted(info["cells"], seconds, info["receive_seconds"])
    return item


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


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
    tensor, `tokens` → `input_ids`/`values`/`attention_mask`, see
    `to_torch`), `transform`, `tokenizer` (with `format="tokens"`),
    `obs_columns`, `sampling`, `weights`, `balance_by`, `num_samples`,
    `drop_last`), plus:

    - `num_workers`: the DataLoader's `num_workers` (0 for none: the
      fastest). It fixes the partitioning and so `len()`; a DataLoader with
      another number of workers is refused when it starts. `None`: take it
      from the DataLoader (then `len()` is unknown and raises TypeError).
    - `rank`, `world_size`: default from `torch.distributed` when it is
      initialised, else 0 and 1.
    - `streams`: partitions each worker (or, with `num_workers=0`, the
      loader's threads) reads concurrently; default 2 with `num_workers=0`,
      else 1. It is part of the partitioning: resume with the same value.
    - `dtype`: of `X`'s values (default float32).
    - `pin_memory`: tensors in page-locked memory, for
      `.to("cuda", non_blocking=True)`; without CUDA a no-op (with a warning).

    Each item is the dict of `to_torch`. `len(ds)`: batches this rank's
    DataLoader yields per epoch. `ds.categories[name]`: the full category
    list of a categorical obs column, what its codes index into.

    Epochs: `ds.set_epoch(e)` before each epoch. The epoch travels in the
    dataset object that the DataLoader sends to its workers, so it takes
    effect with non-persistent workers; persistent workers keep the copy
    they were started with and advance its epoch by one per pass.

    `ds.stats()`: where the current (or last) epoch's time went, as
    recorded by `track()`.
    """

    def __init__(
        self,
        client: Client | str,
        dataset: str | None = None,
        *,
        num_workers: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        streams: int | None = None,
        dtype: torch.dtype = torch.float32,
        prefetch: int | None = None,
        pin_memory: bool = False,
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
        self.num_workers = None if num_workers is None else _count("num_workers", num_workers, 0)
        # Rank and world size are looked up when first needed, so a dataset
        # made before init_process_group still sees the process group.
        self._rank, self._world_size = rank, world_size
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if rank is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size}")
        # Without workers, two streams keep the network busy while one
        # batch is converted (measured: docs/benchmarks.md).
        if streams is None:
            streams = 2 if num_workers == 0 else 1
        self.streams = _count("streams", streams, 1)
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, e.g. torch.float32, not {dtype!r}")
        self.dtype = dtype
        self.prefetch = None if prefetch is None else _count("prefetch", prefetch, 1)
        if not isinstance(pin_memory, bool):
            raise TypeError(f"pin_memory must be True or False, not {pin_memory!r}")
        if pin_memory and not torch.cuda.is_available():
            warnings.warn("CellDataset(pin_memory=True) does nothing without CUDA: tensors stay in ordinary memory",
                          UserWarning, stacklevel=2)  # fmt: skip
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.epoch = int(epoch)
        self._resume: dict | None = None  # {"epoch": e, "next_batch": [per slot]}
        self._progress: dict | None = None  # what the main process's loop consumed
        self._passes = 0  # passes made by this copy (persistent workers)
        self._loader_cache: Loader | None = None
        self._categories: dict[str, list[str]] | None = None
        self._token = uuid.uuid4().hex  # names this dataset's figures, for batches from workers
        self._meter = _meter_for(self._token)
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
        """In the loader's reader threads: the item, or in a DataLoader
        worker the batch written into the worker's shared-memory ring."""
        started = time.perf_counter()
        if get_worker_info() is None:
            item = _item(batch, self.dtype, _pooled)
            if self.pin_memory:
                item = _pinned(item)
            self._meter.converted(len(batch), time.perf_counter() - started, batch.receive_seconds)
            return item
        parts, info = tensor_parts(batch, self.dtype)
        info.update(meter=self._token, pin=self.pin_memory, cells=len(batch), receive_seconds=batch.receive_seconds)
        handle = _shared.worker_ring().put(parts, _arrived, info)
        info["convert_seconds"] = time.perf_counter() - started  # travels with the handle
        return handle

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
        """The epoch's plan: cohort_size, batches_per_partition, seed,
        dataset_version, and for `tokens` the tokenizer's spec."""
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
        state["_meter"] = None  # a lock; a copy records into its own process's meter of the same token
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._meter = _meter_for(self._token)

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
        loop receives, so `state_dict()` says where to resume, and timing
        the loop's waits for `stats()`."""
        self._meter.start(self.epoch)
        iterator = iter(batches)
        while True:
            asked = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            # numpy, not torch: a torch reduction here starts an OpenMP team
            # that competes with the loader's threads for the cores.
            padding = batch["is_padding"].numpy()
            self._meter.consumed(len(padding) - int(np.count_nonzero(padding)), time.perf_counter() - asked)
            self.record(batch)
            yield batch
        if self._resume is not None and self._progress is not None and self._resume["epoch"] == self._progress["epoch"]:
            self._resume = None  # the resumed epoch is done

    def stats(self) -> EpochStats:
        """Where the current (or last) epoch's time went: the loop's waits
        for data, conversions, the server's pace, and the bottleneck."""
        return self._meter.report(self._workers(strict=False) * self.streams)

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
        state = {
            "version": STATE_VERSION,
            "epoch": progress["epoch"],
            "seed": self.request["seed"],
            "partitions": self.partitions,
            "next_batch": [int(progress["next_batch"].get(s, 0)) for s in range(slots)],
        }
        tokenizer = self._tokenizer_spec()
        if tokenizer is not None:
            state["tokenizer"] = tokenizer
        return state

    def _tokenizer_spec(self) -> dict | None:
        """For `tokens`, how the plan tokenizes: every parameter and the
        vocabulary's content hash (the plan's metadata)."""
        if self.request.get("format") != "tokens":
            return None
        return self.metadata["tokenizer"]

    def _one_stream_hint(self, state: dict) -> str:
        """For a checkpoint of a `num_workers=0` run from before `streams` defaulted to 2."""
        if self.num_workers == 0 and len(state["next_batch"]) == 1 and self.streams != 1:
            return (f" (this dataset reads {self.streams} streams, the default without workers; a checkpoint of a "
                    "run with one stream, the default before, resumes with CellDataset(..., streams=1))")  # fmt: skip
        return ""

    def load_state_dict(self, state: dict) -> None:
        """Resumes at `state` (from `state_dict`): the next pass is its epoch,
        each partition starting at its next batch."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"not a CellDataset state of version {STATE_VERSION}: {state!r}")
        if state["partitions"] != self.partitions or len(state["next_batch"]) != self.slots:
            raise ValueError(
                f"the state is for {state['partitions']} partitions ({len(state['next_batch'])} per rank); this dataset "
                f"has {self.partitions} ({self.slots} per rank): resume with the same world size, workers and streams"
                + self._one_stream_hint(state)
            )
        if state["seed"] != self.request["seed"]:
            raise ValueError(f"the state is for seed {state['seed']}, this dataset has seed {self.request['seed']}")
        theirs, mine = state.get("tokenizer"), self._tokenizer_spec()
        if theirs != mine:
            raise ValueError(
                f"the state's data was tokenized by {theirs}, this dataset tokenizes by {mine}: resume with the same "
                "tokenizer and vocabulary"
            )
        self.epoch = int(state["epoch"])
        self._resume = {"epoch": self.epoch, "next_batch": [int(k) for k in state["next_batch"]]}
        self._progress = None
