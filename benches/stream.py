"""Throughput and batch randomness of the training stream, beside the
transport ceiling, in one run (issue 4's benchmark).

Starts `cellflight serve` (release build) on a generated Tahoe-like dataset
(page cache warm) and measures, each for a fixed time after a warm-up:

- the stream into pyarrow (numpy arrays in hand) and into the Rust client
  (`cellflight-bench stream`), with 1 and 4 streams, at batch 64, block 16,
  fetch 64 and 256, and block 1 (true random, for the entropy reference);
- the transport ceiling: `cellflight-bench replay` (this server's tonic /
  arrow-flight stack re-sending one real minibatch, no sampling, no I/O)
  and pyarrow's own C++ Flight server re-sending the same batch, both read
  by pyarrow;
- the mean per-minibatch Shannon entropy (bits) of `plate` and `drug`;
- cold: the page cache dropped and a fresh server, pyarrow at block 16 /
  fetch 64 and at block 1 over one epoch (at most 20 s), beside the disk's
  sequential read rate of the matrix (needs root to drop caches).

    cargo build --release -p cellflight -p cellflight-client
    python benches/stream.py --bin $CARGO_TARGET_DIR/release --dataset /tmp/cf-bench/tahoe_1m

Generates the dataset (1M cells × 62,710 genes) if the directory does not
exist. Writes JSON (--out) and prints a markdown table.

With `--baseline DIR` (another build's release binaries, e.g. the previous
commit's), it runs only a regression check instead: pyarrow at batch 64,
block 16, fetch 64, one stream, against a server of each build in turn,
alternating for `--rounds` rounds, and reports the medians and their ratio.

    python benches/stream.py --bin NEW/release --baseline OLD/release \
        --dataset /tmp/cf-bench/tahoe_1m --out /tmp/stream-regression.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import sys

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import ceilings  # noqa: E402  (drop_caches, sequential_read: shared with benches/peers)

# Longest a cold read runs (it stops earlier at the end of its epoch).
COLD_SECONDS = 20


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
    """Reads partition `partition` of `request`, epoch after epoch, until told
    to stop; counts cells and bytes while measuring. Epochs roll over so the
    stream never runs dry while the clock runs: an epoch of 1M cells lasts
    about 5 s at the rates measured here."""

    def __init__(self, address, request, partition, measuring: threading.Event, stop: threading.Event, max_epochs=None):
        super().__init__(daemon=True)
        self.address, self.request, self.partition = address, request, partition
        self.measuring, self.stop, self.max_epochs = measuring, stop, max_epochs
        self.cells = self.bytes = self.epochs = 0
        self.sampled_ids: list = []
        self.error = None
        self.finished: float | None = None  # perf_counter() when max_epochs were read

    def run(self):
        try:
            client = flight.connect(self.address)
            for epoch in itertools.count(self.request.get("epoch", 0)):
                if self.read(client, plan(client, {**self.request, "epoch": epoch}).endpoints[self.partition]):
                    return
                self.epochs += 1
                if self.epochs == self.max_epochs:
                    self.finished = time.perf_counter()
                    return
        except Exception as error:  # reported by measure_pyarrow
            self.error = error

    def read(self, client, endpoint) -> bool:
        """Reads one epoch of the partition; True when told to stop."""
        for chunk in client.do_get(endpoint.ticket):
            if self.stop.is_set():
                return True
            batch = chunk.data
            ids = in_hand(batch)
            if self.measuring.is_set():
                self.cells += batch.num_rows
                self.bytes += batch.nbytes
                if len(self.sampled_ids) < 2000:
                    # A copy: a view would keep the whole message alive.
                    self.sampled_ids.append(ids.copy())
        return False


def in_hand(batch: pa.RecordBatch) -> np.ndarray:
    """Numpy arrays in hand, as a trainer would have them: the cell ids and
    the items of every list column (`indices` and `values` of csr, `x` of
    dense, `input_ids`, `values` and `attention_mask` of tokens)."""
    for column in batch.columns:
        if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
            column.values.to_numpy(zero_copy_only=False)
    return batch.column("cell_id").to_numpy()


def plan(client, request) -> flight.FlightInfo:
    return client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))


def timed(readers, warmup, seconds, measuring, stop) -> tuple[float, int, int]:
    for r in readers:
        r.start()
    time.sleep(warmup)
    measuring.set()
    started = time.perf_counter()
    time.sleep(seconds)
    cells, nbytes = sum(r.cells for r in readers), sum(r.bytes for r in readers)
    elapsed = time.perf_counter() - started
    stop.set()
    errors = [r.error for r in readers if r.error is not None]
    if errors:
        raise RuntimeError(f"a reader failed: {errors[0]}")
    return elapsed, cells, nbytes


def measure_pyarrow(address, request, warmup, seconds, plate=None, drug=None) -> dict:
    measuring, stop = threading.Event(), threading.Event()
    readers = [Reader(address, request, p, measuring, stop) for p in range(request.get("partitions", 1))]
    elapsed, cells, nbytes = timed(readers, warmup, seconds, measuring, stop)
    return pyarrow_result(readers, request, elapsed, cells, nbytes, plate, drug)


def pyarrow_result(readers, request, elapsed, cells, nbytes, plate=None, drug=None) -> dict:
    """`readers` delivered `cells` in `nbytes` in `elapsed` seconds; with the
    labels given, the sampled cells' mean per-minibatch entropy too."""
    result = {
        "client": "pyarrow", "request": request, "streams": len(readers), "seconds": elapsed,
        "cells_per_s": cells / elapsed, "mb_per_s": nbytes / 1e6 / elapsed, "load_average": os.getloadavg()[0],
        "epochs_completed": sum(r.epochs for r in readers),
    }  # fmt: skip
    if plate is not None:
        ids = [i for r in readers for i in r.sampled_ids]
        result["plate_entropy"] = float(np.mean([entropy_bits(plate[i]) for i in ids]))
        result["drug_entropy"] = float(np.mean([entropy_bits(drug[i]) for i in ids]))
    return result


def measure_rust(bench, address, request, streams, warmup, seconds) -> dict:
    out = subprocess.run(
        [str(bench), "stream", "--address", address, "--request", json.dumps(request), "--streams", str(streams),
         "--warmup", str(warmup), "--seconds", str(seconds)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    result["load_average"] = os.getloadavg()[0]
    return result


class RepeatServer(flight.FlightServerBase):
    """pyarrow's C++ Flight server sending one batch again and again."""

    def __init__(self, batch: pa.RecordBatch):
        super().__init__("grpc://127.0.0.1:0")
        self.batch = batch

    def get_flight_info(self, context, descriptor):
        endpoints = [flight.FlightEndpoint(b"repeat", [])] * json.loads(descriptor.command).get("partitions", 1)
        return flight.FlightInfo(self.batch.schema, descriptor, endpoints, -1, -1)

    def do_get(self, context, ticket):
        reader = pa.RecordBatchReader.from_batches(self.batch.schema, itertools.repeat(self.batch))
        return flight.RecordBatchStream(reader)


def serve_repeat(batch_bytes: bytes, ready):
    batch = pa.ipc.open_stream(batch_bytes).read_next_batch()
    server = RepeatServer(batch)
    ready.put(server.port)
    server.serve()


def first_minibatch(address, request) -> pa.RecordBatch:
    client = flight.connect(address)
    info = plan(client, request)
    return next(iter(client.do_get(info.endpoints[0].ticket))).data


def start(argv) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return process, process.stdout.readline().split()[-1]


def machine() -> dict:
    return {
        "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), ""),
        "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(), "pyarrow": pa.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, type=Path, help="directory of the release cellflight and cellflight-bench")
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-stream.json"))
    parser.add_argument("--baseline", type=Path, help="directory of another build's cellflight: a regression check only")
    parser.add_argument("--rounds", type=int, default=3, help="with --baseline: rounds of each build")
    args = parser.parse_args()
    cellflight, bench = args.bin / "cellflight", args.bin / "cellflight-bench"
    if not args.dataset.exists():
        subprocess.run([str(cellflight), "generate", str(args.dataset), "--cells", str(args.cells)], check=True)
    subprocess.run(["cat", str(args.dataset / "matrix.arrow")], check=True, stdout=subprocess.DEVNULL)
    if args.baseline is not None:
        return regression_check(args)
    plate, drug = labels(args.dataset, "plate"), labels(args.dataset, "drug")
    server, address = start([str(cellflight), "serve", "--data", str(args.dataset), "--listen", "127.0.0.1:0"])
    w, s = args.warmup, args.seconds
    results = []
    try:
        for block, fetch in [(16, 64), (16, 256), (1, 64)]:
            base = {"batch_size": 64, "block_size": block, "fetch_factor": fetch}
            for streams in (1, 4):
                request = {**base, "partitions": streams}
                results.append(measure_pyarrow(address, request, w, s, plate, drug))
                print(json.dumps(results[-1]), flush=True)
                results.append(measure_rust(bench, address, base, streams, w, s))
                print(json.dumps(results[-1]), flush=True)
        ceiling_request = {"batch_size": 64, "block_size": 16, "fetch_factor": 64}
        replay, replay_address = start([str(bench), "replay", "--source", address, "--request", json.dumps(ceiling_request)])
        try:
            result = measure_pyarrow(replay_address, ceiling_request, w, s)
            results.append({**result, "client": "pyarrow", "ceiling": "cellflight-bench replay (tonic)"})
            print(json.dumps(results[-1]), flush=True)
        finally:
            replay.terminate()
        batch = first_minibatch(address, ceiling_request)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        ready = multiprocessing.Queue()
        repeat = multiprocessing.Process(target=serve_repeat, args=(sink.getvalue().to_pybytes(), ready), daemon=True)
        repeat.start()
        try:
            port = ready.get(timeout=30)
            result = measure_pyarrow(f"grpc://127.0.0.1:{port}", ceiling_request, w, s)
            results.append({**result, "ceiling": "pyarrow C++ Flight server"})
            print(json.dumps(results[-1]), flush=True)
        finally:
            repeat.terminate()
    finally:
        server.terminate()
    results.extend(measure_cold(cellflight, args.dataset, plate, drug))
    args.out.write_text(json.dumps({"machine": machine(), "dataset": str(args.dataset), "results": results}, indent=2) + "\n")
    print_table(results, plate, drug)


def regression_check(args) -> None:
    """pyarrow at block 16 / fetch 64 against a server of `--baseline`, then
    one of `--bin`, alternating, so that both see the same machine state (the
    entropies check that both builds sample alike)."""
    request = {"batch_size": 64, "block_size": 16, "fetch_factor": 64, "partitions": 1}
    builds = {"baseline": args.baseline / "cellflight", "new": args.bin / "cellflight"}
    plate, drug = labels(args.dataset, "plate"), labels(args.dataset, "drug")
    rounds = {name: [] for name in builds}
    for _ in range(args.rounds):
        for name, exe in builds.items():
            server, address = start([str(exe), "serve", "--data", str(args.dataset), "--listen", "127.0.0.1:0"])
            try:
                result = measure_pyarrow(address, request, args.warmup, args.seconds, plate, drug)
            finally:
                server.terminate()
                server.wait()
            rounds[name].append(result["cells_per_s"])
            print(json.dumps({"build": name, **result}), flush=True)
    medians = {name: float(np.median(values)) for name, values in rounds.items()}
    report = {
        "machine": machine(), "dataset": str(args.dataset), "request": request, "builds": {k: str(v) for k, v in builds.items()},
        "cells_per_s": rounds, "median": medians, "ratio_new_to_baseline": medians["new"] / medians["baseline"],
    }  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"median cells/s: baseline {medians['baseline']:,.0f}, new {medians['new']:,.0f}, "
          f"ratio {report['ratio_new_to_baseline']:.3f}")  # fmt: skip


def measure_cold(cellflight: Path, dataset: Path, plate, drug) -> list[dict]:
    """The page cache dropped: the matrix read sequentially (the disk's
    rate), then, dropped again and with a fresh server each, pyarrow at
    block 16 / fetch 64 and block 1 over the first epoch."""
    matrix = dataset / "matrix.arrow"
    why = ceilings.drop_caches()
    if why:
        return [{"cold": "not measured", "reason": why}]
    read = ceilings.sequential_read(matrix)
    n_cells = len(plate)
    results = [{"ceiling": "cold sequential read of matrix.arrow", "client": "read(2)", "streams": 1,
                "request": {"block_size": "", "fetch_factor": ""}, "seconds": read["seconds"],
                "cells_per_s": n_cells / read["seconds"], "mb_per_s": read["mb_per_s"],
                "load_average": os.getloadavg()[0], "cold": True}]  # fmt: skip
    for block in (16, 1):
        ceilings.drop_caches()
        server, address = start([str(cellflight), "serve", "--data", str(dataset), "--listen", "127.0.0.1:0"])
        try:
            request = {"batch_size": 64, "block_size": block, "fetch_factor": 64, "partitions": 1}
            results.append({**cold_epoch(address, request, plate, drug), "cold": True})
        finally:
            server.terminate()
        print(json.dumps(results[-1]), flush=True)
    subprocess.run(["cat", str(matrix)], check=True, stdout=subprocess.DEVNULL)  # warm again for what follows
    return results


def cold_epoch(address, request, plate, drug) -> dict:
    """Partition 0 read from its first batch to the end of the epoch, or for
    COLD_SECONDS if that comes first: a second epoch would find the first
    one's pages cached."""
    measuring, stop = threading.Event(), threading.Event()
    measuring.set()
    reader = Reader(address, request, 0, measuring, stop, max_epochs=1)
    started = time.perf_counter()
    reader.start()
    reader.join(COLD_SECONDS)
    stop.set()
    elapsed = (reader.finished or time.perf_counter()) - started
    if reader.error is not None:
        raise RuntimeError(f"the cold reader failed: {reader.error}")
    return pyarrow_result([reader], request, elapsed, reader.cells, reader.bytes, plate, drug)


def print_table(results, plate, drug):
    print(f"| source | client | block | fetch | streams | cells/s | MB/s | plate entropy (max {np.log2(plate.max() + 1):.2f}) "
          f"| drug entropy (max {np.log2(drug.max() + 1):.2f}) | load avg |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        q = r["request"]
        if r.get("cold") == "not measured":
            print(f"| cold | | | | | {r['reason']} | | | | |")
            continue
        source = r.get("ceiling", "cellflight serve") + (" (cold)" if r.get("cold") is True and "ceiling" not in r else "")
        entropy = lambda key: f"{r[key]:.2f}" if key in r else ""
        print(f"| {source} | {r['client']} | {q['block_size']} | {q['fetch_factor']} | {r['streams']} | {r['cells_per_s']:,.0f} "
              f"| {r['mb_per_s']:,.0f} | {entropy('plate_entropy')} | {entropy('drug_entropy')} | {r['load_average']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
