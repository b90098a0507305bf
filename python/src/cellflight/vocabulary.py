"""Token tables for `"format": "tokens"` (docs/protocol.md): a Parquet file
`NAME.vocabulary.parquet` in the server's vocabulary directory, with the
columns `key` (a gene key, a value of the request's `gene_column`, or a
special token such as `<pad>`, `<cls>`, `<eos>`), `token_id` (uint32) and
`median` (float64, null where there is none; Geneformer needs one for each
gene it tokenizes).

    from cellflight.vocabulary import from_geneformer, from_scgpt
    from_geneformer("token_dictionary_gc104M.pkl", "gene_median_dictionary_gc104M.pkl",
                    "data/geneformer.vocabulary.parquet")
    from_scgpt("scGPT_human/vocab.json", "data/scgpt.vocabulary.parquet")
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Mapping

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("key", pa.string()), ("token_id", pa.uint32()), ("median", pa.float64())])
SUFFIX = ".vocabulary.parquet"


def vocabulary_table(tokens: Mapping[str, int], medians: Mapping[str, float] | None = None) -> pa.Table:
    """The table of `tokens` (key → token id, in the mapping's order), each
    key's median from `medians` (null for keys it lacks, e.g. special
    tokens; medians of keys without a token are left out)."""
    medians = medians or {}
    keys = [str(key) for key in tokens]
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "token_id": pa.array([int(tokens[key]) for key in tokens], pa.uint32()),
            "median": pa.array([medians.get(key) for key in tokens], pa.float64()),
        },
        schema=SCHEMA,
    )


def write_vocabulary(path: str | os.PathLike, tokens: Mapping[str, int], medians: Mapping[str, float] | None = None) -> Path:
    """Writes `vocabulary_table(tokens, medians)` to `path`, which must end
    in `.vocabulary.parquet` (the server finds it by that name)."""
    path = Path(path)
    if not path.name.endswith(SUFFIX):
        raise ValueError(f"{path}: a vocabulary file is named NAME{SUFFIX}")
    pq.write_table(vocabulary_table(tokens, medians), path)
    return path


def _unpickled(source: str | os.PathLike | Mapping) -> Mapping:
    if isinstance(source, Mapping):
        return source
    with open(source, "rb") as file:
        value = pickle.load(file)
    if not isinstance(value, Mapping):
        raise TypeError(f"{source}: expected a pickled dict, found {type(value).__name__}")
    return value


def from_geneformer(
    token_dictionary: str | os.PathLike | Mapping[str, int],
    gene_median_dictionary: str | os.PathLike | Mapping[str, float],
    path: str | os.PathLike,
) -> Path:
    """Converts Geneformer's published dictionaries (pickled dicts, or the
    dicts themselves): the token dictionary (Ensembl id or special token →
    token id) and the gene median dictionary (Ensembl id → median of its
    normalised non-zero expression over the pretraining corpus) into the
    vocabulary file `path`. Unpickling runs code: only files you trust. Keys are Ensembl ids: request with the
    `gene_column` holding them (default `gene_id`)."""
    tokens = _unpickled(token_dictionary)
    medians = _unpickled(gene_median_dictionary)
    return write_vocabulary(path, tokens, {key: float(value) for key, value in medians.items()})


# scGPT's end-of-cell token, which is the server's `<eos>`.
SCGPT_END_OF_CELL = "<eoc>"


def from_scgpt(vocab_json: str | os.PathLike | Mapping[str, int], path: str | os.PathLike) -> Path:
    """Converts scGPT's published vocabulary (the `vocab.json` beside a
    pretrained model: a JSON object of gene symbol or special token → token
    id, its specials `<pad>`, `<cls>` and `<eoc>`), or the dict itself, into
    the vocabulary file `path`. `<eoc>`, scGPT's end of cell, becomes the
    server's `<eos>` (written by `"eos": true`). Keys are gene symbols:
    request with the `gene_column` holding them."""
    if isinstance(vocab_json, Mapping):
        tokens = vocab_json
    else:
        with open(vocab_json, encoding="utf-8") as file:
            tokens = json.load(file)
    if not isinstance(tokens, Mapping):
        raise TypeError(f"{vocab_json}: expected a JSON object of token → id, found {type(tokens).__name__}")
    bad = [key for key, value in tokens.items() if isinstance(value, bool) or not isinstance(value, int)]
    if bad:
        raise ValueError(f"{vocab_json}: token ids must be integers; not for {bad[:5]}")
    if SCGPT_END_OF_CELL in tokens and "<eos>" in tokens:
        raise ValueError(f"{vocab_json}: has both {SCGPT_END_OF_CELL} and <eos>; the server's <eos> would be ambiguous")
    renamed = {("<eos>" if key == SCGPT_END_OF_CELL else key): value for key, value in tokens.items()}
    return write_vocabulary(path, renamed)
