"""Tokens and collections beside stored CSR, in one run (issue 17's benchmark).

Starts `cellflight serve` (release build) on a directory of generated
datasets (page cache warm) and measures cells/s into pyarrow (numpy arrays
of every list column in hand), batch 64, block 16, fetch 64, one stream,
each for a fixed time after a warm-up:

- `atlas` (100,000 cells × 20,000 genes): stored CSR, then Geneformer tokens
  (max_length 2,048, padded and ragged) and scGPT tokens (51 bins,
  max_length 1,200: its pretraining length, so cells with more genes take
  the seeded choice; and with `normalize_total` + `log1p` before binning);
- `part_a` (50,000 × 20,000) and `part_b` (50,000 × 24,000, another seed)
  as stored CSR, and the outer collection `pooled` of the two (100,000 ×
  24,000) as CSR: its rows are the members' rows with their genes placed in
  the collection's space.

The vocabulary gives every gene of `atlas` a token (ids after the four
special tokens) and a median drawn once from a log-normal (seed 0): the
medians change which genes rank first, not the work of ranking.

    cargo build --release -p cellflight
    python benches/tokens_collections.py --bin $CARGO_TARGET_DIR/release/cellflight --work /tmp/cf-bench/fm

Generates the datasets if missing. Writes JSON (--out) and prints a
markdown table with each figure's ratio to its stored-CSR baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream import machine, measure_pyarrow, start  # noqa: E402  (one reader and one clock for every stream benchmark)

BASE = {"batch_size": 64, "block_size": 16, "fetch_factor": 64}
SPECIAL_TOKENS = ["<pad>", "<mask>", "<cls>", "<eos>"]
DATASETS = {  # name: (cells, genes, seed)
    "atlas": (100_000, 20_000, 0),
    "part_a": (50_000, 20_000, 1),
    "part_b": (50_000, 24_000, 2),
}


def prepare(cellflight: Path, data: Path) -> None:
    """The datasets, the collection and the vocabulary, made once; the
    matrices read once so the page cache is warm."""
    data.mkdir(parents=True, exist_ok=True)
    for name, (cells, genes, seed) in DATASETS.items():
        if not (data / name).exists():
            argv = [str(cellflight), "generate", str(data / name), "--cells", str(cells), "--genes", str(genes), "--seed", str(seed)]
            subprocess.run(argv, check=True)
        subprocess.run(["cat", str(data / name / "matrix.arrow")], check=True, stdout=subprocess.DEVNULL)
    if not (data / "pooled.collection.json").exists():
        argv = [str(cellflight), "collection", "create", "--data", str(data), "pooled", "--member", "part_a", "--member", "part_b", "--join", "outer"]
        subprocess.run(argv, check=True)
    vocabulary = data / "corpus.vocabulary.parquet"
    if not vocabulary.exists():
        pq.write_table(vocabulary_table(data / "atlas"), vocabulary)


def vocabulary_table(dataset: Path) -> pa.Table:
    keys = pq.read_table(dataset / "genes.parquet", columns=["gene_id"]).column("gene_id").to_pylist()
    medians = np.random.default_rng(0).lognormal(mean=0.0, sigma=1.0, size=len(keys))
    return pa.table({
        "key": SPECIAL_TOKENS + keys,
        "token_id": pa.array(range(len(SPECIAL_TOKENS) + len(keys)), pa.uint32()),
        "median": pa.array([None] * len(SPECIAL_TOKENS) + medians.tolist(), pa.float64()),
    })  # fmt: skip


def cases() -> list[tuple[str, str, dict, str]]:
    """(case, dataset, request keys, the case it is compared with)."""
    geneformer = {"kind": "geneformer", "vocabulary": "corpus", "max_length": 2048}
    scgpt = {"kind": "scgpt", "vocabulary": "corpus", "max_length": 1200, "n_bins": 51}
    tokens = lambda tokenizer, **more: {"format": "tokens", "tokenizer": tokenizer, **more}
    return [
        ("stored CSR", "atlas", {}, "stored CSR"),
        ("Geneformer, padded", "atlas", tokens(geneformer), "stored CSR"),
        ("Geneformer, ragged", "atlas", tokens({**geneformer, "padding": "none"}), "stored CSR"),
        ("scGPT, padded", "atlas", tokens(scgpt), "stored CSR"),
        ("scGPT, normalize_total + log1p, padded", "atlas", tokens(scgpt, transform={"normalize_total": 1e4, "log1p": True}), "stored CSR"),
        ("part_a stored CSR", "part_a", {}, "part_a stored CSR"),
        ("part_b stored CSR", "part_b", {}, "part_b stored CSR"),
        ("collection part_a + part_b (outer), CSR", "pooled", {}, "members stored CSR"),
    ]  # fmt: skip


def members_baseline(results: dict[str, dict]) -> float:
    """The members' stored CSR rate over the collection's cells: the time to
    read both members' cells, each at its own rate."""
    cells = [DATASETS[m][0] for m in ("part_a", "part_b")]
    rates = [results[f"{m} stored CSR"]["cells_per_s"] for m in ("part_a", "part_b")]
    return sum(cells) / sum(c / r for c, r in zip(cells, rates))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, type=Path, help="the release cellflight binary")
    parser.add_argument("--work", required=True, type=Path, help="where the datasets are made (kept for later runs)")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-tokens.json"))
    args = parser.parse_args()
    data = args.work / "data"
    prepare(args.bin, data)
    server, address = start([str(args.bin), "serve", "--data", str(data), "--listen", "127.0.0.1:0"])
    results = {}
    try:
        for case, dataset, keys, _ in cases():
            result = measure_pyarrow(address, {**BASE, "dataset": dataset, **keys}, args.warmup, args.seconds)
            results[case] = {**result, "case": case}
            print(json.dumps(results[case]), flush=True)
    finally:
        server.terminate()
    baselines = {case: results[case]["cells_per_s"] for case in results}
    baselines["members stored CSR"] = members_baseline(results)
    for case, _, _, baseline in cases():
        results[case]["vs_baseline"] = results[case]["cells_per_s"] / baselines[baseline]
        results[case]["baseline"] = baseline
    args.out.write_text(json.dumps({"machine": machine(), "work": str(args.work), "results": list(results.values())}, indent=2) + "\n")
    print("| case | dataset | cells/s | MB/s | vs | ratio |")
    print("|---|---|---|---|---|---|")
    for case, dataset, _, baseline in cases():
        r = results[case]
        print(f"| {case} | `{dataset}` | {r['cells_per_s']:,.0f} | {r['mb_per_s']:,.0f} | {baseline} | {r['vs_baseline']:.2f} |")


if __name__ == "__main__":
    main()
