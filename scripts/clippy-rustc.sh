#!/bin/sh
# rustc with clippy's lints, warnings denied: scripts/test.sh builds the
# workspace's crates with it (cargo runs it as RUSTC_WORKSPACE_WRAPPER, as
# `clippy-rustc.sh RUSTC ARGS...`; clippy-driver skips the RUSTC).
exec clippy-driver "$@" -D warnings
