"""`cellflight inspect`: a summary of a dataset, and with --verify a full
check that exits non-zero naming any fault."""

import json
import re
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cellflight_dataset import parquet_version
from cli import describe


@pytest.fixture(scope="module")
def pbmc(cellflight, data_file, tmp_path_factory):
    return cellflight.ingest(data_file("10x_pbmc68k_reduced.h5ad"), tmp_path_factory.mktemp("inspect") / "pbmc68k")


def type_word(arrow_type: pa.DataType) -> str:
    """A pattern any sensible printing of the column's type matches."""
    if pa.types.is_dictionary(arrow_type):
        return "categor|dict"
    for is_, word in ((pa.types.is_boolean, "bool"), (pa.types.is_integer, "int"), (pa.types.is_floating, "float")):
        if is_(arrow_type):
            return word
    return "str|utf8"


def test_inspect_prints_the_summary(cellflight, pbmc):
    out = re.sub(r"(?<=\d)[,_\u202f](?=\d{3}\b)", "", cellflight.ok("inspect", pbmc.path).stdout)
    m = pbmc.manifest
    for number in (m["n_cells"], m["n_genes"], m["nnz"]):
        assert re.search(rf"\b{number}\b", out), f"{number} not printed:\n{out}"
    assert m["version"] in out and m["matrix"]["value_type"] in out.lower(), out
    lines = out.splitlines()
    for table, layout in ((pbmc.cells, m["cells"]), (pbmc.genes, m["genes"])):
        cardinality = {c["column"]: len(c["categories"]) for c in layout["categoricals"]}
        for field in table.schema:
            if field.name in ("cell_id", "obs_name", "gene_idx", "gene_id") or field.name.startswith("stat_"):
                continue
            line = next((line for line in lines if re.search(rf"\b{field.name}\b", line)), None)
            assert line is not None, f"column {field.name} not printed:\n{out}"
            assert re.search(type_word(field.type), line, re.I), f"no type on {line!r}"
            if field.name in cardinality:
                assert re.search(rf"\b{cardinality[field.name]}\b", line), f"no cardinality on {line!r}"


def test_verify_passes_on_a_sound_dataset(cellflight, pbmc):
    cellflight.ok("inspect", pbmc.path, "--verify")


def overwrite_matrix_bytes(ds):
    path = ds / "matrix.arrow"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def edit_manifest_n_cells(ds):
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["n_cells"] += 1
    (ds / "manifest.json").write_text(json.dumps(manifest))


def change_one_cell_total(ds):
    table = pq.read_table(ds / "cells.parquet")
    totals = table.column("stat_total")
    changed = pa.concat_arrays([pc.add(totals.slice(0, 1), 1.0).combine_chunks(), totals.slice(1).combine_chunks()])
    table = table.set_column(table.schema.get_field_index("stat_total"), "stat_total", changed)
    version = parquet_version(ds / "cells.parquet")  # kept, so only the total is wrong
    pq.write_table(table.replace_schema_metadata({"cellflight.version": version}), ds / "cells.parquet")


def delete_genes_parquet(ds):
    (ds / "genes.parquet").unlink()


# case: (corruption, pattern the report must match)
CORRUPTIONS = {
    "matrix_bytes_overwritten": (overwrite_matrix_bytes, r"matrix\.arrow"),
    "manifest_n_cells_edited": (edit_manifest_n_cells, r"manifest|n_cells|\b701\b"),
    "a_cell_total_changed": (change_one_cell_total, r"stat_total"),
    "genes_parquet_missing": (delete_genes_parquet, r"genes\.parquet"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_verify_names_the_fault(cellflight, pbmc, tmp_path, case):
    corrupt, pattern = CORRUPTIONS[case]
    ds = shutil.copytree(pbmc.path, tmp_path / "pbmc68k")
    corrupt(ds)
    result = cellflight.run("inspect", ds, "--verify")
    assert result.returncode != 0, describe(result)
    assert re.search(pattern, result.stdout + result.stderr, re.I), describe(result)


def test_verify_catches_a_matrix_from_another_version(cellflight, pbmc, data_file, tmp_path):
    """A matrix.arrow identical in content but written by another ingest."""
    other = cellflight.ingest(data_file("10x_pbmc68k_reduced.h5ad"), tmp_path / "other" / "pbmc68k")
    ds = shutil.copytree(pbmc.path, tmp_path / "pbmc68k")
    shutil.copy(other.path / "matrix.arrow", ds / "matrix.arrow")
    result = cellflight.run("inspect", ds, "--verify")
    assert result.returncode != 0, describe(result)
    text = (result.stdout + result.stderr).lower()
    assert "matrix.arrow" in text and "version" in text, describe(result)


def test_inspect_refuses_a_directory_that_is_no_dataset(cellflight, tmp_path):
    (tmp_path / "empty").mkdir()
    cellflight.fails("inspect", tmp_path / "empty", mentions=["empty"])
