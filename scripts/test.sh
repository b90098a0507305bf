#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, the Rust tests, and the
# Python end-to-end tests against the real `cellflight` binary.
#
# Builds once, in the dev profile (dependencies optimised), shared by the
# Rust tests and the binary the Python tests run. Keeps the build and a
# Python venv in $CELLFLIGHT_CACHE (see build-env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/build-env.sh

step() { printf '\n== %s\n' "$*"; }

step "no test reads outside the clone"
# The project is developed with a directory of data and notes beside the
# clone; a user's clone has nothing beside it, so nothing here may refer to
# it (the real test files come from tests/data/fetch_real_files.py).
sibling='\.\./+shared|["]shared["]|shared/(data|notes|seed)'
if grep -rInE --exclude-dir=.git --exclude-dir=target "$sibling" . ; then
    echo "the lines above refer to a directory beside the clone; use the fetched test data (tests/data/README.md)" >&2
    exit 1
fi

step "python venv ($cache/venv)"
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || {
        echo "python3 -m venv failed: on Debian, install it with: apt-get install python3-venv" >&2
        exit 1
    }
fi
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum tests/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -r tests/requirements.txt
    echo "$wanted" > "$stamp"
fi

step "real .h5ad test files ($cache/test-data)"
CELLFLIGHT_TEST_DATA="$("$venv/bin/python" tests/data/fetch_real_files.py "$cache/test-data")"
export CELLFLIGHT_TEST_DATA

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy, and the build the tests run"
# One compilation for both: clippy-driver is rustc with clippy's lints, so
# building the workspace's own crates with it (the dependencies are built by
# rustc as usual) lints every target and leaves the artifacts the tests run.
# `cargo clippy` would compile every dependency a second time, in check mode:
# 11 minutes of a run from an empty cache here.
export RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/clippy-rustc.sh"
cargo build --workspace --all-targets --locked

step "cargo test"
cargo test --workspace --locked

step "pytest"
export CELLFLIGHT_BIN="$CARGO_TARGET_DIR/debug/cellflight"
"$venv/bin/python" -m pytest tests/python -q
