#!/usr/bin/env bash
# The peers' venv: annbatch 0.3.1 on Python 3.11, with what benches/peers
# needs to run scDataset and AnnLoader beside it (requirements.txt, torch).
# `install_annbatch.sh VENV` (PYTHON=python3.11 by default; TORCH_INDEX=URL
# to take torch from another index, e.g. a CPU-only one). Rerunnable: an
# existing venv is reused, pip leaves what is installed alone, and the
# rewrite skips rewritten files.
#
# annbatch declares Python >= 3.12. It is installed without that check and
# without its dependencies, which are then installed at versions that support
# 3.11 (anndata 0.12, zarr 3.1, zarrs, dask); annbatch_py311.py rewrites its
# 3.12-only syntax. A venv of its own keeps these pins away from the test venv.
set -euo pipefail

venv=${1:?usage: install_annbatch.sh VENV}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$venv/bin/python" ] || "${PYTHON:-python3.11}" -m venv "$venv"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)

"${pip[@]}" --no-deps --ignore-requires-python annbatch==0.3.1
"${pip[@]}" "anndata[lazy]>=0.12.9,<0.13" "zarr>=3.1.4,<3.2" "zarrs>=0.2.1" "dask>=2025.9" \
    "pandas>=2.2.2" "scipy>1.15" numpy h5py humanfriendly session-info2 tqdm typing_extensions
"${pip[@]}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch
"${pip[@]}" -r "$here/requirements.txt"

package=$("$venv/bin/python" -c 'import importlib.util; print(importlib.util.find_spec("annbatch").submodule_search_locations[0])')
"$venv/bin/python" "$here/annbatch_py311.py" "$package"
"$venv/bin/python" -c 'import annbatch, scdataset, torch, zarrs; print("annbatch", annbatch.__version__, "ready")'
