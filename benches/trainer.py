"""What a PyTorch trainer gets, beside what the server sends (issue 15): in
one run, on the same dataset, cells/s of

- raw pyarrow on the stored CSR, and on the README's request (its 2-plate
  cohort, `genes_query="stat_mean > 0.5"`, normalize_total + log1p): the
  ceilings, 2 streams;
- `CellDataset` on the stored CSR with `num_workers=0` (its default 2
  streams) and with `num_workers=2` (a stream each), tensors in the
  training process;
- the README's training loop as written (a Linear over the selected genes,
  Adam, checkpoints), its pace as its `ds.stats()` lines print it, and the
  same loop minus the model (see `without_model` for exactly what goes);
- the peers, on the same cells as an .h5ad (--h5ad: the file the dataset
  was ingested from, or made beside it by `cellflight generate --h5ad`),
  batch 64, scipy CSR: scDataset (`BlockShuffling(16)`, fetch 64) and
  AnnLoader over the backed .h5ad, and annbatch 0.3.1 over the pre-shuffled
  zarr copy it writes of the .h5ad (built once, beside it, before any
  clock: --annbatch-store). annbatch runs in a venv of its own
  (`benches/peers/install_annbatch.sh VENV`, then --annbatch-python
  VENV/bin/python): it declares Python >= 3.12. scDataset and AnnLoader
  run in that venv too (it has them), unless --peers-python says otherwise.

With --data, each row also gets the mean per-minibatch entropy of `plate`
(bits) over the batches it sampled.

Each measurement runs in a process of its own (benches/peers/loaders.py, so
that no DataLoader worker is forked from a process holding gRPC
connections). Prints a markdown table and writes JSON (--out).

    python benches/trainer.py --address grpc://127.0.0.1:50051 --dataset demo --out docs/benchmarks-trainer.json
    python benches/trainer.py --bin $CARGO_TARGET_DIR/release --data /tmp/cf-bench --dataset demo \\
        --h5ad /tmp/cf-bench/demo.h5ad --annbatch-python /tmp/venv-annbatch/bin/python

With --bin, `cellflight serve --data DATA` is started (and stopped) here;
`cellflight generate DATA/demo --cells 100000 --genes 20000 --h5ad DATA/demo.h5ad`
makes a dataset of the size issue 15 measured, and its .h5ad. Figures of a debug build are not
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

STORED = {"batch_size": peers.BATCH, "block_size": 16, "fetch_factor": 64}
README_REQUEST = {
    "query": "plate IN ('plate1', 'plate2')", "genes_query": "stat_mean > 0.5",
    "transform": {"normalize_total": 1e4, "log1p": True}, "obs_columns": ["cell_line"], "batch_size": 64,
}  # fmt: skip
README_ADDRESS = "grpc://127.0.0.1:50051"
NEEDS_H5AD = "not run: give --h5ad (the dataset's cells as an .h5ad)"
NEEDS_ANNBATCH = "not run: give --annbatch-python (set up by benches/peers/install_annbatch.sh VENV)"
STATS_LINE = re.compile(r"^epoch (\d+): ([\d,]+) cells in .*?\(([\d,]+) cells/s\)", re.MULTILINE)
# What "minus the model" takes out of the README's loop, line by line; each
# pattern must match once, so a change to the README fails here, loudly.
WITHOUT_MODEL = [
    ("the model", r"^model = .*\n", ""),
    ("the optimizer", r"^optimizer = .*\n", ""),
    ("the resume, which restores model and optimizer (a fresh directory has no checkpoint to resume)",
     r"^if os\.path\.exists\(.*\n(?:    .*\n)+", ""),
    ("the forward pass and loss: the batch's X and labels are taken, as the model would take them",
     r"loss = torch\.nn\.functional\.cross_entropy\(model\((.*?)\), (.*?)\)$", r"x, labels = \1, \2"),
    ("the backward pass and the optimizer step",
     r"^ *optimizer\.zero_grad\(\), loss\.backward\(\), optimizer\.step\(\)\n", ""),
    ("the loss from the progress line", r" loss \{loss\.item\(\):\.3f\}", ""),
    ("model and optimizer from the checkpoint (the data's state stays)",
     r'"model": model\.state_dict\(\), "optimizer": optimizer\.state_dict\(\), ', ""),
]  # fmt: skip


def measure(spec: dict, args, ids_path: Path) -> dict:
    """One loader of benches/peers/loaders.py in its own process (which
    saves the ids of the batches it sampled at `ids_path`)."""
    spec = {"warmup": args.warmup, "seconds": args.seconds, "python_src": str(REPO / "python" / "src"),
            "ids_path": str(ids_path), **spec}  # fmt: skip
    return peers.run_loader(spec, args.warmup + args.seconds + peers.CHILD_GRACE)


def without_model(code: str) -> str:
    """The README's loop with WITHOUT_MODEL applied: the CellDataset, the
    DataLoader, the epoch loop, track(), the data's checkpoint and
    `print(ds.stats())` stay."""
    for what, pattern, replacement in WITHOUT_MODEL:
        code, count = re.subn(pattern, replacement, code, flags=re.MULTILINE)
        if count != 1:
            raise SystemExit(f"the README's loop changed: {count} matches for {what!r}")
    return code


def readme_loop(address: str, dataset: str, work: Path, minus_model: bool = False) -> dict:
    """The README's loop as written (or without its model), against
    `dataset`: the pace of its last epoch, from the `ds.stats()` line it
    prints."""
    code = training_loop(REPO / "README.md").replace(README_ADDRESS, address).replace('"demo"', json.dumps(dataset))
    if minus_model:
        code = without_model(code)
    package = str(REPO / "python" / "src")  # this checkout's, as test_docs runs it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package, os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(dir=work) as cwd:
        done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    epochs = STATS_LINE.findall(done.stdout)
    if done.returncode != 0 or not epochs:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-400:]}"}
    _, cells, pace = epochs[-1]
    return {"cells": int(cells.replace(",", "")), "cells_per_s": float(pace.replace(",", "")),
            "stats": [line for line in done.stdout.splitlines() if STATS_LINE.match(line)],
            **({"code": code} if minus_model else {})}  # fmt: skip


def cellflight_loaders(address: str, dataset: str) -> list[tuple[dict, dict]]:
    stored = {"dataset": dataset, **STORED}
    readme = {"dataset": dataset, **README_REQUEST}
    pyarrow = {"kind": "cellflight-pyarrow", "address": address, "streams": 2}
    torch_loader = {"kind": "cellflight-torch", "address": address, "request": stored, "streams": None}
    return [
        ({"path": "pyarrow", "request": "stored CSR", "setting": "2 streams"}, {**pyarrow, "request": stored}),
        ({"path": "pyarrow", "request": "README", "setting": "2 streams"}, {**pyarrow, "request": readme}),
        ({"path": "CellDataset", "request": "stored CSR", "setting": "num_workers=0 (2 streams)"},
         {**torch_loader, "num_workers": 0}),
        ({"path": "CellDataset", "request": "stored CSR", "setting": "num_workers=2 (a stream each)"},
         {**torch_loader, "num_workers": 2}),
    ]  # fmt: skip


def peer_loaders(args) -> list[tuple[dict, dict | str]]:
    """The peers' rows, each with its spec, or why it is not run. annbatch's
    store is built here (or found) before any clock runs."""
    scdataset = {"path": "scDataset 0.3.0", "request": "stored CSR (.h5ad)", "setting": "block 16 / fetch 64"}
    annloader = {"path": "AnnLoader", "request": "stored CSR (.h5ad)", "setting": "random"}
    annbatch = {"path": "annbatch 0.3.1", "request": "stored CSR (its zarr copy)", "setting": peers.ANNBATCH_SETTING}
    if args.h5ad is None:
        return [(scdataset, NEEDS_H5AD), (annloader, NEEDS_H5AD), (annbatch, NEEDS_H5AD)]
    h5ad = {"h5ad": str(args.h5ad), "batch_size": peers.BATCH, "python": str(args.peers_python)}
    loaders = [
        (scdataset, {"kind": "scdataset", "strategy": "BlockShuffling", "block_size": 16, "fetch_factor": 64, **h5ad}),
        (annloader, {"kind": "annloader", **h5ad}),
    ]
    if args.annbatch_python is None:
        return [*loaders, (annbatch, NEEDS_ANNBATCH)]
    spec, built = peers.prepared_annbatch(str(args.annbatch_python), args.h5ad, args.annbatch_store)
    if spec is None:
        return [*loaders, (annbatch, f"its store: {built['error']}")]
    annbatch["store_build_seconds"], annbatch["store_cached"] = built["seconds"], built["cached"]
    return [*loaders, (annbatch, spec)]


def rows(address: str, args, work: Path) -> list[dict]:
    plate_and_drug = labels(args) if args.data is not None else None
    results = []
    for i, (row, spec) in enumerate([*cellflight_loaders(address, args.dataset), *peer_loaders(args)]):
        if isinstance(spec, str):
            results.append({**row, "error": spec})
            continue
        print(f"{row['path']}, {row['request']}, {row['setting']} ...", file=sys.stderr, flush=True)
        result = measure(spec, args, work / str(i))
        if plate_and_drug is not None and "error" not in result:
            result.update(peers.entropies(work / str(i), *plate_and_drug))
        results.append({**row, **result, "load_average": os.getloadavg()[0]})
    for path, setting in [("README loop (Linear + Adam)", "as written"), ("README loop", "minus the model")]:
        print(f"the README's loop, {setting} ...", file=sys.stderr, flush=True)
        loop = readme_loop(address, args.dataset, work, minus_model=setting == "minus the model")
        results.append({"path": path, "request": "README", "setting": setting, **loop,
                        "load_average": os.getloadavg()[0]})  # fmt: skip
    return results


def labels(args) -> tuple:
    """plate and drug per cell_id, for the entropies; with --h5ad, after
    checking that its row i is cell i (the peers' ids are row numbers)."""
    dataset = args.data / args.dataset
    if args.h5ad is not None:
        peers.same_cells(args.h5ad, dataset)
    return stream.labels(dataset, "plate"), stream.labels(dataset, "drug")


def find(results: list[dict], path: str, setting: str | None = None, request: str | None = None) -> float | None:
    """The cells/s of the measured row that matches, if any."""
    for r in results:
        if r["path"] == path and setting in (None, r["setting"]) and request in (None, r["request"]):
            return r.get("cells_per_s")
    return None


def ratios(results: list[dict]) -> list[tuple[str, float | None]]:
    """The ratios issue 15's targets are stated in."""
    workers_0, workers_2 = "num_workers=0 (2 streams)", "num_workers=2 (a stream each)"
    pairs = [
        ("README request vs stored CSR, raw pyarrow",
         find(results, "pyarrow", request="README"), find(results, "pyarrow", request="stored CSR")),
        ("CellDataset (num_workers=0) vs raw pyarrow, stored CSR",
         find(results, "CellDataset", workers_0), find(results, "pyarrow", request="stored CSR")),
        ("CellDataset num_workers=2 vs num_workers=0",
         find(results, "CellDataset", workers_2), find(results, "CellDataset", workers_0)),
        ("README loop minus the model vs annbatch (README request vs annbatch's stored CSR)",
         find(results, "README loop", "minus the model"), find(results, "annbatch 0.3.1")),
    ]  # fmt: skip
    return [(name, a / b if a and b else None) for name, a, b in pairs]


def print_table(results: list[dict]) -> None:
    ceiling = {r["request"]: r.get("cells_per_s") for r in results if r["path"] == "pyarrow"}
    print("| path | request | setting | cells/s | vs pyarrow, same request | plate entropy |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['path']} | {r['request']} | {r['setting']} | {r['error']} | | |")
            continue
        base = ceiling.get(r["request"])
        share = f"{r['cells_per_s'] / base:.0%}" if base else ""
        entropy = f"{r['plate_entropy']:.2f}" if "plate_entropy" in r else ""
        print(f"| {r['path']} | {r['request']} | {r['setting']} | {r['cells_per_s']:,.0f} | {share} | {entropy} |")
    print()
    for name, value in ratios(results):
        print(f"- {name}: " + (f"{value:.2f}x" if value is not None else "not measured"))
    for r in results:
        if "store_build_seconds" in r:
            cached = " (cached from an earlier run)" if r["store_cached"] else ""
            print(f"- annbatch's store: written in {r['store_build_seconds']:,.1f} s{cached}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", help="of a running server, e.g. grpc://127.0.0.1:50051")
    parser.add_argument("--bin", type=Path, help="directory holding the cellflight binary, to start a server here")
    parser.add_argument("--data", type=Path, help="with --bin: the directory of datasets to serve")
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--h5ad", type=Path, help="the dataset's cells as an .h5ad, for scDataset, AnnLoader, annbatch")
    parser.add_argument("--annbatch-python", type=Path,
                        help="the python of a venv set up by benches/peers/install_annbatch.sh VENV")
    parser.add_argument("--peers-python", type=Path,
                        help="the python that runs scDataset and AnnLoader (default: --annbatch-python, which has "
                             "them, else this one)")
    parser.add_argument("--annbatch-store", type=Path,
                        help="where annbatch's pre-shuffled copy of --h5ad is written once (default: beside it)")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-trainer.json"))
    parser.add_argument("--plot", type=Path, help="bars of the run as a .png, drawn by --peers-python (matplotlib)")
    args = parser.parse_args()
    if (args.address is None) == (args.bin is None) or (args.bin is not None and args.data is None):
        parser.error("give --address, or --bin and --data")
    if args.h5ad is not None:
        args.h5ad = args.h5ad.resolve()
        args.annbatch_store = args.annbatch_store or args.h5ad.with_suffix(".annbatch.zarr")
    args.peers_python = args.peers_python or args.annbatch_python or Path(sys.executable)
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
    report = {"machine": stream.machine(), "command": sys.argv, "results": results, "ratios": dict(ratios(results)),
              "readme_loop_without_model": [what for what, _, _ in WITHOUT_MODEL]}  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results)
    if args.plot is not None:
        subprocess.run([str(args.peers_python), str(HERE / "peers" / "report.py"), "bars", str(args.out), str(args.plot)],
                       check=True)  # fmt: skip


if __name__ == "__main__":
    main()
