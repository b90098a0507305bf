"""The whole trainer's scenario: a collection of two datasets with
different gene sets (test_collections' members, ingested from halves of a
real .h5ad) read through CellDataset as Geneformer or scGPT tokens, equal
cell for cell to test_tokens' numpy references over the source rows placed
by gene key, every cell once per epoch across a checkpoint taken mid-epoch
and resumed, with the tokenizer recorded in that checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse
from torch.utils.data import DataLoader

import client_helpers  # noqa: F401  (this checkout's package first)
import cellflight as package  # the name `cellflight` is the binary's fixture
from test_collections import N_A, data, expected_row, gene_space, members, served  # noqa: F401  (fixtures)
from test_tokens import CLS, EOS, MEDIANS, PAD, geneformer_reference, scgpt_reference, token_table

from cellflight.torch import CellDataset  # noqa: E402
from cellflight.vocabulary import write_vocabulary  # noqa: E402

SEED, EPOCH = 5, 3
BATCH = 16

TOKENIZERS = {
    "geneformer, cls, cells longer than max_length": {"kind": "geneformer", "max_length": 64, "cls": True},
    "scgpt, eos, 11 bins": {"kind": "scgpt", "max_length": 48, "eos": True, "n_bins": 11},
}


@pytest.fixture(scope="module")
def keys(served) -> np.ndarray:  # noqa: F811  (the imported fixture)
    """The gene key of each stored position of the collection."""
    with package.connect(served) as client:
        space = gene_space(client, "pooled")
    return np.array(sorted(space, key=space.get))


@pytest.fixture(scope="module")
def vocabulary(data, keys):  # noqa: F811  (the imported fixture)
    """Shuffled token ids for the collection's genes but every 5th (those
    are dropped), medians from a few values (ties within a cell are
    common); written where the server finds
    it (read on demand)."""
    rng = np.random.default_rng(23)
    kept = [key for i, key in enumerate(keys) if i % 5 != 2]
    ids = rng.permutation(len(kept)) + 3
    tokens = {"<pad>": PAD, "<cls>": CLS, "<eos>": EOS, **{key: int(t) for key, t in zip(kept, ids)}}
    medians = {key: float(rng.choice(MEDIANS)) for key in kept}
    write_vocabulary(data / "pooled_genes.vocabulary.parquet", tokens, medians)
    return tokens, medians


@pytest.fixture(scope="module")
def pooled_rows(members, keys) -> scipy.sparse.csr_matrix:
    """Every cell of the collection: its source row placed by gene key."""
    space = {key: position for position, key in enumerate(keys)}
    n_cells = members["part_a"].n_obs + members["part_b"].n_obs
    assert members["part_a"].n_obs == N_A
    return scipy.sparse.csr_matrix(np.array([expected_row(members, space, cell) for cell in range(n_cells)]))


def cell_dataset(address, tokenizer) -> CellDataset:
    ds = CellDataset(address, "pooled", format="tokens", tokenizer=tokenizer, batch_size=BATCH, seed=SEED,
                     num_workers=0)  # fmt: skip
    ds.set_epoch(EPOCH)
    return ds


def tokens_by_cell(batches) -> dict[int, tuple[list[int], list[int] | None]]:
    """Each real cell's (input_ids, values), checking that none comes twice."""
    out = {}
    for batch in batches:
        real = ~batch["is_padding"]
        values = batch["values"][real].tolist() if "values" in batch else [None] * int(real.sum())
        for cell, ids, vals in zip(batch["cell_id"][real].tolist(), batch["input_ids"][real].tolist(), values):
            assert cell not in out, f"cell {cell} twice in the epoch"
            out[cell] = (ids, vals)
    return out


def reference(tokenizer, rows, keys, vocabulary, cell) -> tuple[list[int], list[int] | None]:
    tokens, medians = vocabulary
    stored = np.arange(len(keys))
    ids, meds = token_table(keys, stored, tokens, medians)
    shape = {k: tokenizer[k] for k in ("max_length", "cls", "eos") if k in tokenizer}
    if tokenizer["kind"] == "geneformer":
        expected_ids, _, _ = geneformer_reference(rows, cell, stored, ids, meds, **shape)
        return expected_ids, None
    row = rows[cell]
    expected_ids, expected_values, _ = scgpt_reference(
        row.indices, row.data, ids, cell, seed=SEED, epoch=EPOCH, n_bins=tokenizer["n_bins"], **shape
    )
    return expected_ids, expected_values


@pytest.mark.parametrize("case", list(TOKENIZERS))
def test_a_trainer_reads_a_collections_tokens_equal_to_the_references_once_across_a_resumed_checkpoint(
    served, keys, vocabulary, pooled_rows, case
):
    tokenizer = {"vocabulary": "pooled_genes", **TOKENIZERS[case]}
    ds = cell_dataset(served, tokenizer)
    before, state = [], None
    for batch in ds.track(DataLoader(ds, batch_size=None, num_workers=0)):
        before.append(batch)
        if len(before) == 5:
            state = json.loads(json.dumps(ds.state_dict()))  # as a checkpoint keeps it
            break
    assert state["tokenizer"] == ds.metadata["tokenizer"]
    assert len(state["tokenizer"]["vocabulary_hash"]) == 64

    resumed = cell_dataset(served, tokenizer)
    resumed.load_state_dict(state)
    after = list(resumed.track(DataLoader(resumed, batch_size=None, num_workers=0)))
    got = tokens_by_cell(before + after)
    assert sorted(got) == list(range(pooled_rows.shape[0])), "every cell of both members once"
    for cell, (ids, values) in got.items():
        expected_ids, expected_values = reference(tokenizer, pooled_rows, keys, vocabulary, cell)
        assert ids == expected_ids, f"cell {cell}"
        assert values == expected_values, f"cell {cell}"

    other = cell_dataset(served, {**tokenizer, "max_length": tokenizer["max_length"] + 1})
    with pytest.raises(ValueError, match="max_length"):
        other.load_state_dict(state)

