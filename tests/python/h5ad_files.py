"""Small .h5ad files written by anndata (and edited with h5py) for the tests."""

from __future__ import annotations

from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.sparse


def rich_obs(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Every kind of obs column anndata writes, with missing values."""
    missing = rng.random(n) < 0.15
    cell_type = rng.choice(["T", "B", "NK"], n).astype(object)
    cell_type[missing] = None
    umis = pd.array(rng.integers(0, 10**6, n), dtype="Int64")
    umis[missing] = pd.NA
    doublet = pd.array(rng.random(n) < 0.5, dtype="boolean")
    doublet[rng.random(n) < 0.2] = pd.NA
    grades = ["low", "mid", "high"]
    score = rng.normal(size=n)
    score[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            # NaN codes and categories no cell uses ("ILC" between used ones).
            "cell_type": pd.Categorical(cell_type, categories=["B", "ILC", "T", "NK", "unused"]),
            "grade": pd.Categorical(rng.choice(grades, n), categories=grades, ordered=True),
            "umis": umis,
            "doublet": doublet,
            "note": [f"cellule n°{i} – {'é' * (i % 3)}" for i in range(n)],
            "score": score,
            "fraction": rng.random(n).astype(np.float32),
            "depth": rng.integers(-(2**40), 2**40, n, dtype=np.int64),
            "lane": rng.integers(0, 8, n, dtype=np.int8),
            "qc_pass": rng.random(n) < 0.9,
        },
        index=[f"AAAC-{i:05d}" for i in range(n)],
    )


def rich_var(n: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": [f"GENE{i}" for i in range(n)],
            "chrom": pd.Categorical(rng.choice(["chr1", "chr2", "chrX"], n), ["chr1", "chr2", "chrX", "chrY"]),
            "highly_variable": rng.random(n) < 0.3,
            "dispersion": rng.random(n).astype(np.float32),
        },
        index=[f"ENSG{i:011d}" for i in range(n)],
    )


def sparse_values(n_cells: int, n_genes: int, rng: np.random.Generator, values, density: float = 0.3):
    """A CSR matrix (sorted indices) whose stored values cycle through `values`
    (so each appears), in the dtype of `values`."""
    values = np.asarray(values)
    pattern = scipy.sparse.random(n_cells, n_genes, density=density, format="csr", random_state=rng)
    pattern.sort_indices()
    assert pattern.nnz >= len(values)
    data = np.resize(values, pattern.nnz)
    return scipy.sparse.csr_matrix((rng.permutation(data), pattern.indices, pattern.indptr), shape=pattern.shape)


def counts(n_cells: int, n_genes: int, rng: np.random.Generator, high: int = 60, density: float = 0.3):
    """Random float32 counts 1..high as CSR, with a few explicit zeros stored."""
    matrix = sparse_values(n_cells, n_genes, rng, np.arange(1, high + 1, dtype=np.float32), density)
    matrix.data[::23] = 0
    return matrix


def annotated(X, seed: int = 0, **layers) -> anndata.AnnData:
    rng = np.random.default_rng(seed)
    return anndata.AnnData(X=X, obs=rich_obs(X.shape[0], rng), var=rich_var(X.shape[1], rng), layers=layers or None)


def write(adata: anndata.AnnData, path: Path, compression: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path, compression=compression)
    return path


def replace_dataset(path: Path, name: str, values: np.ndarray) -> None:
    """Rewrites one HDF5 dataset of the file (e.g. `X/indptr`), its attributes kept."""
    with h5py.File(path, "r+") as f:
        attrs = dict(f[name].attrs)
        del f[name]
        f.create_dataset(name, data=values)
        f[name].attrs.update(attrs)


def read_dataset(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][()]


def shuffle_rows(path: Path, group: str = "X", seed: int = 0) -> None:
    """Permutes the entries within every row of a CSR group: same matrix,
    unsorted indices."""
    indptr, indices, data = (read_dataset(path, f"{group}/{k}") for k in ("indptr", "indices", "data"))
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.lexsort((np.random.default_rng(seed).random(len(rows)), rows))
    replace_dataset(path, f"{group}/indices", indices[order])
    replace_dataset(path, f"{group}/data", data[order])


def small_h5ad(path: Path, n_cells: int = 60, n_genes: int = 20, seed: int = 0) -> Path:
    """A small, valid, annotated CSR file with layers `counts` and `spliced`."""
    rng = np.random.default_rng(seed)
    X = counts(n_cells, n_genes, rng)
    return write(annotated(X, seed, counts=X.copy(), spliced=counts(n_cells, n_genes, rng)), path)
