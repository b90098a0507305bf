"""The deployment under deploy/ as data: the Kubernetes manifests, the
Deployment's server container and its flags, the Dockerfile's stages, and
the sizes both speak in."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

from cli import REPO

DEPLOY = REPO / "deploy"
MANIFESTS = DEPLOY / "kubernetes"


def manifest_files() -> list[Path]:
    return sorted(MANIFESTS.glob("*.yaml"))


def manifests() -> list[dict]:
    """Every object of every manifest file (a file may hold several)."""
    return [doc for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest(kind: str, name: str) -> dict:
    found = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name} under {MANIFESTS}"
    return found[0]


def server_container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def flags(container: dict) -> dict[str, str]:
    """The container's `--name=value` args (after the subcommand), by name.
    Each flag is written once, in that form, so a reader sees its value."""
    subcommand, *rest = container["args"]
    assert subcommand == "serve", container["args"]
    parsed = {}
    for arg in rest:
        name, equals, value = arg.partition("=")
        assert name.startswith("--") and equals, f"{arg!r}: write flags as --name=value"
        assert name not in parsed, f"{name} given twice"
        parsed[name] = value
    return parsed


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
_UNITS.update({"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4})


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes quantity of bytes, e.g. `9Gi` or `500M`."""
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity).groups()
    return int(number) * _UNITS[unit]


def flag_bytes(size: str) -> int:
    """A cellflight size flag, e.g. `20GiB` or `512MiB`."""
    number, unit = re.fullmatch(r"(\d+)(|B|KiB|MiB|GiB|TiB)", size).groups()
    return int(number) * {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}[unit]


def seconds(duration: str) -> int:
    """A duration flag in whole seconds or minutes, e.g. `30s`."""
    number, unit = re.fullmatch(r"(\d+)(s|min)", duration).groups()
    return int(number) * {"s": 1, "min": 60}[unit]


@dataclass
class Instruction:
    name: str
    value: str


@dataclass
class Stage:
    """One FROM of a Dockerfile and the instructions after it."""

    image: str
    alias: str | None
    instructions: list[Instruction]

    def values(self, name: str) -> list[str]:
        return [i.value for i in self.instructions if i.name == name]

    def commands(self) -> list[list[str]]:
        """Each shell command of the stage's RUNs (split at `&&`), as words,
        without BuildKit's `--mount` options."""
        words = [shlex.split(run) for run in self.values("RUN")]
        commands: list[list[str]] = []
        for run in words:
            command: list[str] = []
            for word in run:
                if word == "&&":
                    commands.append(command)
                    command = []
                elif not (word.startswith("--mount=") and not command):
                    command.append(word)
            commands.append(command)
        return commands


def dockerfile_stages(path: Path = DEPLOY / "Dockerfile") -> list[Stage]:
    stages: list[Stage] = []
    for entry in DockerfileParser(path=str(path)).structure:
        name, value = entry["instruction"], entry["value"]
        if name == "FROM":
            image, *alias = re.split(r"\s+as\s+", value.strip(), flags=re.IGNORECASE)
            stages.append(Stage(image, alias[0] if alias else None, []))
        elif name != "COMMENT":
            assert stages, f"{name} before the first FROM"
            stages[-1].instructions.append(Instruction(name, value))
    return stages
