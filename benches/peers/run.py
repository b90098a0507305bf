"""Side by side, on the same generated data, in one run (issue 6): cellflight
and the loaders users would otherwise pick, beside the ceilings.

    cargo build --release -p cellflight -p cellflight-client
    pip install -r tests/requirements.txt -r benches/peers/requirements.txt
    python benches/peers/run.py --bin $CARGO_TARGET_DIR/release --work /tmp/cf-peers --cells 1000000 \\
        --seconds 20 --warmup 5 --out docs/benchmarks-peers.json --plot docs/benchmarks-peers.png

1. Data, made once under --work: `cellflight generate tahoe --h5ad` (the
   dataset, and the same cells as an uncompressed .h5ad, float32 values and
   int32 indices as anndata writes them), and a gzip copy of the .h5ad (as
   scanpy writes with compression="gzip").
2. Cold: the page cache dropped, a sequential read of matrix.arrow (the
   disk's rate), then, dropped again and with a fresh server, one epoch of
   cellflight through pyarrow at block 16 / fetch 64.
3. Warm (each file read through the page cache first), each loader in a
   process of its own for --seconds after --warmup, batch 64:
   - cellflight through pyarrow (1 and 4 streams) and through
     `CellDataset` + `DataLoader(batch_size=None)` (no workers with 1 and 4
     streams, and 2 workers: the machine this was written for has 2 cores),
     at block 16 / fetch 64 and 256, and pyarrow at block 1 (true random);
   - scDataset over the backed .h5ad, `BlockShuffling(16)` at fetch 64 and
     256, and `Streaming` (plain and shuffle=True), CSR batches; on the gzip
     copy too;
   - AnnLoader (anndata), random, CSR batches;
   - annbatch 0.3.1 over its pre-shuffled zarr copy of the .h5ad (written
     once under --work), chunk 32 / 256 chunks as its README shows, with
     --annbatch-python (a venv made by install_annbatch.sh: annbatch
     declares Python >= 3.12); without it, its row quotes its published
     figures.
4. Ceilings: the Flight transport (pyarrow's C++ Flight server and
   `cellflight-bench replay`, each re-sending one minibatch of the
   block 16 / fetch 64 request, read by the same pyarrow reader), page-cache
   memory bandwidth and cold sequential disk read over the bytes a cell
   needs (ceilings.py).

For each: cells/s, MB/s of payload (indices + values + cell ids, as each
loader delivers them: cellflight sends the store's narrow types, the .h5ad
holds float32/int32), mean per-minibatch Shannon entropy of `plate` and
`drug` (bits), and peak RSS of the loader's process (+ its largest
DataLoader worker). Writes JSON (--out) with the machine and the command,
prints a markdown table, and plots cells/s against plate entropy (--plot).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # benches/: stream.py

import stream  # noqa: E402

import ceilings  # noqa: E402
import report  # noqa: E402

DATASET = "tahoe"
BATCH = 64
SETTINGS = [(16, 64), (16, 256)]
TRUE_RANDOM = (1, 64)
CHILD_GRACE = 300  # seconds a loader may take beyond warm-up + measurement (imports, a slow first fetch)
PACKAGES = ["numpy", "scipy", "pandas", "pyarrow", "h5py", "anndata", "torch", "scdataset", "matplotlib"]
# annbatch's Loader as its README sets it up (its defaults: chunk 512, 32 chunks, no shuffle).
ANNBATCH_LOADER = {"kind": "annbatch", "batch_size": BATCH, "chunk_size": 32, "preload_nchunks": 256}
ANNBATCH_SETTING = f"chunk {ANNBATCH_LOADER['chunk_size']}, {ANNBATCH_LOADER['preload_nchunks']} chunks"
ANNBATCH_DATASET_SIZE = "4GB"  # cells its writer shuffles in memory at once (default 20GB)
ANNBATCH_BUILD_TIMEOUT = 3600
ANNBATCH = {
    "loader": "annbatch", "path": "Loader over a sharded zarr collection",
    "error": "not run: give --annbatch-python (install_annbatch.sh sets annbatch up on Python 3.11). Published (annbatch "
             "paper, AWS SageMaker, batch 4096, 2M Tahoe-100M cells): 23,164-35,007 samples/s (chunk 64-512), where "
             "scDataset made 1,495 (batch 64) and 17,933 (batch 4096); on-premises 58,515 vs scDataset 3,979; "
             "https://github.com/theislab/annbatch_paper/tree/main/figure_plots/source_data",
    "published": {
        "source": "annbatch paper benchmarks (annbatch 0.1.0), 2 million Tahoe-100M cells, pre-shuffled sharded zarr, "
                  "batch 4096: https://github.com/theislab/annbatch_paper (figure_plots/source_data/"
                  "loading_times_full_epoch_2mio_samples_AWS.csv and ..._denbi.csv; settings in "
                  "src/benchmark_loading/run_benchmarks_AWS.ipynb and run_benchmarks.ipynb)",
        "hardware": "AWS SageMaker and on-premises (de.NBI cloud), as the repository's README names them; the instance "
                    "types, cores and disks are not given in those files (see the paper, arXiv:2604.01949)",
        "samples_per_s": {
            "AWS: annbatch chunk_size 64 / 128 / 256 / 512": [23164, 29758, 34266, 35007],
            "AWS: annbatch, preload to GPU": 35812,
            "AWS: scDataset, batch 64, block 4, fetch 16, 8 workers": 1495,
            "AWS: scDataset, batch 4096, block 256, fetch 4, 8 workers": 17933,
            "on-prem: annbatch / annbatch GPU": [58515, 61578],
            "on-prem: scDataset": 3979,
        },
    },
}  # fmt: skip


def run_loader(spec: dict, timeout: float) -> dict:
    """Runs loaders.py on one spec in a new session, so that on a timeout the
    loader and any DataLoader workers it started are ended together (by
    their process group, which is this child's id). A failure becomes the
    row's error. The spec's "python" is the interpreter (default: this one):
    annbatch lives in a venv of its own (install_annbatch.sh)."""
    python = spec.get("python", sys.executable)
    child = subprocess.Popen([python, str(HERE / "loaders.py"), json.dumps(spec)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = out.strip().splitlines()
    if child.returncode != 0 or not lines:
        tail = " ".join(err.strip().splitlines()[-3:])[-400:]
        return {"error": f"exit {child.returncode}: {tail}"}
    return json.loads(lines[-1])


def annbatch_store(python: str, h5ad: Path, store: Path) -> dict:
    """annbatch's pre-shuffled copy of the .h5ad (loaders.annbatch_store),
    built by its own interpreter unless `store` exists: {"seconds": build
    time, "cached": bool}, or {"error": ...}."""
    spec = {"kind": "annbatch-store", "python": python, "h5ad": str(h5ad), "store": str(store),
            "dataset_size": ANNBATCH_DATASET_SIZE}  # fmt: skip
    return run_loader(spec, ANNBATCH_BUILD_TIMEOUT)


def prepared_annbatch(python: str, h5ad: Path, store: Path) -> tuple[dict | None, dict]:
    """annbatch's loader spec over its pre-shuffled copy of the .h5ad, the
    store built (or found) and read into the page cache before any clock;
    and the build's figures (annbatch_store). No spec when the store could
    not be built."""
    print(f"annbatch's store {store} ...", file=sys.stderr, flush=True)
    built = annbatch_store(python, h5ad, store)
    if "error" in built:
        return None, built
    ceilings.warm(*sorted(path for path in store.rglob("*") if path.is_file()))
    return {**ANNBATCH_LOADER, "python": python, "store": str(store)}, built


def entropies(ids_base: Path, plate: np.ndarray, drug: np.ndarray) -> dict:
    """Mean per-minibatch entropy of plate and drug over the batches the child sampled."""
    ids, lengths = np.load(ids_base.with_suffix(".ids.npy")), np.load(ids_base.with_suffix(".lengths.npy"))
    batches = np.split(ids, np.cumsum(lengths)[:-1]) if len(lengths) else []
    if not batches:
        return {}
    return {"plate_entropy": float(np.mean([stream.entropy_bits(plate[b]) for b in batches])),
            "drug_entropy": float(np.mean([stream.entropy_bits(drug[b]) for b in batches])),
            "sampled_batches": len(batches)}  # fmt: skip


class Bench:
    """What every measurement shares: timing, labels, where ids go, the rows."""

    def __init__(self, args, plate, drug):
        self.args, self.plate, self.drug = args, plate, drug
        self.rows: list[dict] = []
        (args.work / "ids").mkdir(parents=True, exist_ok=True)

    def measure(self, row: dict, spec: dict, labelled: bool = True, **timing) -> dict:
        """One loader in its own process; the row gets its figures or its error."""
        name = f"{len(self.rows):02d}"
        ids_base = self.args.work / "ids" / name
        spec = {"warmup": self.args.warmup, "seconds": self.args.seconds, "python_src": str(REPO / "python" / "src"),
                "ids_path": str(ids_base), **spec, **timing}  # fmt: skip
        print(f"[{name}] {report.label(row)} ...", file=sys.stderr, flush=True)
        result = run_loader(spec, spec["warmup"] + spec["seconds"] + CHILD_GRACE)
        if "error" not in result and labelled:
            result.update(entropies(ids_base, self.plate, self.drug))
        row = {**row, **result, "spec": spec, "load_average": os.getloadavg()[0]}
        self.rows.append(row)
        print(f"[{name}] {json.dumps({k: v for k, v in row.items() if k != 'spec'})}", file=sys.stderr, flush=True)
        return row


def setting(block, fetch) -> str:
    return f"block {block} / fetch {fetch}"


def streams_text(n: int) -> str:
    return f"{n} stream" + ("s" if n > 1 else "")


def cellflight_rows(bench: Bench, address: str) -> None:
    for block, fetch in [*SETTINGS, TRUE_RANDOM]:
        request = {"dataset": DATASET, "batch_size": BATCH, "block_size": block, "fetch_factor": fetch}
        row = {"loader": "cellflight", "setting": setting(block, fetch), "data": "matrix.arrow, warm", "data_short": "warm"}
        for streams in (1, 4):
            bench.measure({**row, "path": "pyarrow", "parallelism": streams_text(streams)},
                          {"kind": "cellflight-pyarrow", "address": address, "request": request, "streams": streams})  # fmt: skip
        if (block, fetch) == TRUE_RANDOM:
            continue
        for workers, streams in [(0, 1), (0, 4), (2, 1)]:
            bench.measure({**row, "path": "CellDataset + DataLoader",
                           "parallelism": f"num_workers={workers}, {streams_text(streams)}" + (" each" if workers else "")},
                          {"kind": "cellflight-torch", "address": address, "request": request,
                           "num_workers": workers, "streams": streams})  # fmt: skip


def h5ad_rows(bench: Bench, h5ad: Path, data: str, strategies: list[tuple[str, int, int]], annloader: bool) -> None:
    short = "gzip" if "gzip" in data else "h5ad"
    for strategy, block, fetch in strategies:
        shown = setting(block, fetch) if strategy == "BlockShuffling" else f"{strategy}, fetch {fetch}"
        bench.measure({"loader": "scDataset", "path": "backed AnnData, CSR", "setting": shown,
                       "parallelism": "num_workers=0", "data": data, "data_short": short},
                      {"kind": "scdataset", "h5ad": str(h5ad), "strategy": strategy, "block_size": block,
                       "fetch_factor": fetch, "batch_size": BATCH})  # fmt: skip
    if annloader:
        bench.measure({"loader": "AnnLoader", "path": "backed AnnData, CSR", "setting": "random (shuffle=True)",
                       "parallelism": "num_workers=0", "data": data, "data_short": short},
                      {"kind": "annloader", "h5ad": str(h5ad), "batch_size": BATCH})  # fmt: skip


def annbatch_row(bench: Bench, python: Path | None, h5ad: Path, store: Path) -> None:
    """annbatch over its pre-shuffled copy of the .h5ad (written once under
    --work, before its clock), run by the interpreter of the venv
    install_annbatch.sh made; without one, its published figures."""
    if python is None:
        bench.rows.append(ANNBATCH)
        return
    row = {"loader": "annbatch 0.3.1", "path": "Loader over its pre-shuffled zarr collection",
           "setting": ANNBATCH_SETTING, "parallelism": "its threads", "data": "its zarr copy of the .h5ad, warm",
           "data_short": "zarr", "published": ANNBATCH["published"]}  # fmt: skip
    spec, built = prepared_annbatch(str(python), h5ad, store)
    if spec is None:
        bench.rows.append({**row, "error": f"its store: {built['error']}"})
        return
    bench.measure({**row, "store_build_seconds": built["seconds"]}, spec)


def transport_ceilings(bench: Bench, bench_bin: Path, address: str) -> None:
    """The two Flight servers re-sending one real minibatch, read by the same
    pyarrow reader as cellflight (1 and 4 streams). Every batch holds the same
    cells, so no entropy."""
    request = {"dataset": DATASET, "batch_size": BATCH, "block_size": 16, "fetch_factor": 64}
    row = {"setting": setting(16, 64), "path": "pyarrow", "data": "one minibatch, re-sent", "ceiling": "transport"}
    replay, replay_address = stream.start([str(bench_bin), "replay", "--source", address, "--request", json.dumps(request)])
    try:
        for streams in (1, 4):
            bench.measure({**row, "loader": "ceiling: cellflight-bench replay", "server": "tonic", "parallelism": streams_text(streams)},
                          {"kind": "cellflight-pyarrow", "address": replay_address, "request": request, "streams": streams},
                          labelled=False)  # fmt: skip
    finally:
        replay.terminate()
        replay.wait()
    batch = stream.first_minibatch(address, request)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    ready = multiprocessing.Queue()
    repeat = multiprocessing.Process(target=stream.serve_repeat, args=(sink.getvalue().to_pybytes(), ready), daemon=True)
    repeat.start()
    try:
        port = ready.get(timeout=30)
        for streams in (1, 4):
            bench.measure({**row, "loader": "ceiling: pyarrow C++ Flight server", "server": "pyarrow C++",
                           "parallelism": streams_text(streams)},
                          {"kind": "cellflight-pyarrow", "address": f"grpc://127.0.0.1:{port}", "request": request,
                           "streams": streams}, labelled=False)  # fmt: skip
    finally:
        repeat.terminate()
        repeat.join()


def same_cells(h5ad: Path, dataset: Path) -> None:
    """The h5ad loaders' cell ids are row numbers: row i of the .h5ad must be
    cell_id i of the dataset (same obs name), or their entropies would be
    computed on the wrong labels."""
    import anndata
    import pyarrow.parquet as pq

    names = anndata.read_h5ad(h5ad, backed="r").obs_names.to_numpy().astype(str)
    cells = pq.read_table(dataset / "cells.parquet", columns=["cell_id", "obs_name"])
    if not (cells.column("obs_name").to_numpy(zero_copy_only=False).astype(str) == names).all():
        raise SystemExit(f"{h5ad} and {dataset} do not hold the same cells in the same order")


def peak_rss_mib(pid: int) -> float | None:
    """A running process's peak resident set (VmHWM), in MiB."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def machine(work: Path) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    memory = next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    disk = subprocess.run(["df", "--output=source,fstype", str(work)], capture_output=True, text=True).stdout.split()[-2:]
    return {**stream.machine(), "memory_gib": int(memory) / 2**20, "work_filesystem": " ".join(disk), "packages": versions}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, type=Path, help="directory of the cellflight and cellflight-bench binaries")
    parser.add_argument("--work", required=True, type=Path, help="where the data is generated (once) and kept")
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-peers.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/benchmarks-peers.png"))
    parser.add_argument("--annbatch-python", type=Path,
                        help="the python of a venv set up by install_annbatch.sh VENV (else annbatch is quoted)")
    args = parser.parse_args()
    command = shlex.join(["python", *sys.argv])
    cellflight, bench_bin = args.bin / "cellflight", args.bin / "cellflight-bench"
    work = args.work.resolve()
    args.work = work
    dataset, h5ad, gz = work / DATASET, work / f"{DATASET}.h5ad", work / f"{DATASET}.gzip.h5ad"

    ceilings.generate(cellflight, dataset, h5ad, args.cells)
    print("gzip copy of the .h5ad ...", file=sys.stderr, flush=True)
    ceilings.gzip_copy(h5ad, gz)
    sizes = ceilings.bytes_per_cell(dataset)
    plate, drug = stream.labels(dataset, "plate"), stream.labels(dataset, "drug")
    same_cells(h5ad, dataset)
    bench = Bench(args, plate, drug)
    ceiling_lines, server = [], None
    serve = [str(cellflight), "serve", "--data", str(dataset), "--listen", "127.0.0.1:0"]
    try:
        # Cold: nothing may be mapped by a running server while the cache is dropped.
        cold_error = ceilings.drop_caches()
        disk = None if cold_error else ceilings.sequential_read(dataset / "matrix.arrow")
        disk_row = {"loader": "ceiling: cold sequential read of matrix.arrow", "data": "matrix.arrow, cold"}
        if disk:
            disk_row.update(disk, cells_per_s=disk["mb_per_s"] * 1e6 / sizes["file_bytes_per_cell"],
                            note=f"{disk['mb_per_s']:,.0f} MB/s over {sizes['file_bytes_per_cell']:,.0f} file bytes a cell")  # fmt: skip
            ceiling_lines.append({"name": "disk, cold sequential", "cells_per_s": disk_row["cells_per_s"]})
        else:
            disk_row["error"] = f"not measured: {cold_error}"
        bench.rows.append(disk_row)
        cold_error = cold_error or ceilings.drop_caches()
        server, address = stream.start(serve)
        cold = {"loader": "cellflight", "path": "pyarrow", "setting": setting(16, 64), "parallelism": streams_text(1),
                "data": "matrix.arrow, cold (one epoch)", "data_short": "cold"}  # fmt: skip
        if cold_error:
            bench.rows.append({**cold, "error": f"not measured: {cold_error}"})
        else:
            request = {"dataset": DATASET, "batch_size": BATCH, "block_size": 16, "fetch_factor": 64}
            bench.measure(cold, {"kind": "cellflight-pyarrow", "address": address, "request": request, "streams": 1},
                          warmup=0, max_cells=sizes["n_cells"])  # fmt: skip

        ceilings.warm(dataset / "matrix.arrow")
        bandwidth = ceilings.memory_bandwidth(dataset / "matrix.arrow", min(args.seconds, 5))
        memory_row = {"loader": "ceiling: page-cache memory bandwidth", "data": "matrix.arrow, warm",
                      "cells_per_s": bandwidth["gb_per_s"] * 1e9 / sizes["payload_bytes_per_cell"], **bandwidth,
                      "note": f"{bandwidth['gb_per_s']:,.1f} GB/s ({bandwidth['threads']} thread{'s' if bandwidth['threads'] > 1 else ''}) over "
                              f"{sizes['payload_bytes_per_cell']:,.0f} payload bytes a cell"
                              + (f"; {bandwidth['warning']}" if "warning" in bandwidth else "")}  # fmt: skip
        bench.rows.append(memory_row)
        ceiling_lines.append({"name": "page-cache bandwidth", "cells_per_s": memory_row["cells_per_s"]})

        cellflight_rows(bench, address)
        transport_ceilings(bench, bench_bin, address)
        transport = [r for r in bench.rows if r.get("ceiling") == "transport" and r.get("cells_per_s")]
        if transport:
            best = max(transport, key=lambda r: r["cells_per_s"])
            ceiling_lines.append({"name": f"Flight transport ({best['server']}, {best['parallelism']})",
                                  "cells_per_s": best["cells_per_s"]})  # fmt: skip

        ceilings.warm(h5ad)
        blocks = [("BlockShuffling", b, f) for b, f in SETTINGS]
        h5ad_rows(bench, h5ad, "uncompressed .h5ad, warm",
                  [*blocks, ("Streaming", 1, 64), ("Streaming(shuffle=True)", 1, 64)], annloader=True)  # fmt: skip
        ceilings.warm(gz)
        h5ad_rows(bench, gz, "gzip .h5ad, warm", [*blocks, ("Streaming", 1, 64)], annloader=False)
        server_rss = peak_rss_mib(server.pid)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    annbatch_row(bench, args.annbatch_python, h5ad, work / f"{DATASET}.annbatch.zarr")

    plate_max, drug_max = float(np.log2(plate.max() + 1)), float(np.log2(drug.max() + 1))
    results = {
        "command": command, "machine": machine(work), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": {"dataset": str(dataset), "h5ad": str(h5ad), "h5ad_gzip": str(gz), "h5ad_bytes": h5ad.stat().st_size,
                 "h5ad_gzip_bytes": gz.stat().st_size, **sizes},
        "batch_size": BATCH, "warmup": args.warmup, "seconds": args.seconds,
        "entropy_max": {"plate": plate_max, "drug": drug_max}, "server_peak_rss_mib": server_rss,
        "ceilings": ceiling_lines, "rows": bench.rows,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(bench.rows, plate_max, drug_max))
    print(f"\ncellflight server peak RSS: {_mib(server_rss)} MiB (file pages of matrix.arrow it touched included)")
    m = results["machine"]
    title = (f"{args.cells:,} cells, batch {BATCH}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']:.0f} GiB; "
             f"{args.seconds:g} s after {args.warmup:g} s warm-up")  # fmt: skip
    report.plot(bench.rows, ceiling_lines, plate_max, args.plot, title)


def _mib(value) -> str:
    return "?" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    main()
