"""`"format": "tokens"` against the real server over a real .h5ad file:
every cell's Geneformer and scGPT tokens equal, cell for cell, the numpy
implementations below, written from the published descriptions and the
rules of docs/protocol.md (ties, cells with fewer genes than fit, cells
with no count at all or no gene in the output space, gene selections,
scGPT after a transform and its seeded choice); each epoch holds every
cell once; the plan and tickets carry the vocabulary's hash; bad
vocabularies are refused by name; and CellDataset yields tensors and
refuses to resume with another tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re

import anndata
import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
import scipy.sparse
import torch
from torch.utils.data import DataLoader

import client_helpers  # noqa: F401  (this checkout's package first)
from cellflight_dataset import load_dataset
from test_serve import serving

from cellflight.torch import CellDataset  # noqa: E402
from cellflight.vocabulary import from_geneformer, from_scgpt, write_vocabulary  # noqa: E402

PAD, CLS, EOS = 0, 1, 2
MEDIANS = np.array([0.5, 1.0, 2.0, 4.0])  # few distinct medians: ties within a cell are common


ZERO_CELLS = [3, 77]  # emptied: cells with no count at all (total 0)


@pytest.fixture(scope="module")
def source_file(data_file, tmp_path_factory):
    """The real file with the cells ZERO_CELLS emptied (none of its cells
    is), written as .h5ad."""
    adata = anndata.read_h5ad(data_file("wu2020_200_v0_11.h5ad"))
    kept = np.ones(adata.n_obs)
    kept[ZERO_CELLS] = 0
    X = scipy.sparse.csr_matrix(scipy.sparse.diags(kept) @ scipy.sparse.csr_matrix(adata.X))
    X.eliminate_zeros()
    adata.X = X
    path = tmp_path_factory.mktemp("tokens-source") / "wu_with_empty_cells.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def source(source_file):
    """The counts and gene ids, as anndata reads them."""
    adata = anndata.read_h5ad(source_file)
    X = scipy.sparse.csr_matrix(adata.X)
    assert all(X[cell].nnz == 0 for cell in ZERO_CELLS)
    return X, np.asarray(adata.var_names)


@pytest.fixture(scope="module")
def vocabulary(source):
    """Token ids (shuffled) and medians of the genes; every 7th gene has
    no token, so it is dropped."""
    _, gene_ids = source
    rng = np.random.default_rng(17)
    kept = [g for i, g in enumerate(gene_ids) if i % 7 != 3]
    ids = rng.permutation(len(kept)) + 3
    tokens = {"<pad>": PAD, "<cls>": CLS, "<eos>": EOS, **{g: int(t) for g, t in zip(kept, ids)}}
    medians = {g: float(rng.choice(MEDIANS)) for g in kept}
    return tokens, medians


@pytest.fixture(scope="module")
def data(cellflight, source_file, vocabulary, tmp_path_factory):
    data = tmp_path_factory.mktemp("tokens")
    cellflight.ingest(source_file, data / "wu")
    tokens, medians = vocabulary
    # Geneformer's published dictionaries are pickled dicts: convert them as a user would.
    (data / "tokens.pkl").write_bytes(pickle.dumps(tokens))
    (data / "medians.pkl").write_bytes(pickle.dumps(medians))
    from_geneformer(data / "tokens.pkl", data / "medians.pkl", data / "gf.vocabulary.parquet")
    # scGPT's published vocab.json names its end-of-cell token <eoc>.
    scgpt_vocab = {("<eoc>" if key == "<eos>" else key): token for key, token in tokens.items()}
    (data / "vocab.json").write_text(json.dumps(scgpt_vocab))
    from_scgpt(data / "vocab.json", data / "sc.vocabulary.parquet")
    first = next(k for k in tokens if not k.startswith("<"))
    write_vocabulary(data / "twice.vocabulary.parquet", {**tokens, first: CLS}, medians)
    # A repeated key: written by hand, as a dict cannot hold one.
    table = pa.table({"key": ["<pad>", first, first], "token_id": pa.array([0, 5, 6], pa.uint32())})
    pq.write_table(table, data / "repeated.vocabulary.parquet")
    write_vocabulary(data / "no_median.vocabulary.parquet", tokens, {k: v for k, v in medians.items() if k != first})
    return data


@pytest.fixture(scope="module")
def address(cellflight, data):
    with serving(cellflight, data) as (server, address):
        yield address


@pytest.fixture(scope="module")
def client(address):
    return flight.connect(address)


def plan(client, **request) -> flight.FlightInfo:
    return client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps({"dataset": "wu", **request})))


def epoch(client, **request) -> tuple[flight.FlightInfo, list[pa.RecordBatch]]:
    info = plan(client, **request)
    return info, [chunk.data for e in info.endpoints for chunk in client.do_get(e.ticket)]


def rows(batches, column: str) -> dict[int, list[int]]:
    """Each real cell's row of `column` (padded or ragged), by cell id."""
    out = {}
    for batch in batches:
        values = batch.column(column).to_pylist()
        for cell, row, padding in zip(batch.column("cell_id").to_pylist(), values, batch.column("is_padding").to_pylist()):
            if not padding:
                assert cell not in out, f"cell {cell} twice in the epoch"
                out[cell] = row
    return out


# --- the references -----------------------------------------------------------------


def output_space(gene_ids, genes=None, query_below=None) -> np.ndarray:
    """The stored gene of each output position."""
    if genes is not None:
        where = {g: i for i, g in enumerate(gene_ids)}
        return np.array([where[g] for g in genes])
    n = len(gene_ids) if query_below is None else query_below
    return np.arange(n)


def token_table(gene_ids, stored, tokens, medians=None):
    """Output position → token id (-1: none) and median."""
    keys = gene_ids[stored]
    ids = np.array([tokens.get(k, -1) for k in keys])
    meds = np.array([(medians or {}).get(k, np.nan) for k in keys])
    return ids, meds


def finish(tokens, *, max_length, cls, eos, padded, values=None):
    """The row with its specials, padded: (ids, values, mask)."""
    ids = ([CLS] if cls else []) + list(tokens) + ([EOS] if eos else [])
    vals = ([0] if cls else []) + list(values if values is not None else [0] * len(tokens)) + ([0] if eos else [])
    mask = [True] * len(ids)
    if padded:
        fill = max_length - len(ids)
        ids, vals, mask = ids + [PAD] * fill, vals + [0] * fill, mask + [False] * fill
    return ids, vals, mask


def geneformer_reference(X, cell, stored, ids, meds, *, max_length, cls=False, eos=False, padded=True):
    """Rank-value encoding: count / total (all stored genes) × 10,000 /
    median; non-zero genes with a token by that value descending, ties by
    output position; the first max_length − specials."""
    row = X[cell]
    total = row.data.astype(np.float64).sum()
    dense = np.zeros(X.shape[1])
    dense[row.indices] = row.data
    counts = dense[stored]
    positions = np.flatnonzero((counts != 0) & (ids >= 0)) if total != 0 else np.array([], int)
    value = counts[positions] / total * 10_000 / meds[positions]
    order = np.lexsort((positions, -value))
    kept = positions[order][: max_length - cls - eos]
    return finish(ids[kept], max_length=max_length, cls=cls, eos=eos, padded=padded)


def splitmix64(x):
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def scgpt_reference(positions, values, ids, cell, *, seed, epoch, n_bins, max_length, cls=False, eos=False, padded=True):
    """scGPT binning of the cell's non-zero values as csr sends them
    (`positions`, `values`), over genes with a token: edges
    np.quantile(values, linspace(0, 1, n_bins − 1)), bins np.digitize; if
    more genes than fit, those of smallest splitmix64 key, in position order."""
    values = np.asarray(values, dtype=np.float64)
    keep = (values != 0) & (ids[positions] >= 0)
    positions, values = np.asarray(positions)[keep], values[keep]
    bins = np.digitize(values, np.quantile(values, np.linspace(0, 1, n_bins - 1))) if len(values) else np.array([], int)
    limit = max_length - cls - eos
    if len(positions) > limit:
        cell_key = splitmix64(splitmix64(splitmix64(seed) ^ np.uint64(epoch)) ^ np.uint64(cell))
        keys = splitmix64(cell_key ^ positions.astype(np.uint64))
        chosen = np.sort(np.argsort(keys, kind="stable")[:limit])
        positions, bins = positions[chosen], bins[chosen]
    return finish(ids[positions], max_length=max_length, cls=cls, eos=eos, padded=padded, values=bins.tolist())


# --- Geneformer ---------------------------------------------------------------------


GENEFORMER_CASES = {
    "padded, cells longer and shorter than max_length": dict(max_length=512),
    "cls and eos, every cell shorter than max_length": dict(max_length=8192, cls=True, eos=True),
    "ragged": dict(max_length=300, eos=True, padding="none"),
}


@pytest.mark.parametrize("case", list(GENEFORMER_CASES))
def test_geneformer_tokens_equal_the_reference_cell_for_cell_once_per_epoch(client, source, vocabulary, case):
    X, gene_ids = source
    tokenizer = {"kind": "geneformer", "vocabulary": "gf", **GENEFORMER_CASES[case]}
    _, batches = epoch(client, format="tokens", tokenizer=tokenizer, partitions=3, batch_size=16, seed=4)
    stored = output_space(gene_ids)
    ids, meds = token_table(gene_ids, stored, *vocabulary)
    padded = tokenizer.get("padding") != "none"
    got_ids = rows(batches, "input_ids")
    assert sorted(got_ids) == list(range(X.shape[0])), "every cell once"
    masks = rows(batches, "attention_mask") if padded else {}
    lengths = []
    for cell, row in got_ids.items():
        expected, _, mask = geneformer_reference(
            X, cell, stored, ids, meds, max_length=tokenizer["max_length"], cls=tokenizer.get("cls", False),
            eos=tokenizer.get("eos", False), padded=padded,
        )
        assert row == expected, f"cell {cell}"
        if padded:
            assert masks[cell] == mask, f"cell {cell}"
        lengths.append(sum(mask))
    assert "values" not in batches[0].schema.names
    if case.startswith("padded"):
        assert 0 < sum(n < 512 for n in lengths) < len(lengths), "cells both longer and shorter than max_length"


def test_geneformer_over_a_gene_selection_tokenizes_only_its_genes_and_ranks_ties_by_its_order(client, source, vocabulary):
    X, gene_ids = source
    # Named genes in reverse stored order: ties break by output position, not stored index.
    named = [g for g in gene_ids[:3000][::-1] if g in vocabulary[0]]
    tokenizer = {"kind": "geneformer", "vocabulary": "gf", "max_length": 64, "cls": True}
    _, batches = epoch(client, format="tokens", tokenizer=tokenizer, genes=named, batch_size=50)
    stored = output_space(gene_ids, genes=named)
    ids, meds = token_table(gene_ids, stored, *vocabulary)
    for cell, row in rows(batches, "input_ids").items():
        assert row == geneformer_reference(X, cell, stored, ids, meds, max_length=64, cls=True)[0], f"cell {cell}"

    _, batches = epoch(client, format="tokens", tokenizer=tokenizer, genes_query="gene_idx < 10", batch_size=50)
    stored = output_space(gene_ids, query_below=10)
    ids, meds = token_table(gene_ids, stored, *vocabulary)
    got = rows(batches, "input_ids")
    only_specials = [cell for cell, row in got.items() if row[1] == PAD]
    assert only_specials, "cells without a selected gene: <cls> and padding only"
    for cell, row in got.items():
        assert row == geneformer_reference(X, cell, stored, ids, meds, max_length=64, cls=True)[0], f"cell {cell}"


# --- scGPT --------------------------------------------------------------------------


def csr_values(client, **request) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each cell's (output positions, values) as the csr stream sends them."""
    _, batches = epoch(client, format="csr", sampling="sequential", batch_size=100, **request)
    out = {}
    for batch in batches:
        indices, values = batch.column("indices"), batch.column("values")
        for i, cell in enumerate(batch.column("cell_id").to_pylist()):
            out[cell] = (indices[i].values.to_numpy(), values[i].values.to_numpy().astype(np.float64))
    return out


SCGPT_CASES = {
    "log-normalised, seeded choice": dict(
        tokenizer=dict(max_length=200, cls=True), transform={"normalize_total": 1e4, "log1p": True}
    ),
    "stored counts, every gene fits, eos, ragged": dict(tokenizer=dict(max_length=8192, eos=True, padding="none", n_bins=11)),
    "a gene selection": dict(tokenizer=dict(max_length=40, n_bins=5), genes_query="stat_n_cells > 20"),
}


@pytest.mark.parametrize("case", list(SCGPT_CASES))
def test_scgpt_tokens_and_bins_equal_the_reference_cell_for_cell_once_per_epoch(client, source, vocabulary, case):
    X, gene_ids = source
    spec = SCGPT_CASES[case]
    tokenizer = {"kind": "scgpt", "vocabulary": "sc", **spec["tokenizer"]}
    selection = {k: spec[k] for k in ("transform", "genes_query") if k in spec}
    seed, epoch_number = 9, 2
    _, batches = epoch(client, format="tokens", tokenizer=tokenizer, partitions=2, batch_size=32, seed=seed,
                       epoch=epoch_number, **selection)  # fmt: skip
    sent = csr_values(client, **selection)
    if "transform" in spec:
        cell = next(c for c in sent if X[c].nnz)  # one with counts
        row = X[cell]
        counts = row.data.astype(np.float64)[np.argsort(row.indices)]
        np.testing.assert_allclose(sent[cell][1], np.log1p(counts * (1e4 / counts.sum())), rtol=1e-6)
    if "genes_query" in spec:
        n_cells = np.diff(X.tocsc().indptr)
        stored = np.flatnonzero(n_cells > 20)
    else:
        stored = output_space(gene_ids)
    ids, _ = token_table(gene_ids, stored, vocabulary[0])
    padded = tokenizer.get("padding") != "none"
    got_ids, got_values = rows(batches, "input_ids"), rows(batches, "values")
    assert sorted(got_ids) == list(range(X.shape[0])), "every cell once"
    chosen = 0
    for cell, row in got_ids.items():
        positions, values = sent[cell]
        expected_ids, expected_values, _ = scgpt_reference(
            positions, values, ids, cell, seed=seed, epoch=epoch_number, n_bins=tokenizer.get("n_bins", 51),
            max_length=tokenizer["max_length"], cls=tokenizer.get("cls", False), eos=tokenizer.get("eos", False),
            padded=padded,
        )
        assert row == expected_ids, f"cell {cell}"
        assert got_values[cell] == expected_values, f"cell {cell}"
        chosen += np.count_nonzero(values) > tokenizer["max_length"]
    if case.startswith("log-normalised"):
        assert chosen > 0, "some cells have more genes than fit"


def test_the_seeded_choice_changes_with_the_epoch_and_not_with_the_partitioning(client):
    tokenizer = {"kind": "scgpt", "vocabulary": "sc", "max_length": 50}
    one = rows(epoch(client, format="tokens", tokenizer=tokenizer, epoch=1)[1], "input_ids")
    three = rows(epoch(client, format="tokens", tokenizer=tokenizer, epoch=1, partitions=3)[1], "input_ids")
    other = rows(epoch(client, format="tokens", tokenizer=tokenizer, epoch=2)[1], "input_ids")
    assert one == three
    assert one != other


# --- plans, tickets, refusals --------------------------------------------------------


def test_scgpts_vocab_json_converts_with_its_end_of_cell_token_as_eos(data):
    table = pq.read_table(data / "sc.vocabulary.parquet")
    ids = dict(zip(table.column("key").to_pylist(), table.column("token_id").to_pylist()))
    assert ids["<eos>"] == EOS and "<eoc>" not in ids
    assert table.column("median").null_count == len(table), "scGPT has no medians"


@pytest.mark.parametrize(
    "vocab, words",
    [
        ({"<eoc>": 2, "<eos>": 3}, "both <eoc> and <eos>"),
        ({"A1BG": "7"}, "token ids must be integers"),
        ({"A1BG": True}, "token ids must be integers"),
    ],
)
def test_an_unusable_scgpt_vocabulary_is_refused_saying_why(tmp_path, vocab, words):
    with pytest.raises(ValueError, match=words):
        from_scgpt(vocab, tmp_path / "x.vocabulary.parquet")



def test_the_plan_and_its_tickets_carry_the_tokenizer_and_the_vocabulary_hash(client, data):
    info = plan(client, format="tokens", tokenizer={"kind": "scgpt", "vocabulary": "sc"})
    digest = hashlib.sha256((data / "sc.vocabulary.parquet").read_bytes()).hexdigest()
    assert json.loads(info.app_metadata)["tokenizer"] == {
        "kind": "scgpt", "vocabulary": "sc", "max_length": 2048, "cls": False, "eos": False, "padding": "max_length",
        "n_bins": 51, "vocabulary_hash": digest,
    }  # fmt: skip
    ticket = json.loads(info.endpoints[0].ticket.ticket)
    assert ticket["vocabulary_hash"] == digest
    assert ticket["request"]["tokenizer"]["n_bins"] == 51
    assert info.schema.field("input_ids").type == pa.list_(pa.field("item", pa.uint32(), False), 2048)


def test_a_ticket_whose_vocabulary_changed_or_went_is_refused_naming_it(client, data, vocabulary):
    tokens, _ = vocabulary
    path = data / "moving.vocabulary.parquet"
    write_vocabulary(path, tokens)
    info = plan(client, format="tokens", tokenizer={"kind": "scgpt", "vocabulary": "moving"})
    before = json.loads(info.endpoints[0].ticket.ticket)["vocabulary_hash"]
    write_vocabulary(path, {**tokens, "<cls>": 10**7})
    after = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(pa.ArrowInvalid, match=f"hash {before}.*now has hash {after}"):
        client.do_get(info.endpoints[0].ticket).read_all()
    path.unlink()
    with pytest.raises(pa.ArrowKeyError, match="unknown vocabulary moving"):
        client.do_get(info.endpoints[0].ticket).read_all()


@pytest.mark.parametrize(
    "tokenizer, words",
    [
        ({"kind": "geneformer", "vocabulary": "repeated"}, 'keys given more than once: "'),
        ({"kind": "geneformer", "vocabulary": "twice"}, "token ids given more than once: 1"),
        ({"kind": "geneformer", "vocabulary": "no_median"}, "geneformer needs a positive median for each gene"),
        ({"kind": "geneformer", "vocabulary": "sc", "cls": True}, "needs a positive median"),
        ({"kind": "scgpt", "vocabulary": "nowhere"}, "unknown vocabulary nowhere"),
        ({"kind": "scgpt", "vocabulary": "sc", "max_length": 70000}, "tokenizer.max_length must be at most 65536"),
        ({"kind": "scgpt", "vocabulary": "sc", "n_bins": 1}, "tokenizer.n_bins must be from 2"),
    ],
)
def test_bad_vocabularies_and_tokenizers_are_refused_naming_what(client, tokenizer, words):
    with pytest.raises(pa.ArrowException, match=re.escape(words)):
        plan(client, format="tokens", tokenizer=tokenizer)


def test_a_minibatch_of_tokens_over_the_size_limit_is_refused(client):
    tokenizer = {"kind": "scgpt", "vocabulary": "sc", "max_length": 65536}
    with pytest.raises(pa.ArrowInvalid, match="lower batch_size or tokenizer.max_length"):
        plan(client, format="tokens", tokenizer=tokenizer, batch_size=1024)


# --- Python -------------------------------------------------------------------------


def test_cell_dataset_yields_token_tensors_and_its_state_records_the_tokenizer(address, source, vocabulary):
    X, gene_ids = source
    tokenizer = {"kind": "scgpt", "vocabulary": "sc", "max_length": 128, "cls": True}
    ds = CellDataset(address, "wu", format="tokens", tokenizer=tokenizer, batch_size=32, num_workers=0)
    batches = list(ds.track(DataLoader(ds, batch_size=None, num_workers=0)))
    batch = batches[0]
    assert batch["input_ids"].dtype == torch.int64 and batch["input_ids"].shape == (32, 128)
    assert batch["values"].dtype == torch.int64 and batch["attention_mask"].dtype == torch.bool
    assert "X" not in batch
    assert (batch["input_ids"][:, 0] == CLS).all()
    cells = torch.cat([b["cell_id"][~b["is_padding"]] for b in batches]).tolist()
    assert sorted(cells) == list(range(X.shape[0]))

    state = json.loads(json.dumps(ds.state_dict()))  # as a checkpoint keeps it
    assert state["tokenizer"] == ds.metadata["tokenizer"]
    assert len(state["tokenizer"]["vocabulary_hash"]) == 64
    same = CellDataset(address, "wu", format="tokens", tokenizer=tokenizer, batch_size=32, num_workers=0)
    same.load_state_dict(state)
    other = CellDataset(address, "wu", format="tokens", tokenizer={**tokenizer, "n_bins": 21}, batch_size=32,
                        num_workers=0)  # fmt: skip
    with pytest.raises(ValueError, match="'n_bins': 51.*'n_bins': 21"):
        other.load_state_dict(state)


def test_cell_dataset_ragged_tokens_come_with_cu_seqlens(address, client):
    tokenizer = {"kind": "geneformer", "vocabulary": "gf", "max_length": 100, "padding": "none"}
    ds = CellDataset(address, "wu", format="tokens", tokenizer=tokenizer, batch_size=10, num_workers=0,
                     sampling="sequential")  # fmt: skip
    batch = next(iter(DataLoader(ds, batch_size=None, num_workers=0)))
    assert batch["cu_seqlens"].dtype == torch.int32 and len(batch["cu_seqlens"]) == 11
    expected = rows(epoch(client, format="tokens", tokenizer=tokenizer, sampling="sequential", batch_size=10)[1],
                    "input_ids")  # fmt: skip
    offsets = batch["cu_seqlens"].tolist()
    for r, cell in enumerate(batch["cell_id"].tolist()):
        assert batch["input_ids"][offsets[r]:offsets[r + 1]].tolist() == expected[cell]


def test_the_geneformer_converter_writes_keys_ids_and_medians(data, vocabulary):
    tokens, medians = vocabulary
    table = pq.read_table(data / "gf.vocabulary.parquet")
    assert table.schema.names == ["key", "token_id", "median"]
    assert table.column("key").to_pylist() == list(tokens)
    assert table.column("token_id").to_pylist() == list(tokens.values())
    assert table.column("median").to_pylist()[:3] == [None, None, None], "special tokens have no median"
    assert table.column("median").to_pylist()[3:] == [medians[k] for k in list(tokens)[3:]]
