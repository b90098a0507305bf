"""One loader, measured in a process of its own: `python loaders.py SPEC_JSON`.

run.py starts this script once per loader and setting, so that the peak RSS
it reports belongs to that loader alone (and to its DataLoader workers),
and so that a loader that fails to import or crashes costs only its row.

Every loader is a generator of `(cell_ids, payload_bytes)` per minibatch,
endless (epochs roll over), built from the loader's own public API the way
a training loop would use it; `measure` consumes it for a warm-up, then
counts for a fixed time. Payload bytes are what the trainer holds per
batch: the CSR column indices and values plus the cell ids (8 bytes a
cell), not the row offsets. The ids of up to `SAMPLED_BATCHES` batches are
saved (.npy, one array of ids and one of batch lengths) for run.py to
compute label entropies, so this process never loads the labels. Peak RSS
is this process's (RUSAGE_SELF) plus its DataLoader workers'.

Prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

SAMPLED_BATCHES = 2000
Batches = Iterator[tuple[np.ndarray, int]]


def cellflight_pyarrow(address: str, request: dict, streams: int) -> Batches:
    """The stream read with nothing but pyarrow.flight: the endpoints of one
    plan, each read by its own thread on its own connection, `cell_id`,
    `indices` and `values` as numpy arrays in hand. Each thread moves on to
    the next epoch (a new plan of the same request) when its endpoint ends.
    Not a generator itself: the import, the connection and a first plan (which
    the server caches) happen here, before the clock of a cold run starts."""
    import pyarrow.flight as flight

    first = json.dumps({**request, "partitions": streams, "epoch": 0})
    flight.connect(address).get_flight_info(flight.FlightDescriptor.for_command(first))
    return _read_endpoints(flight, address, request, streams)


def _read_endpoints(flight, address: str, request: dict, streams: int) -> Batches:
    out: queue.Queue = queue.Queue(maxsize=4 * streams)
    stop = threading.Event()
    errors: list[BaseException] = []

    def read(partition: int):
        try:
            client = flight.connect(address)
            for epoch in itertools.count():
                command = json.dumps({**request, "partitions": streams, "epoch": epoch})
                info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
                reader = client.do_get(info.endpoints[partition].ticket)
                for chunk in reader:
                    batch = chunk.data
                    ids = batch.column("cell_id").to_numpy()
                    indices = batch.column("indices").values.to_numpy()
                    values = batch.column("values").values.to_numpy()
                    item = (ids, ids.nbytes + indices.nbytes + values.nbytes)
                    while not stop.is_set():
                        try:
                            out.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            pass
                    if stop.is_set():
                        reader.cancel()
                        return
        except BaseException as error:  # raised in the consuming loop below
            errors.append(error)

    threads = [threading.Thread(target=read, args=(p,), daemon=True) for p in range(streams)]
    for t in threads:
        t.start()
    try:
        while True:
            try:
                yield out.get(timeout=0.1)
            except queue.Empty:
                if errors:
                    raise errors[0]
    finally:
        stop.set()


def cellflight_torch(address: str, request: dict, num_workers: int, streams: int) -> Batches:
    """`cellflight.torch.CellDataset` through `DataLoader(batch_size=None)`:
    what the trainer holds is a `torch.sparse_csr_tensor` (int32 indices,
    float32 values) and int64 cell ids, in the training process."""
    from torch.utils.data import DataLoader

    from cellflight.torch import CellDataset

    request = dict(request)
    dataset = request.pop("dataset")
    ds = CellDataset(address, dataset, num_workers=num_workers, streams=streams, **request)
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers, persistent_workers=num_workers > 0)
    for epoch in itertools.count():
        ds.set_epoch(epoch)  # persistent workers move on an epoch per pass by themselves
        for batch in loader:
            x = batch["X"]
            ids = batch["cell_id"].numpy()
            nbytes = x.col_indices().numel() * 4 + x.values().numel() * x.values().element_size() + ids.nbytes
            yield ids, nbytes


def scdataset(h5ad: str, strategy: str, block_size: int, fetch_factor: int, batch_size: int) -> Batches:
    """scDataset over `anndata.read_h5ad(backed="r")`, through
    `DataLoader(batch_size=None, num_workers=0)`. The fetch callback reads
    the fetch's rows as scipy CSR (`adata[indices].X`, as the annbatch paper's
    scDataset benchmark does) and keeps the row numbers beside them; the
    batch callback cuts both by the batch's positions in the fetch. (scDataset's
    `MultiIndexable` would do the same, but it needs len(), which scipy's
    sparse arrays refuse.) No batch is densified. Row i of the .h5ad is
    cell_id i."""
    import anndata
    from scdataset import BlockShuffling, Streaming, scDataset
    from torch.utils.data import DataLoader

    adata = anndata.read_h5ad(h5ad, backed="r")

    def fetch(collection, indices):
        return collection[indices].X, np.asarray(indices, dtype=np.int64)

    def cut(fetched, positions):
        x, ids = fetched
        return x[positions], ids[positions]

    if strategy == "BlockShuffling":
        sampling = BlockShuffling(block_size=block_size)
    elif strategy == "Streaming":
        sampling = Streaming()
    elif strategy == "Streaming(shuffle=True)":
        sampling = Streaming(shuffle=True)
    else:
        raise ValueError(f"unknown scDataset strategy {strategy!r}")
    ds = scDataset(adata, sampling, batch_size=batch_size, fetch_factor=fetch_factor, fetch_callback=fetch,
                   batch_callback=cut, seed=0)  # fmt: skip
    loader = DataLoader(ds, batch_size=None, num_workers=0)
    while True:  # scDataset moves on an epoch per pass by itself
        for x, ids in loader:
            ids = np.asarray(ids)  # the DataLoader made the numpy ids a tensor, sharing memory
            yield ids, x.indices.nbytes + x.data.nbytes + ids.nbytes


def annloader(h5ad: str, batch_size: int) -> Batches:
    """anndata's AnnLoader, random (`shuffle=True`), over the backed .h5ad.
    Its default converter would densify X into a torch tensor; it is turned
    off (`use_default_converter=False`) so that, as for the other loaders,
    the trainer gets CSR. The batch is an AnnCollection view: reading `.X`
    is what loads the rows."""
    import anndata
    from anndata.experimental import AnnLoader

    adata = anndata.read_h5ad(h5ad, backed="r")
    loader = AnnLoader(adata, batch_size=batch_size, shuffle=True, use_default_converter=False)
    while True:
        for view in loader:
            x = view.X
            ids = np.asarray(view.oidx, dtype=np.int64)
            yield ids, x.indices.nbytes + x.data.nbytes + ids.nbytes


ANNBATCH_ZARRS = {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}  # annbatch's README: needed on a local disk


def annbatch_store(h5ad: str, store: str, dataset_size: str) -> dict:
    """annbatch's pre-shuffled collection of the .h5ad's cells, written once
    (`DatasetCollection.add_adatas`, shuffle=True, its default chunking and
    compression); a store that exists is complete (it is built under a
    temporary name, then renamed) and is kept. Its writer holds the cells in
    memory several times over: `dataset_size` bounds that ("4GB", not the
    default 20GB, on a 24 GiB machine). The obs it writes holds one column,
    `cell_id` (the row number in the .h5ad), which is how a batch's cells are
    traced back once shuffled. Returns the build's seconds (also kept in the
    store's attributes)."""
    import shutil

    import zarr
    from annbatch import DatasetCollection

    done = Path(store)
    if done.exists():
        return {"cached": True, "seconds": zarr.open_group(done, mode="r").attrs.get("cellflight_build_seconds")}
    partial = done.with_name(done.name + ".partial.zarr")
    shutil.rmtree(partial, ignore_errors=True)
    zarr.config.set(ANNBATCH_ZARRS)
    started = time.perf_counter()
    DatasetCollection(partial).add_adatas([h5ad], load_adata=_x_and_cell_ids, dataset_size=dataset_size,
                                          rng=np.random.default_rng(0))  # fmt: skip
    seconds = time.perf_counter() - started
    zarr.open_group(partial, mode="r+").attrs["cellflight_build_seconds"] = seconds
    partial.rename(done)
    return {"cached": False, "seconds": seconds}


def _x_and_cell_ids(path):
    """The .h5ad as annbatch's writer should see it: X (lazy, as its default
    reader gives it), the var, and the row numbers as obs."""
    import anndata as ad
    import pandas as pd

    adata = ad.experimental.read_lazy(path)
    cell_ids = np.arange(adata.n_obs, dtype=np.int64)
    return ad.AnnData(X=adata.X, obs=pd.DataFrame({"cell_id": cell_ids}, index=cell_ids.astype(str)),
                      var=adata.var.to_memory())  # fmt: skip


def annbatch(store: str, batch_size: int, chunk_size: int, preload_nchunks: int) -> Batches:
    """annbatch's `Loader` over its collection (annbatch_store), iterated
    directly as its README does (no DataLoader: it reads with threads of its
    own). Random: it reads `preload_nchunks` random runs of `chunk_size`
    rows of the pre-shuffled store, then deals them out in batches. Its
    defaults are shuffle=False, chunk_size 512, preload_nchunks 32; the
    spec gives what its README shows (chunk 32, 256 chunks). `to` is left
    unset, so the batch's X is scipy CSR, as every peer delivers here; its
    obs carries the cell ids (X alone would be cheaper, but a trainer needs
    labels)."""
    import anndata as ad
    import zarr
    from annbatch import DatasetCollection, Loader

    zarr.config.set(ANNBATCH_ZARRS)

    def x_and_cell_ids(group):
        return ad.AnnData(X=ad.io.sparse_dataset(group["X"]), obs=ad.io.read_elem(group["obs"])[["cell_id"]])

    loader = Loader(batch_size=batch_size, chunk_size=chunk_size, preload_nchunks=preload_nchunks, shuffle=True,
                    rng=np.random.default_rng(0))  # fmt: skip
    loader.use_collection(DatasetCollection(store, mode="r"), load_adata=x_and_cell_ids)
    while True:  # each pass is an epoch, its order drawn anew from the rng
        for batch in loader:
            x, ids = batch["X"], batch["obs"]["cell_id"].to_numpy()
            yield ids, x.indices.nbytes + x.data.nbytes + ids.nbytes


def make(spec: dict) -> Batches:
    """The loader a spec names (see run.py for the specs)."""
    kind = spec["kind"]
    if kind == "cellflight-pyarrow":
        return cellflight_pyarrow(spec["address"], spec["request"], spec["streams"])
    if kind == "cellflight-torch":
        return cellflight_torch(spec["address"], spec["request"], spec["num_workers"], spec["streams"])
    if kind == "scdataset":
        return scdataset(spec["h5ad"], spec["strategy"], spec["block_size"], spec["fetch_factor"], spec["batch_size"])
    if kind == "annloader":
        return annloader(spec["h5ad"], spec["batch_size"])
    if kind == "annbatch":
        return annbatch(spec["store"], spec["batch_size"], spec["chunk_size"], spec["preload_nchunks"])
    raise ValueError(f"unknown loader kind {kind!r}")


def measure(batches: Batches, warmup: float, seconds: float, ids_path: Path, max_cells: int | None = None) -> dict:
    """Consumes a warm-up's worth of batches (imports, connections, the first
    fetches), then counts cells and payload bytes for `seconds`, or until
    `max_cells` (a cold run stops after one epoch: the next would find the
    cache warm). The clock is read after each batch, so a loader whose
    batches arrive in bursts (one fetch's worth at a time) is measured from
    the end of the warm-up to the end of the batch that crosses `seconds`."""
    it = iter(batches)
    started = time.perf_counter()
    if warmup > 0:
        for _ in it:
            if time.perf_counter() - started >= warmup:
                break
    cells = nbytes = count = 0
    sampled: list[np.ndarray] = []
    begin = time.perf_counter()
    for ids, size in it:
        cells += len(ids)
        nbytes += size
        count += 1
        if len(sampled) < SAMPLED_BATCHES:
            sampled.append(np.array(ids, dtype=np.int64))  # a copy: the batch's memory is not kept alive
        if time.perf_counter() - begin >= seconds or (max_cells and cells >= max_cells):
            break
    elapsed = time.perf_counter() - begin
    workers = workers_peak_rss_mib()
    it.close()  # stops reader threads and DataLoader workers
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    np.save(ids_path.with_suffix(".ids.npy"), np.concatenate(sampled) if sampled else np.zeros(0, np.int64))
    np.save(ids_path.with_suffix(".lengths.npy"), np.array([len(s) for s in sampled], dtype=np.int64))
    return {"seconds": elapsed, "cells": cells, "batches": count, "cells_per_s": cells / elapsed,
            "mb_per_s": nbytes / 1e6 / elapsed, "mean_batch": cells / count if count else 0,
            "rss_mib": own, "rss_workers_mib": workers, "peak_rss_mib": own + workers}  # fmt: skip


def workers_peak_rss_mib() -> float:
    """The summed peak resident sets (VmHWM) of this process's live children:
    the DataLoader workers, read while they run. (RUSAGE_CHILDREN would not
    do: it is the largest child ever waited for, and `import torch` runs a
    ~450 MiB helper process.) Pages a forked worker shares with its parent
    count in both, so the sum is an upper bound."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue  # ended meanwhile
            hwm = [line for line in status.splitlines() if line.startswith("VmHWM:")]
            total += int(hwm[0].split()[1]) / 1024 if hwm else 0
    return total


def main():
    spec = json.loads(sys.argv[1])
    if spec["kind"] == "annbatch-store":  # not a loader: the store the annbatch loader reads, built once
        print(json.dumps(annbatch_store(spec["h5ad"], spec["store"], spec["dataset_size"])), flush=True)
        return
    sys.path.insert(0, spec["python_src"])  # the cellflight package of this checkout
    figures = measure(make(spec), spec["warmup"], spec["seconds"], Path(spec["ids_path"]), spec.get("max_cells"))
    print(json.dumps(figures), flush=True)
    # gRPC and DataLoader threads may linger; the figures are out, so leave at once.
    os._exit(0)


if __name__ == "__main__":
    main()
