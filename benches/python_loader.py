"""Cells/s into Python through each layer of the Python package, beside raw
pyarrow, against a running server.

For a fixed time after a warm-up, with 1 and 4 streams, measures:

- `pyarrow`: the endpoints of one plan read in threads with pyarrow.flight,
  `cell_id`, `indices` and `values` as numpy arrays in hand (the ceiling);
- `Client.loader`: `cellflight.Client.loader(streams=k)`, numpy minibatches
  (`cellflight.Batch`) in hand;
- `CellDataset + DataLoader`: `cellflight.torch.CellDataset` +
  `DataLoader(num_workers=k, persistent_workers=True)`, one stream per
  worker, `torch.sparse_csr_tensor` minibatches in the training process;
- `CellDataset, no workers`: the same with `num_workers=0` and `streams=k`:
  the streams are read by the loader's threads in the training process, and
  no batch crosses a process boundary through shared memory.

Batch 64, block 16, fetch 64 by default; epochs roll over (seed 0, epoch
0, 1, ...) so a short dataset never runs dry. Prints a markdown table and
writes the figures as JSON.

    cellflight serve --data /tmp/cf-bench/tahoe_1m            # a release build
    python benches/python_loader.py --address grpc://127.0.0.1:50051 --dataset tahoe_1m --out docs/benchmarks-python.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import pyarrow.flight as flight

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "src"))

import cellflight  # noqa: E402


def timed(batches, warmup: float, seconds: float) -> dict:
    """Consumes `batches` (yielding (cells, bytes) per batch): warm-up, then
    counts for `seconds`."""
    started = time.perf_counter()
    it = iter(batches)
    for _ in it:
        if time.perf_counter() - started >= warmup:
            break
    cells = nbytes = count = 0
    begin = time.perf_counter()
    for n, b in it:
        cells += n
        nbytes += b
        count += 1
        if time.perf_counter() - begin >= seconds:
            break
    elapsed = time.perf_counter() - begin
    if hasattr(it, "close"):
        it.close()
    return {"seconds": elapsed, "cells": cells, "batches": count, "cells_per_s": cells / elapsed,
            "mb_per_s": nbytes / 1e6 / elapsed if nbytes else None}


def raw_pyarrow(address: str, request: dict, streams: int):
    """Endlessly: each epoch's endpoints read in threads, one connection each."""
    import queue

    out: queue.Queue = queue.Queue(maxsize=4 * streams)
    stop = threading.Event()

    def read(ticket):
        client = flight.connect(address)
        reader = client.do_get(ticket)
        for chunk in reader:
            if stop.is_set():
                reader.cancel()
                return
            batch = chunk.data
            batch.column("cell_id").to_numpy()
            batch.column("indices").values.to_numpy()
            batch.column("values").values.to_numpy()
            out.put((batch.num_rows, batch.nbytes))

    def epochs():
        client = flight.connect(address)
        epoch = 0
        try:
            while True:
                command = json.dumps({**request, "partitions": streams, "epoch": epoch})
                info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
                threads = [threading.Thread(target=read, args=(e.ticket,), daemon=True) for e in info.endpoints]
                for t in threads:
                    t.start()
                while any(t.is_alive() for t in threads) or not out.empty():
                    try:
                        yield out.get(timeout=0.05)
                    except queue.Empty:
                        pass
                epoch += 1
        finally:
            stop.set()

    return epochs()


def client_loader(address: str, dataset: str, request: dict, streams: int):
    loader = cellflight.connect(address).loader(dataset, streams=streams, **request)
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        for batch in loader:
            yield len(batch), batch.record_batch.nbytes
        epoch += 1


def cell_dataset(address: str, dataset: str, request: dict, workers: int, streams: int = 1):
    from torch.utils.data import DataLoader

    from cellflight.torch import CellDataset

    ds = CellDataset(address, dataset, num_workers=workers, streams=streams, **request)
    loader = DataLoader(ds, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    while True:  # persistent workers move on an epoch per pass
        for batch in loader:
            yield len(batch["cell_id"]), 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True, help="of a running server, e.g. grpc://127.0.0.1:50051")
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--fetch-factor", type=int, default=64)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-python.json"))
    args = parser.parse_args()

    request = {"batch_size": args.batch_size, "block_size": args.block_size, "fetch_factor": args.fetch_factor}
    results = []
    for streams in args.streams:
        for name, batches in [
            ("pyarrow", lambda: raw_pyarrow(args.address, {"dataset": args.dataset, **request}, streams)),
            ("Client.loader", lambda: client_loader(args.address, args.dataset, request, streams)),
            ("CellDataset + DataLoader", lambda: cell_dataset(args.address, args.dataset, request, streams)),
            ("CellDataset, no workers", lambda: cell_dataset(args.address, args.dataset, request, 0, streams)),
        ]:
            figures = timed(batches(), args.warmup, args.seconds)
            results.append({"path": name, "streams": streams, "dataset": args.dataset, **request, **figures,
                            "load_average": os.getloadavg()[0], "cores": os.cpu_count()})
            print(f"  {name}, {streams} streams: {figures['cells_per_s']:,.0f} cells/s", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"| path | streams | cells/s | vs pyarrow | load avg |")
    print("|---|---|---|---|---|")
    for r in results:
        base = next(x for x in results if x["path"] == "pyarrow" and x["streams"] == r["streams"])
        print(f"| {r['path']} | {r['streams']} | {r['cells_per_s']:,.0f} | {r['cells_per_s'] / base['cells_per_s']:.0%} | {r['load_average']:.1f} |")


if __name__ == "__main__":
    main()
