"""The data every loader reads, and the two ceilings that need no server:
page-cache memory bandwidth and cold sequential disk read.

Both ceilings are expressed in cells/s through a number of bytes per cell,
recorded beside them: for memory bandwidth, the bytes each cell's entries
take in the store ((index + value bytes) × mean nnz per cell, what a loader
must at least move); for the disk, the size of matrix.arrow over its cells
(what reading every cell once from disk costs, offsets included).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

ITEM_BYTES = {"uint8": 1, "uint16": 2, "uint32": 4, "float32": 4, "float64": 8}
READ_CHUNK = 16 << 20


def generate(cellflight: Path, dataset: Path, h5ad: Path, cells: int) -> None:
    """`cellflight generate --h5ad` once: the dataset and the .h5ad hold the
    same cells. An existing dataset of another size is an error rather than
    a silent mismatch with --cells."""
    manifest = dataset / "manifest.json"
    if manifest.exists() and h5ad.exists():
        found = json.loads(manifest.read_text())["n_cells"]
        if found != cells:
            raise SystemExit(f"{dataset} holds {found} cells, not {cells}: remove {dataset.parent} or pass --cells {found}")
        return
    dataset.parent.mkdir(parents=True, exist_ok=True)
    replace = ["--force"] if manifest.exists() else []
    subprocess.run([str(cellflight), "generate", str(dataset), "--cells", str(cells), "--h5ad", str(h5ad), *replace],
                   check=True)  # fmt: skip


def gzip_copy(source: Path, target: Path) -> None:
    """The same .h5ad with every non-scalar dataset gzip-compressed (h5py's
    default level 4, chunks chosen by h5py), as scanpy's
    `write_h5ad(compression="gzip")` writes it. Groups, datasets and
    attributes are copied one by one; large datasets in slabs, so memory
    stays bounded. Written to a temporary name and renamed, so an
    interrupted copy is not taken for a finished one."""
    import h5py

    if target.exists():
        return
    partial = target.with_name(target.name + ".partial")
    with h5py.File(source, "r") as src, h5py.File(partial, "w") as dst:
        dst.attrs.update(src.attrs)

        def copy(name, item):
            if isinstance(item, h5py.Group):
                dst.require_group(name).attrs.update(item.attrs)
                return
            if item.shape == () or item.size == 0:
                out = dst.create_dataset(name, data=item[()], dtype=item.dtype)
            else:
                out = dst.create_dataset(name, shape=item.shape, dtype=item.dtype, compression="gzip")
                step = max(1, (64 << 20) // max(1, item.dtype.itemsize * int(np.prod(item.shape[1:]))))
                for start in range(0, item.shape[0], step):
                    out[start : start + step] = item[start : start + step]
            out.attrs.update(item.attrs)

        src.visititems(copy)
    partial.rename(target)


def bytes_per_cell(dataset: Path) -> dict:
    """Per-cell sizes of the store, from its manifest and matrix.arrow."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    matrix = manifest["matrix"]
    nnz_per_cell = manifest["nnz"] / manifest["n_cells"]
    entry = ITEM_BYTES[matrix["index_type"]] + ITEM_BYTES[matrix["value_type"]]
    file_bytes = (dataset / "matrix.arrow").stat().st_size
    return {"n_cells": manifest["n_cells"], "nnz_per_cell": nnz_per_cell, "index_type": matrix["index_type"],
            "value_type": matrix["value_type"], "entry_bytes": entry, "payload_bytes_per_cell": entry * nnz_per_cell,
            "file_bytes": file_bytes, "file_bytes_per_cell": file_bytes / manifest["n_cells"]}  # fmt: skip


def drop_caches() -> str | None:
    """Empties the page cache (clean pages not mapped by a process); None if
    done, else why not (not root, or a container without the right)."""
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return None
    except OSError as error:
        return f"could not drop the page cache: {error}"


def warm(*paths: Path) -> None:
    """Reads files through the page cache so that warm measurements find them there."""
    for path in paths:
        subprocess.run(["cat", str(path)], check=True, stdout=subprocess.DEVNULL)


def sequential_read(path: Path) -> dict:
    """Reads the whole file once in 16 MiB reads (after drop_caches: from disk)."""
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    total = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        started = time.perf_counter()
        while n := os.readv(fd, [view]):
            total += n
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
    return {"bytes": total, "seconds": elapsed, "mb_per_s": total / 1e6 / elapsed}


def memory_bandwidth(path: Path, seconds: float) -> dict:
    """Copies slices of the memory-mapped, page-cached file into private
    buffers for `seconds`, with 1 thread and with one per core (numpy
    releases the GIL while copying); the higher rate is the ceiling."""
    source = np.memmap(path, dtype=np.uint8, mode="r")
    size = min(len(source), 256 << 20)
    rates = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        copied = [0] * threads
        deadline = time.perf_counter() + seconds
        span = size // threads

        def copy(i):
            target = np.empty(span, dtype=np.uint8)
            region = source[i * span : (i + 1) * span]
            while time.perf_counter() < deadline:
                np.copyto(target, region)
                copied[i] += span

        started = time.perf_counter()
        workers = [threading.Thread(target=copy, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        rates[threads] = sum(copied) / (time.perf_counter() - started)
    best = max(rates, key=rates.get)
    result = {"slice_bytes": size, "threads": best, "gb_per_s": rates[best] / 1e9,
              "gb_per_s_by_threads": {str(k): v / 1e9 for k, v in rates.items()}}  # fmt: skip
    if size < 64 << 20:
        result["warning"] = f"a {size / 2**20:.0f} MiB slice may stay in CPU caches: the rate is above memory's"
    return result
