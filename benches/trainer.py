"""What a PyTorch trainer gets, beside what the server sends (issue 15): in
one run, on the same dataset, cells/s of

- raw pyarrow on the stored CSR, and on the README's request (its 2-plate
  cohort, `genes_query="stat_mean > 0.5"`, normalize_total + log1p): the
  ceilings, 2 streams;
- `CellDataset` on the stored CSR with `num_workers=0` (its default 2
  streams) and with `num_workers=2` (a stream each), tensors in the
  training process;
- the README's training loop as written (a Linear over the selected genes,
  Adam, checkpoints), its pace as its `ds.stats()` lines print it;
- annbatch: not run, benches/peers has no setup for it (Python >= 3.12).

Each measurement runs in a process of its own (benches/peers/loaders.py, so
that no DataLoader worker is forked from a process holding gRPC
connections). Prints a markdown table and writes JSON (--out).

    python benches/trainer.py --address grpc://127.0.0.1:50051 --dataset demo --out docs/benchmarks-trainer.json
    python benches/trainer.py --bin $CARGO_TARGET_DIR/release --data /tmp/cf-bench --dataset demo

With --bin, `cellflight serve --data DATA` is started (and stopped) here;
`cellflight generate DATA/demo --cells 100000 --genes 20000` makes a
dataset of the size issue 15 measured. Figures of a debug build are not
comparable to anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "peers"))

import run as peers  # noqa: E402  (benches/peers/run.py: runs loaders.py on a spec)
import stream  # noqa: E402  (benches/stream.py, put on the path by run.py)

sys.path.insert(0, str(REPO / "tests" / "python"))
from test_docs import training_loop  # noqa: E402  (the README's loop, as test_docs runs it)

STORED = {"batch_size": 64, "block_size": 16, "fetch_factor": 64}
README_REQUEST = {
    "query": "plate IN ('plate1', 'plate2')", "genes_query": "stat_mean > 0.5",
    "transform": {"normalize_total": 1e4, "log1p": True}, "obs_columns": ["cell_line"], "batch_size": 64,
}  # fmt: skip
README_ADDRESS = "grpc://127.0.0.1:50051"
ANNBATCH_NOT_RUN = "not run: benches/peers has no annbatch setup (annbatch needs Python >= 3.12)"
STATS_LINE = re.compile(r"^epoch (\d+): ([\d,]+) cells in .*?\(([\d,]+) cells/s\)", re.MULTILINE)


def measure(spec: dict, args, ids_path: Path) -> dict:
    """One loader of benches/peers/loaders.py in its own process (which
    saves the ids of the batches it sampled at `ids_path`)."""
    spec = {"warmup": args.warmup, "seconds": args.seconds, "python_src": str(REPO / "python" / "src"),
            "ids_path": str(ids_path), **spec}  # fmt: skip
    return peers.run_loader(spec, args.warmup + args.seconds + peers.CHILD_GRACE)


def readme_loop(address: str, dataset: str, work: Path) -> dict:
    """The README's loop as written, against `dataset`: the pace of its
    last epoch, from the `ds.stats()` line it prints."""
    code = training_loop(REPO / "README.md").replace(README_ADDRESS, address).replace('"demo"', json.dumps(dataset))
    package = str(REPO / "python" / "src")  # this checkout's, as test_docs runs it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package, os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(dir=work) as cwd:
        done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    epochs = STATS_LINE.findall(done.stdout)
    if done.returncode != 0 or not epochs:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-400:]}"}
    _, cells, pace = epochs[-1]
    return {"cells": int(cells.replace(",", "")), "cells_per_s": float(pace.replace(",", "")),
            "stats": [line for line in done.stdout.splitlines() if STATS_LINE.match(line)]}  # fmt: skip


def rows(address: str, args, work: Path) -> list[dict]:
    stored = {"dataset": args.dataset, **STORED}
    readme = {"dataset": args.dataset, **README_REQUEST}
    pyarrow = {"kind": "cellflight-pyarrow", "address": address, "streams": 2}
    torch_loader = {"kind": "cellflight-torch", "address": address, "request": stored, "streams": None}
    loaders = [
        ({"path": "pyarrow", "request": "stored CSR", "setting": "2 streams"}, {**pyarrow, "request": stored}),
        ({"path": "pyarrow", "request": "README", "setting": "2 streams"}, {**pyarrow, "request": readme}),
        ({"path": "CellDataset", "request": "stored CSR", "setting": "num_workers=0 (2 streams)"},
         {**torch_loader, "num_workers": 0}),
        ({"path": "CellDataset", "request": "stored CSR", "setting": "num_workers=2 (a stream each)"},
         {**torch_loader, "num_workers": 2}),
    ]  # fmt: skip
    results = []
    for i, (row, spec) in enumerate(loaders):
        print(f"{row['path']}, {row['request']}, {row['setting']} ...", file=sys.stderr, flush=True)
        results.append({**row, **measure(spec, args, work / str(i)), "load_average": os.getloadavg()[0]})
    print("the README's loop ...", file=sys.stderr, flush=True)
    results.append({"path": "README loop (Linear + Adam)", "request": "README", "setting": "as written",
                    **readme_loop(address, args.dataset, work), "load_average": os.getloadavg()[0]})  # fmt: skip
    results.append({"path": "annbatch 0.3.1", "request": "stored CSR", "setting": "", "error": ANNBATCH_NOT_RUN})
    return results


def print_table(results: list[dict]) -> None:
    ceiling = {r["request"]: r.get("cells_per_s") for r in results if r["path"] == "pyarrow"}
    print("| path | request | setting | cells/s | vs pyarrow, same request |")
    print("|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['path']} | {r['request']} | {r['setting']} | {r['error']} | |")
            continue
        base = ceiling.get(r["request"])
        share = f"{r['cells_per_s'] / base:.0%}" if base else ""
        print(f"| {r['path']} | {r['request']} | {r['setting']} | {r['cells_per_s']:,.0f} | {share} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="of a running server, e.g. grpc://127.0.0.1:50051")
    parser.add_argument("--bin", type=Path, help="directory holding the cellflight binary, to start a server here")
    parser.add_argument("--data", type=Path, help="with --bin: the directory of datasets to serve")
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-trainer.json"))
    args = parser.parse_args()
    if (args.address is None) == (args.bin is None) or (args.bin is not None and args.data is None):
        parser.error("give --address, or --bin and --data")
    server, address = None, args.address
    if args.bin is not None:
        server, address = stream.start([str(args.bin / "cellflight"), "serve", "--data", str(args.data),
                                        "--listen", "127.0.0.1:0"])  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as work:
            results = rows(address, args, Path(work))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": stream.machine(), "command": sys.argv, "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results)


if __name__ == "__main__":
    main()
