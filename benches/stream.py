"""Throughput and batch randomness of the training stream, into pyarrow.

Starts `cellflight serve` (release build) on a generated Tahoe-like dataset,
reads minibatches with pyarrow.flight for a fixed time after a warm-up, and
reports cells/s, MB/s and the mean per-minibatch Shannon entropy of `plate`
and `drug` (bits) beside true random (block_size 1). One or more streams
(partitions read in parallel threads), page cache warm.

    cargo build --release -p cellflight
    python benches/stream.py --bin target/release/cellflight --dataset /tmp/cf-bench/tahoe_1m

Generates the dataset (1M cells) if the directory does not exist.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.flight as flight
import pyarrow.parquet as pq


def entropy_bits(codes: np.ndarray) -> float:
    counts = np.bincount(codes)
    p = counts[counts > 0] / codes.size
    return float(-(p * np.log2(p)).sum())


def labels(dataset: Path, column: str) -> np.ndarray:
    """Per cell_id, the integer code of `column` (cells are stored in id order)."""
    table = pq.read_table(dataset / "cells.parquet", columns=["cell_id", column])
    assert (table.column("cell_id").to_numpy() == np.arange(table.num_rows)).all()
    values = table.column(column).to_pandas().astype(str).to_numpy()
    _, codes = np.unique(values, return_inverse=True)
    return codes


class Reader(threading.Thread):
    """Reads one endpoint until told to stop; counts cells and bytes after warm-up."""

    def __init__(self, address, ticket, plate, drug, measuring: threading.Event, stop: threading.Event):
        super().__init__(daemon=True)
        self.address, self.ticket = address, ticket
        self.plate, self.drug = plate, drug
        self.measuring, self.stop = measuring, stop
        self.cells = self.bytes = 0
        # Cell ids of the first minibatches; entropies are computed after the
        # timed window, so the measurement is the loader's, not numpy's.
        self.sampled_ids: list = []

    def run(self):
        client = flight.connect(self.address)
        for chunk in client.do_get(self.ticket):
            if self.stop.is_set():
                break
            if not self.measuring.is_set():
                continue
            batch = chunk.data
            ids = batch.column("cell_id").to_numpy()
            # Numpy arrays in hand, as a trainer would have them.
            batch.column("indices").values.to_numpy()
            batch.column("values").values.to_numpy()
            self.cells += batch.num_rows
            self.bytes += batch.nbytes
            if len(self.sampled_ids) < 2000:
                self.sampled_ids.append(ids)


def measure(address, request, plate, drug, warmup, seconds) -> dict:
    client = flight.connect(address)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))
    measuring, stop = threading.Event(), threading.Event()
    readers = [Reader(address, e.ticket, plate, drug, measuring, stop) for e in info.endpoints]
    for r in readers:
        r.start()
    time.sleep(warmup)
    measuring.set()
    started = time.perf_counter()
    time.sleep(seconds)
    cells, nbytes = sum(r.cells for r in readers), sum(r.bytes for r in readers)
    elapsed = time.perf_counter() - started
    stop.set()
    ids = [i for r in readers for i in r.sampled_ids]
    ent = np.array([(entropy_bits(plate[i]), entropy_bits(drug[i])) for i in ids])
    return {
        "request": request, "streams": len(readers), "seconds": elapsed,
        "cells_per_s": cells / elapsed, "mb_per_s": nbytes / 1e6 / elapsed,
        "plate_entropy": float(ent[:, 0].mean()), "drug_entropy": float(ent[:, 1].mean()),
        "load_average": os.getloadavg()[0],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-stream.json"))
    args = parser.parse_args()
    if not args.dataset.exists():
        subprocess.run([args.bin, "generate", str(args.dataset), "--cells", str(args.cells)], check=True)
    subprocess.run(["cat", str(args.dataset / "matrix.arrow")], check=True, stdout=subprocess.DEVNULL)
    plate, drug = labels(args.dataset, "plate"), labels(args.dataset, "drug")
    server = subprocess.Popen([args.bin, "serve", "--data", str(args.dataset), "--listen", "127.0.0.1:0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    address = server.stdout.readline().split()[-1]
    settings = [
        {"batch_size": 64, "block_size": 16, "fetch_factor": 64},
        {"batch_size": 64, "block_size": 16, "fetch_factor": 256},
        {"batch_size": 64, "block_size": 1, "fetch_factor": 64},
        {"batch_size": 64, "block_size": 16, "fetch_factor": 64, "partitions": 4},
    ]
    try:
        results = [measure(address, s, plate, drug, args.warmup, args.seconds) for s in settings]
    finally:
        server.terminate()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"| block | fetch | streams | cells/s | MB/s | plate entropy (max {np.log2(plate.max() + 1):.2f}) | drug entropy (max {np.log2(drug.max() + 1):.2f}) | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        q = r["request"]
        print(f"| {q['block_size']} | {q['fetch_factor']} | {r['streams']} | {r['cells_per_s']:,.0f} | {r['mb_per_s']:,.0f} | {r['plate_entropy']:.2f} | {r['drug_entropy']:.2f} | {r['load_average']:.1f} |")


if __name__ == "__main__":
    main()
