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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo build --workspace --all-targets --locked
cargo test --workspace --locked

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

step "pytest"
export CELLFLIGHT_BIN="$CARGO_TARGET_DIR/debug/cellflight"
"$venv/bin/python" -m pytest tests/python -q
