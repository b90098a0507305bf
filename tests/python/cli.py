"""Finding and running the real `cellflight` binary."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cellflight_dataset import Dataset, load_dataset

REPO = Path(__file__).resolve().parents[2]


def binary_path() -> Path:
    if os.environ.get("CELLFLIGHT_BIN"):
        return Path(os.environ["CELLFLIGHT_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    return (target if target.is_absolute() else REPO / target) / "debug" / "cellflight"


class Cellflight:
    """Runs the binary; every call has a timeout so a hang fails the test."""

    def __init__(self, exe: Path):
        self.exe = exe

    def argv(self, *args) -> list[str]:
        return [str(self.exe), *map(str, args)]

    def run(self, *args, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Runs the binary to its end (in `env`, default this process's environment)."""
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, env=env)

    def popen(self, *args, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Starts the binary (in `env`, default this process's environment).
        Its log (stderr) goes to a file, read with `log()`: a server logging
        for a whole test module never blocks on a full pipe."""
        with tempfile.NamedTemporaryFile("w", prefix="cellflight-", suffix=".log", delete=False) as log_file:
            process = subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
        process.log_path = Path(log_file.name)
        return process

    def ok(self, *args, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = self.run(*args, timeout=timeout, env=env)
        assert result.returncode == 0, describe(result)
        return result

    def fails(self, *args, mentions=(), env: dict[str, str] | None = None) -> str:
        """Runs a command that must fail; its stderr must contain every one of
        `mentions` (case-insensitively). Returns stderr."""
        result = self.run(*args, env=env)
        assert result.returncode != 0, describe(result)
        assert result.stderr.strip(), f"no error message on stderr\n{describe(result)}"
        missing = [m for m in mentions if str(m).lower() not in result.stderr.lower()]
        assert not missing, f"stderr does not mention {missing}\n{describe(result)}"
        return result.stderr

    def ingest(self, source: Path, output: Path, *flags) -> Dataset:
        """Ingests into `output` (its parent made first) and loads the result."""
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        self.ok("ingest", source, output, *flags)
        return load_dataset(output)


def log(process: subprocess.Popen) -> str:
    """What a process started with `Cellflight.popen` has logged so far."""
    return process.log_path.read_text()


def wait_until(condition: Callable[[], bool], seconds: float, failure: str) -> None:
    """Polls `condition` until it holds; after `seconds`, fails with `failure`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.1)


def status_bytes(pid: int, field: str) -> int:
    """A `kB` field of /proc/PID/status, in bytes."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


def describe(result: subprocess.CompletedProcess) -> str:
    return (
        f"$ {shlex.join(map(str, result.args))}\nexit code {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
