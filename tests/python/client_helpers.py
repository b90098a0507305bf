"""Shared by the tests of the Python package (test_client*, test_torch*):
the package from this checkout, and served datasets with their sources."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import anndata
import numpy as np
import scipy.sparse

from cli import REPO

# The package of this checkout, even when the venv's editable install points
# at another clone.
sys.path.insert(0, str(REPO / "python" / "src"))

import h5ad_files as hf  # noqa: E402

N_TAHOE = 2000
N_GENES_TAHOE = 300
N_PBMC = 150
N_GENES_PBMC = 40


def make_data(cellflight, root: Path) -> tuple[Path, anndata.AnnData]:
    """`tahoe`: generated; `pbmc`: ingested from an anndata-written .h5ad with
    every kind of obs column (categories no cell uses, missing values), and
    that file as anndata reads it back; `meta`: obs-only."""
    data = root / "data"
    cellflight.ok("generate", data / "tahoe", "--cells", N_TAHOE, "--genes", N_GENES_TAHOE, "--seed", 5)
    cellflight.ok("generate", data / "meta", "--cells", 100, "--genes", 10, "--seed", 6, "--obs-only")
    rng = np.random.default_rng(21)
    path = hf.write(hf.annotated(hf.counts(N_PBMC, N_GENES_PBMC, rng), seed=21), root / "src" / "pbmc.h5ad")
    cellflight.ok("ingest", path, data / "pbmc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = anndata.read_h5ad(path)
    return data, source


def source_csr(adata: anndata.AnnData) -> scipy.sparse.csr_matrix:
    """X as stored: explicit zeros dropped, indices sorted."""
    X = scipy.sparse.csr_matrix(adata.X, copy=True)
    X.eliminate_zeros()
    X.sort_indices()
    return X


def dense_rows(X: scipy.sparse.csr_matrix, cells) -> np.ndarray:
    return X[np.asarray(cells, dtype=np.int64)].toarray().astype(np.float32)
