"""Serving from object storage (issue 16's benchmark), in one run.

One dataset, generated with the same seed twice: on local disk and in an
S3-compatible server (moto, started here, authentication on). Each is
served by a fresh `cellflight serve` (release build) with an empty block
cache, and read by pyarrow at batch 64, block 16, fetch 64, one stream:

- the server's first plan (a fresh server: the session, the cohort);
- cold: the server's first epoch (from S3, every block fetched from the
  store; the local matrix is in the page cache);
- warm: the next epochs, the blocks in the cache (and the page cache);
- S3 rows once direct and once through a proxy adding a round trip to
  every exchange (`latency_proxy.py`; `tc netem` needs sch_netem, which
  this kernel lacks);
- per row, from the server's metrics: GETs, GETs per fetch (a fetch is
  block × fetch cells), and bytes fetched from the store per byte sent;
- moto's own ceiling: 8 MiB and 128 KiB ranged GETs of the matrix object
  with boto3, 16 in flight (moto copies the whole object on every GET);
- failover: three replicas on 127.0.0.2–4 over a smaller S3 dataset
  (--failover-cells: moto's cost grows with the object), through the
  proxy, read through the Python package; the replica serving the
  stream is SIGKILLed, then (fresh replicas) SIGSTOPped, a fifth into the
  epoch: the longest wait for a batch after the loss (what the trainer
  sees; the batches already in flight arrive first) beside the median
  wait before it, and the epoch checked exactly once.

    cargo build --release -p cellflight
    python benches/object_store.py --bin $CARGO_TARGET_DIR/release

Writes JSON (--out) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.flight as flight

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benches"), str(ROOT / "tests" / "python"), str(ROOT / "python" / "src")]
import cellflight as cf  # noqa: E402
from cli import Cellflight  # noqa: E402
from replicas import three_replicas  # noqa: E402
from s3_server import free_port, start_s3_server  # noqa: E402
from stream import Reader, machine, plan  # noqa: E402

REQUEST = {"dataset": "cells", "batch_size": 64, "block_size": 16, "fetch_factor": 64, "partitions": 1, "seed": 1}
CELLS_PER_FETCH = REQUEST["block_size"] * REQUEST["fetch_factor"]
# Seconds: the client's failover_timeout in the failover rows, how long a
# replica may leave its keepalive pings unanswered before it counts as hung.
FAILOVER_TIMEOUT = 5.0


def metrics(port: int) -> dict[str, float]:
    """The server's Prometheus metrics, each summed over its labels."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            name = name.split("{", 1)[0]
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


class Server:
    """`cellflight serve` of `data` with a metrics port and its own cache."""

    def __init__(self, cellflight: Path, data: str, env: dict, cache_dir: Path):
        self.metrics_port = free_port()
        argv = [str(cellflight), "serve", "--data", data, "--listen", "127.0.0.1:0", "--cache-dir", str(cache_dir),
                "--metrics", f"127.0.0.1:{self.metrics_port}"]  # fmt: skip
        self.log = tempfile.NamedTemporaryFile("w+", prefix="cellflight-serve-", suffix=".log")
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        first = self.process.stdout.readline()
        if not first.startswith("cellflight listening on"):
            self.log.seek(0)
            raise RuntimeError(f"serve did not start: {first}{self.log.read()}")
        self.address = first.split()[-1]

    def metrics(self) -> dict[str, float]:
        return metrics(self.metrics_port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def read_epoch(address: str, epoch: int) -> tuple[float, int, int]:
    """One epoch read by pyarrow (numpy arrays in hand): seconds, cells, bytes."""
    measuring, stop = threading.Event(), threading.Event()
    measuring.set()
    reader = Reader(address, {**REQUEST, "epoch": epoch}, 0, measuring, stop, max_epochs=1)
    started = time.perf_counter()
    reader.start()
    reader.join()
    if reader.error is not None:
        raise RuntimeError(f"reading epoch {epoch} failed: {reader.error}")
    return reader.finished - started, reader.cells, reader.bytes


def cost(before: dict, after: dict, cells: int) -> dict:
    """What reading `cells` cost the server, from its metrics."""
    delta = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    gets, fetched = delta.get("cellflight_object_store_gets_total", 0), delta.get("cellflight_object_store_bytes_total", 0)
    sent = delta.get("cellflight_bytes_sent_total", 0)
    return {
        "gets": gets, "gets_per_fetch": gets / max(1.0, cells / CELLS_PER_FETCH),
        "bytes_fetched": fetched, "bytes_sent": sent, "fetched_per_sent": fetched / sent if sent else None,
        "blocks_from_cache": delta.get("cellflight_block_cache_hits_total", 0),
    }  # fmt: skip


def measure_source(label: str, server: Server, warm_epochs: int) -> list[dict]:
    """The first plan and first epoch of a fresh server (cold), then
    `warm_epochs` more."""
    started = time.perf_counter()
    plan(flight.connect(server.address), {**REQUEST, "epoch": 0})
    rows = [{"source": label, "first_plan_seconds": time.perf_counter() - started}]
    print(json.dumps(rows[0]), flush=True)
    for state, epochs in (("cold", [0]), ("warm", list(range(1, 1 + warm_epochs)))):
        before = server.metrics()
        seconds = cells = nbytes = 0
        for epoch in epochs:
            s, c, b = read_epoch(server.address, epoch)
            seconds, cells, nbytes = seconds + s, cells + c, nbytes + b
        row = {"source": label, "cache": state, "epochs": len(epochs), "seconds": seconds, "cells": cells,
               "cells_per_s": cells / seconds, "mb_per_s": nbytes / 1e6 / seconds,
               **cost(before, server.metrics(), cells)}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def start_proxy(target: str, rtt_ms: float) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, str(ROOT / "benches" / "latency_proxy.py"), "--target", target, "--rtt-ms", str(rtt_ms)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().split()[-1]


def moto_ceiling(s3, key: str) -> list[dict]:
    """Ranged GETs of `key` straight from moto, 16 in flight, as MB/s and GETs/s."""
    client = s3.client()
    size = client.head_object(Bucket=s3.bucket, Key=key)["ContentLength"]
    rows = []
    for length in (8 << 20, 128 << 10):
        starts = np.random.default_rng(0).integers(0, max(1, size - length), 64)

        def get(start):
            body = client.get_object(Bucket=s3.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")["Body"]
            return len(body.read())

        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            got = sum(pool.map(get, starts))
        seconds = time.perf_counter() - started
        rows.append({"get_bytes": length, "object_bytes": size, "gets_per_s": len(starts) / seconds,
                     "mb_per_s": got / 1e6 / seconds})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def failover(cellflight: Path, data: str, env: dict, caches: Path, lose: signal.Signals) -> dict:
    """Three replicas of `data`; the one serving the stream is sent `lose`
    once a fifth of the epoch has been read. The longest wait for a batch
    after that, the median one before, and whether the epoch was exactly
    once."""
    with three_replicas(Cellflight(cellflight), data, env=env, caches=caches / lose.name) as replicas:
        client = cf.connect(replicas[0].uri, failover_timeout=FAILOVER_TIMEOUT)
        loader = client.loader(**{k: v for k, v in REQUEST.items() if k != "partitions"}, streams=1)
        serving, total = loader.streams()[0].locations[0], loader.plan().total_records
        victim = next(r for r in replicas if r.uri == serving)
        lost = False
        seen, waits_before, waits_after = [], [], []
        last = time.monotonic()
        for batch in loader:
            now = time.monotonic()
            (waits_after if lost else waits_before).append(now - last)
            last = now
            seen.extend(batch.cell_id[~batch.is_padding].tolist())
            if not lost and len(seen) >= total // 5:
                victim.process.send_signal(lose)
                lost = True
                last = time.monotonic()
        exactly_once = len(seen) == len(set(seen)) == total
        row = {"lost": lose.name, "longest_wait_after": max(waits_after), "median_wait_before": float(np.median(waits_before)),
               "failover_timeout": FAILOVER_TIMEOUT, "cells": len(seen), "exactly_once": exactly_once}  # fmt: skip
        print(json.dumps(row), flush=True)
        return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, type=Path, help="directory of the release cellflight")
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--failover-cells", type=int, default=5_000)
    parser.add_argument("--rtt-ms", type=float, default=25)
    parser.add_argument("--warm-epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cf-bench/object-store"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks-object-store.json")
    args = parser.parse_args()
    cellflight = args.bin / "cellflight"
    subprocess.run(["rm", "-rf", str(args.work)], check=True)
    args.work.mkdir(parents=True)
    s3 = start_s3_server()
    try:
        results = run(args, cellflight, s3)
    finally:
        s3.process.terminate()
        s3.process.wait(timeout=30)
    report = {"machine": machine(), "request": REQUEST, "cells": args.cells, "failover_cells": args.failover_cells,
              "rtt_ms": args.rtt_ms, **results}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)


def generate(cellflight: Path, output: str, cells: int, env: dict | None = None) -> None:
    argv = [str(cellflight), "generate", output, "--cells", str(cells), "--seed", "7"]
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)


def run(args, cellflight: Path, s3) -> dict:
    local = args.work / "local"
    generate(cellflight, str(local / "cells"), args.cells)
    generate(cellflight, s3.url("bench", "cells"), args.cells, s3.env())
    generate(cellflight, s3.url("failover", "cells"), args.failover_cells, s3.env())
    subprocess.run(["cat", str(local / "cells" / "matrix.arrow")], check=True, stdout=subprocess.DEVNULL)
    matrix_key = next(k for k in s3.keys("bench/cells/v/") if k.endswith("matrix.arrow"))
    proxy, proxy_address = start_proxy(s3.endpoint.removeprefix("http://"), args.rtt_ms)
    with_rtt = {**s3.env(), "AWS_ENDPOINT": f"http://{proxy_address}"}
    sources = [
        ("local disk", str(local), None),
        ("S3 (moto)", s3.url("bench"), s3.env()),
        (f"S3 (moto) + {args.rtt_ms:g} ms RTT", s3.url("bench"), with_rtt),
    ]
    streams = []
    try:
        for i, (label, data, env) in enumerate(sources):
            server = Server(cellflight, data, env, args.work / f"cache-{i}")
            try:
                streams.extend(measure_source(label, server, args.warm_epochs))
            finally:
                server.stop()
        ceiling = moto_ceiling(s3, matrix_key)
        losses = [failover(cellflight, s3.url("failover"), with_rtt, args.work, lose)
                  for lose in (signal.SIGKILL, signal.SIGSTOP)]  # fmt: skip
    finally:
        proxy.terminate()
    return {"streams": streams, "moto_ceiling": ceiling, "failover": losses}


def print_tables(report: dict) -> None:
    print("| source | first plan (s) | cache | epochs | cells/s | MB/s | GETs | GETs per fetch | bytes fetched per byte sent |")
    print("|---|---|---|---|---|---|---|---|---|")
    first_plan = {}
    for r in report["streams"]:
        if "first_plan_seconds" in r:
            first_plan[r["source"]] = f"{r['first_plan_seconds']:.2f}"
            continue
        ratio = "" if r["fetched_per_sent"] is None else f"{r['fetched_per_sent']:.2f}"
        print(f"| {r['source']} | {first_plan.pop(r['source'], '')} | {r['cache']} | {r['epochs']} | {r['cells_per_s']:,.0f} | {r['mb_per_s']:,.0f} | "
              f"{r['gets']:,.0f} | {r['gets_per_fetch']:.1f} | {ratio} |")  # fmt: skip
    print()
    print("| moto ranged GET | GETs/s | MB/s |")
    print("|---|---|---|")
    for r in report["moto_ceiling"]:
        print(f"| {r['get_bytes'] >> 10} KiB of a {r['object_bytes'] / 1e6:.0f} MB object | {r['gets_per_s']:,.1f} | "
              f"{r['mb_per_s']:,.0f} |")  # fmt: skip
    print()
    print("| replica lost | longest wait for a batch after (s) | median wait before (s) | failover_timeout (s) | cells | exactly once |")
    print("|---|---|---|---|---|---|")
    for r in report["failover"]:
        print(f"| {r['lost']} | {r['longest_wait_after']:.2f} | {r['median_wait_before']:.4f} | {r['failover_timeout']:g} | "
              f"{r['cells']:,} | {r['exactly_once']} |")  # fmt: skip


if __name__ == "__main__":
    main()
