"""Benchmarks of the foundation: generate, ingest (beside anndata.read_h5ad on
the same file, and h5py copying its matrix: the ceiling of a reader that also
writes), ingest's peak memory under a budget several times smaller than the
file, and `inspect --verify` of a 1M-cell dataset.

Run from the repository root, after a release build:

    cargo build --release -p cellflight
    python benches/foundation.py --bin target/release/cellflight --work /tmp/cf-bench
    python benches/foundation.py --bin target/release/cellflight --work /tmp/cf-bench --only-ingest

Prints a markdown report (machine, command, table) and writes it with the raw
figures as JSON next to --out. Every figure comes from this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run_measured(argv: list[str]) -> tuple[float, int]:
    """Runs a command under GNU time; returns (wall seconds, its peak RSS in bytes)."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M", *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    peak_kib = int(done.stderr.strip().splitlines()[-1].removeprefix("maxrss_kib="))
    return seconds, peak_kib * 1024


def time_read_h5ad(path: Path) -> tuple[float, int]:
    """anndata.read_h5ad in a fresh interpreter: (seconds, peak RSS bytes)."""
    code = (
        "import time, resource, anndata, sys\n"
        "t = time.perf_counter(); a = anndata.read_h5ad(sys.argv[1]); s = time.perf_counter() - t\n"
        "print(s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, a.n_obs)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True)
    seconds, rss, _ = out.stdout.split()
    return float(seconds), int(rss)


def time_h5py_copy(path: Path, out: Path) -> tuple[float, int]:
    """The ceiling of a reader that also writes, in a fresh interpreter:
    h5py reads X (CSR) in chunks of 1M entries and writes the same bytes
    to a plain file. (seconds, peak RSS bytes)."""
    code = (
        "import time, resource, sys, h5py\n"
        "t = time.perf_counter()\n"
        "with h5py.File(sys.argv[1], 'r') as f, open(sys.argv[2], 'wb') as out:\n"
        "    x = f['X']\n"
        "    out.write(x['indptr'][:].tobytes())\n"
        "    n, step = x['data'].shape[0], 1 << 20\n"
        "    for start in range(0, n, step):\n"
        "        out.write(x['indices'][start:start + step].tobytes())\n"
        "        out.write(x['data'][start:start + step].tobytes())\n"
        "s = time.perf_counter() - t\n"
        "print(s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path), str(out)], check=True, capture_output=True, text=True)
    out.unlink()
    seconds, rss = done.stdout.split()
    return float(seconds), int(rss)


def drop_dataset(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return f"{os.cpu_count()} cores ({cpu}), {mem / 2**20:.0f} GiB RAM, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the cellflight binary (release build)")
    parser.add_argument("--work", required=True, type=Path, help="scratch directory (needs ~25 GB)")
    parser.add_argument("--ingest-cells", type=int, default=200_000)
    parser.add_argument("--verify-cells", type=int, default=1_000_000)
    parser.add_argument("--budget-mib", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-foundation.json"))
    parser.add_argument("--only-ingest", action="store_true", help="skip generate and verify of --verify-cells")
    args = parser.parse_args()
    cf = str(Path(args.bin).resolve())
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"machine": machine(), "command": " ".join(sys.argv)}

    if not args.only_ingest:
        results.update(generate_and_verify(cf, work, args.verify_cells))

    # 3. Ingest beside anndata.read_h5ad, on the same generated .h5ad.
    h5ad = work / "ingest_src.h5ad"
    src = work / "ingest_src"
    drop_dataset(src)
    subprocess.run([cf, "generate", str(src), "--cells", str(args.ingest_cells), "--h5ad", str(h5ad), "--force"], check=True, stdout=subprocess.DEVNULL)
    drop_dataset(src)
    size = h5ad.stat().st_size
    subprocess.run(["cat", str(h5ad)], check=True, stdout=subprocess.DEVNULL)  # warm the page cache for both readers
    read_seconds, read_rss = time_read_h5ad(h5ad)
    copy_seconds, copy_rss = time_h5py_copy(h5ad, work / "h5py_copy.bin")
    out = work / "ingested"
    drop_dataset(out)
    seconds, rss = run_measured([cf, "ingest", str(h5ad), str(out)])
    results["ingest"] = {
        "cells": args.ingest_cells, "h5ad_bytes": size, "seconds": seconds, "cells_per_s": args.ingest_cells / seconds,
        "h5ad_mb_per_s": size / 1e6 / seconds, "peak_rss": rss,
        "anndata_read_h5ad_seconds": read_seconds, "anndata_peak_rss": read_rss,
        "h5py_copy_seconds": copy_seconds, "h5py_copy_peak_rss": copy_rss,
    }

    # 4. Bounded memory: the same file under a budget several times smaller.
    drop_dataset(out)
    budget = args.budget_mib << 20
    seconds, rss = run_measured([cf, "ingest", str(h5ad), str(out), "--memory", f"{args.budget_mib}MiB"])
    results["bounded"] = {"h5ad_bytes": size, "budget": budget, "ratio": size / budget, "seconds": seconds, "peak_rss": rss}
    drop_dataset(out)
    h5ad.unlink()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


def generate_and_verify(cf: str, work: Path, cells: int) -> dict:
    """`generate` of `cells` cells (the verify subject), then `inspect --verify` of it, timed."""
    big = work / "tahoe_1m"
    drop_dataset(big)
    seconds, rss = run_measured([cf, "generate", str(big), "--cells", str(cells)])
    generated = {"cells": cells, "seconds": seconds, "cells_per_min": cells / seconds * 60, "peak_rss": rss}
    seconds, rss = run_measured([cf, "inspect", str(big), "--verify"])
    drop_dataset(big)
    return {"generate": generated, "verify": {"cells": cells, "seconds": seconds, "peak_rss": rss, "passed": True}}


def report(r: dict) -> str:
    mib = lambda b: f"{b / 2**20:,.0f} MiB"
    i, b = r["ingest"], r["bounded"]
    rate = lambda seconds: f"{i['cells'] / seconds:,.0f} cells/s"
    rows = []
    if "generate" in r:
        g, v = r["generate"], r["verify"]
        rows += [
            f"| generate {g['cells']:,} cells × 62,710 genes | {g['seconds']:.1f} s = **{g['cells_per_min']:,.0f} cells/min**, peak RSS {mib(g['peak_rss'])} |",
            f"| `inspect --verify` of it | {v['seconds']:.1f} s, passed, peak RSS {mib(v['peak_rss'])} |",
        ]
    rows += [
        f"| ingest {i['cells']:,}-cell .h5ad ({i['h5ad_bytes'] / 1e9:.2f} GB, page cache warm) | {i['seconds']:.1f} s = **{i['cells_per_s']:,.0f} cells/s, {i['h5ad_mb_per_s']:,.0f} MB/s**, peak RSS {mib(i['peak_rss'])} |",
        f"| `anndata.read_h5ad` of the same file (into memory, nothing written) | {i['anndata_read_h5ad_seconds']:.1f} s = {rate(i['anndata_read_h5ad_seconds'])}, peak RSS {mib(i['anndata_peak_rss'])} |",
        f"| h5py reading X and writing the same bytes (the ceiling of a reader that writes) | {i['h5py_copy_seconds']:.1f} s = {rate(i['h5py_copy_seconds'])}, peak RSS {mib(i['h5py_copy_peak_rss'])} |",
        f"| ingest of it with `--memory {b['budget'] >> 20}MiB` (file {b['ratio']:.1f}× the budget) | {b['seconds']:.1f} s, **peak RSS {mib(b['peak_rss'])}** |",
    ]
    return "\n".join([f"Machine: {r['machine']}  ", f"Command: `{r['command']}`", "", "| what | figure |", "|---|---|", *rows])


if __name__ == "__main__":
    main()
