"""`cellflight ingest` refuses bad input with a message on stderr naming the
file and the object (or argument) at fault, exits non-zero, and writes
nothing: no dataset, no hidden leftovers."""

import re

import h5py
import pytest

import h5ad_files as hf


@pytest.fixture
def source(tmp_path):
    return hf.small_h5ad(tmp_path / "in" / "small.h5ad")


@pytest.fixture
def output(tmp_path):
    """Where the dataset would go; its parent starts empty."""
    (tmp_path / "out").mkdir()
    return tmp_path / "out" / "demo"


def assert_nothing_written(output):
    assert list(output.parent.iterdir()) == [], f"left behind: {list(output.parent.iterdir())}"


def test_a_file_that_is_not_hdf5(cellflight, tmp_path, output):
    path = tmp_path / "notes.h5ad"
    path.write_text("cell,gene,count\n1,2,3\n")
    cellflight.fails("ingest", path, output, mentions=["notes.h5ad", "hdf5"])
    assert_nothing_written(output)


def test_an_hdf5_file_without_x(cellflight, source, output):
    with h5py.File(source, "r+") as f:
        del f["X"]
    stderr = cellflight.fails("ingest", source, output, mentions=["small.h5ad"])
    assert re.search(r"\bX\b", stderr), stderr
    assert_nothing_written(output)


def test_a_decreasing_indptr(cellflight, source, output):
    indptr = hf.read_dataset(source, "X/indptr")
    indptr[10] = indptr[11] + 1
    hf.replace_dataset(source, "X/indptr", indptr)
    cellflight.fails("ingest", source, output, mentions=["small.h5ad", "X/indptr"])
    assert_nothing_written(output)


def test_a_gene_index_out_of_range(cellflight, source, output):
    indices = hf.read_dataset(source, "X/indices")
    indices[-5] = 20  # n_genes is 20
    hf.replace_dataset(source, "X/indices", indices)
    cellflight.fails("ingest", source, output, mentions=["small.h5ad", "X/indices"])
    assert_nothing_written(output)


@pytest.mark.parametrize("name", ["Bad-Name", "9lives", "tahoe-100m", "_hidden"])
def test_an_invalid_dataset_name(cellflight, source, output, name):
    cellflight.fails("ingest", source, output.parent / name, mentions=[name])
    assert_nothing_written(output)


def test_an_existing_output_needs_force(cellflight, source, output):
    first = cellflight.ingest(source, output)
    cellflight.fails("ingest", source, output, mentions=["exists", "--force", "demo"])
    assert cellflight.ingest(source, output, "--force").version != first.version
    assert [p.name for p in output.parent.iterdir()] == ["demo"]


def test_layer_and_raw_together(cellflight, source, output):
    cellflight.fails("ingest", source, output, "--layer", "counts", "--raw", mentions=["--layer", "--raw"])
    assert_nothing_written(output)


def test_a_missing_input_file(cellflight, tmp_path, output):
    cellflight.fails("ingest", tmp_path / "absent.h5ad", output, mentions=["absent.h5ad"])
    assert_nothing_written(output)


def test_raw_when_the_file_has_none(cellflight, source, output):
    stderr = cellflight.fails("ingest", source, output, "--raw", mentions=["small.h5ad"])
    assert re.search(r"\braw\b", stderr), stderr
    assert_nothing_written(output)


def test_a_malformed_memory_size(cellflight, source, output):
    cellflight.fails("ingest", source, output, "--memory", "lots", mentions=["--memory", "lots"])
    assert_nothing_written(output)


def test_data_and_indices_of_different_lengths(cellflight, source, output):
    hf.replace_dataset(source, "X/data", hf.read_dataset(source, "X/data")[:-3])
    stderr = cellflight.fails("ingest", source, output, mentions=["small.h5ad", "data", "indices"])
    assert re.search(r"\bX\b", stderr), stderr
    assert_nothing_written(output)
