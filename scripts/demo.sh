#!/usr/bin/env bash
# Runs `cellflight serve` on the built-in demo dataset (100,000 Tahoe-like
# cells, generated on first run into $CELLFLIGHT_CACHE, by default
# ~/.cache/cellflight). Extra arguments go to `serve`, e.g.
# `scripts/demo.sh --listen 127.0.0.1:50052`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-env.sh
export CELLFLIGHT_CACHE_DIR="${CELLFLIGHT_CACHE_DIR:-$cache}"
exec cargo run --locked --quiet -p cellflight -- serve "$@"
