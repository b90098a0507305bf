"""Makes an installed annbatch 0.3.1 importable on Python 3.11:
`python annbatch_py311.py SITE_PACKAGES/annbatch`.

annbatch declares Python >= 3.12, but only its syntax and one function need
3.12; its algorithm does not change. Textual rewrites, file by file:

- `type X = ...` aliases become `X = TypeAliasType("X", ...)`
  (typing_extensions; annbatch reads their `__value__`);
- PEP 695 type parameters (`class Loader[T: ...](...)`, `def f[T: ...](...)`)
  are dropped: every annbatch module that has them starts with
  `from __future__ import annotations`, so the names they bound are only
  ever read as strings;
- `itertools.batched` (3.12) becomes a backport, written beside the package.

Idempotent: a rewritten file carries MARK on its first line and is left
alone. Loud: a file listed in EXPECTED where a fix finds nothing to do is an
error (the installed version is not the one this was written for), and so is
any file of the package that still does not compile afterwards.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARK = "# rewritten for Python 3.11 by cellflight's benches/peers/annbatch_py311.py\n"
BACKPORT_MODULE = "_py311_batched.py"
BACKPORT = '''"""itertools.batched (Python 3.12), for annbatch on 3.11."""
from itertools import islice


def batched(iterable, n):
    iterator = iter(iterable)
    while batch := tuple(islice(iterator, n)):
        yield batch
'''

TYPE_ALIAS = re.compile(r"^type (\w+) = (.+)$", re.MULTILINE)
TYPE_PARAMS_START = re.compile(r"^\s*(?:class|def) \w+\[", re.MULTILINE)


def alias_statements(text: str) -> tuple[str, int]:
    """`type X = value` → `X = TypeAliasType("X", value)`, and the import."""
    text, count = TYPE_ALIAS.subn(r'\1 = TypeAliasType("\1", \2)', text)
    if count:
        text = _after_future_import(text, "from typing_extensions import TypeAliasType\n")
    return text, count


def type_parameters(text: str) -> tuple[str, int]:
    """Drops each `[...]` between a class or function name and its `(`. The
    brackets are matched by depth: bounds hold brackets of their own
    (`T: PathLike[str] | str`)."""
    count = 0
    while match := TYPE_PARAMS_START.search(text):
        open_at = match.end() - 1
        close_at = _matching_bracket(text, open_at)
        if text[close_at + 1] != "(":
            raise SystemExit(f"type parameters not followed by '(': {text[match.start():close_at + 2]!r}")
        text = text[:open_at] + text[close_at + 1:]
        count += 1
    return text, count


def itertools_batched(text: str) -> tuple[str, int]:
    """`itertools.batched(` → the backport."""
    text, count = re.subn(r"\bitertools\.batched\(", "batched(", text)
    if count:
        text = _after_future_import(text, "from annbatch._py311_batched import batched\n")
    return text, count


FIXES = {"aliases": alias_statements, "type parameters": type_parameters, "batched": itertools_batched}
EXPECTED = {  # annbatch 0.3.1: the files that need each fix
    "types.py": ["aliases", "type parameters"],
    "loader.py": ["type parameters"],
    "io.py": ["type parameters"],
    "samplers/_class_samplers/_class_sampler.py": ["batched"],
    "samplers/_class_samplers/_weighted_class_sampler.py": ["batched"],
}


def _matching_bracket(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"[": 1, "]": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise SystemExit(f"unbalanced '[' at offset {open_at}")


def _after_future_import(text: str, line: str) -> str:
    """An import placed after `from __future__ import annotations` (which
    must stay the first statement), or first if there is none."""
    future = "from __future__ import annotations\n"
    at = text.find(future)
    at = 0 if at < 0 else at + len(future)
    return text[:at] + line + text[at:]


def rewrite(package: Path) -> None:
    for relative, fixes in EXPECTED.items():
        path = package / relative
        text = path.read_text()
        if text.startswith(MARK):
            continue
        for name in fixes:
            text, count = FIXES[name](text)
            if count == 0:
                raise SystemExit(f"{path}: nothing for the {name!r} fix to rewrite; is this annbatch 0.3.1?")
            print(f"{relative}: {name}: {count}")
        path.write_text(MARK + text)
    (package / BACKPORT_MODULE).write_text(BACKPORT)
    for path in sorted(package.rglob("*.py")):
        try:
            compile(path.read_text(), str(path), "exec")
        except SyntaxError as error:
            raise SystemExit(f"{path} still needs Python > 3.11 after the rewrite: {error}") from error


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    rewrite(Path(sys.argv[1]))
