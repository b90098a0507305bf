# Sourced by demo.sh and test.sh: one build directory and one set of build
# settings, so that the demo's build and the suite's build are the same one.
# $CELLFLIGHT_CACHE (default ~/.cache/cellflight) holds the build and the
# test venv, outside the clone, so later runs and later clones reuse them.
cache="${CELLFLIGHT_CACHE:-$HOME/.cache/cellflight}"
mkdir -p "$cache"
# Each crate is built once per change; incremental state would only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Cargo never deletes stale artifacts: after a change of toolchain,
# dependencies or profiles, a second build of the whole stack would pile up
# beside the first (CI once ran out of disk so). The cache's own build
# directory is therefore cleared when those inputs change; a directory given
# as $CARGO_TARGET_DIR is the caller's to manage.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="$cache/target"
    build_key="$({ rustc -vV; cat Cargo.lock Cargo.toml; } | sha256sum | cut -d' ' -f1)"
    key_file="$CARGO_TARGET_DIR/.cellflight-build-key"
    if [ -d "$CARGO_TARGET_DIR" ] && [ "$(cat "$key_file" 2>/dev/null)" != "$build_key" ]; then
        echo "toolchain, Cargo.lock or Cargo.toml changed: clearing $CARGO_TARGET_DIR" >&2
        rm -rf "$CARGO_TARGET_DIR"
    fi
    mkdir -p "$CARGO_TARGET_DIR"
    echo "$build_key" > "$key_file"
fi
