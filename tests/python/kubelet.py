"""What the kubelet does with a pod's container, done here without a cluster,
so a test can run the real binary exactly as a manifest says:

- the environment from literal values, Secrets and the downward API, in
  order, each value's `$(VAR)` references expanded as Kubernetes does, and
  the same expansion applied to the container's args;
- Secret volumes laid out as the kubelet's atomic writer lays them (a
  timestamped directory holding the files, a `..data` link to it, one link
  per key through `..data`), with the volume's `defaultMode` and the pod's
  `fsGroup`; emptyDir volumes as empty directories the pod may write;
- the image's ENTRYPOINT run with the container's args, as the pod's user.

Two stand-ins, as a pod has a filesystem and a network of its own: a mount
path or image path named in args is the directory that stands for it under
a pod root, and the pod's network namespace is a loopback address of its
own (its POD_IP), so an address the container listens on as 0.0.0.0 is that
address here."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

# `$$` is a literal `$`; `$(NAME)` is NAME's value when NAME is defined
# earlier in the environment, else left as written (Kubernetes' expansion).
_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """`text` with its `$(VAR)` references to `env` expanded, as Kubernetes
    expands a container's env values, command and args."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def secret_data(secret: dict) -> dict[str, bytes]:
    """A Secret manifest's files: `data` (base64) overlaid with `stringData`,
    which wins, as the API server merges them."""
    files = {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}
    files.update({key: value.encode() for key, value in (secret.get("stringData") or {}).items()})
    return files


def container_env(container: dict, secrets: dict[str, dict[str, bytes]], fields: dict[str, str]) -> dict[str, str]:
    """The container's environment: each `env` entry in order, from a value,
    a Secret's key (`secrets`: name → files) or a downward API field
    (`fields`: fieldPath → value). An optional key a Secret lacks leaves its
    variable unset; any other missing source fails, naming it."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        value = _env_value(var, secrets, fields, env)
        if value is not None:
            env[var["name"]] = value
    return env


def _env_value(var: dict, secrets, fields, env: dict[str, str]) -> str | None:
    if "value" in var:
        return expand(var["value"], env)
    source = var["valueFrom"]
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        assert path in fields, f"{var['name']}: no value given for the downward API field {path}"
        return fields[path]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        files = secrets.get(ref["name"], {})
        if ref["key"] in files:
            return files[ref["key"]].decode()
        assert ref.get("optional", False), f"{var['name']}: Secret {ref['name']} has no key {ref['key']}"
        return None
    raise AssertionError(f"{var['name']}: a source this stand-in does not know: {sorted(source)}")


@dataclass
class Pod:
    """One pod of a Deployment's template, laid out under `root` (a directory
    the pod's user can reach) and addressed as `ip`."""

    spec: dict
    root: Path
    ip: str
    namespace: str
    mounts: dict[str, Path] = field(default_factory=dict)

    @property
    def security(self) -> dict:
        return self.spec.get("securityContext", {})

    def install_image_file(self, image_path: str, source: Path) -> None:
        """Puts `source` where the image holds `image_path` (a hard link, or a
        copy across filesystems), readable and executable by the pod."""
        target = self.host_path(image_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    def host_path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def mount_volumes(self, container: dict, secrets: dict[str, dict[str, bytes]]) -> None:
        """Every volume the container mounts, at its mount path."""
        volumes = {volume["name"]: volume for volume in self.spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            target = self.host_path(mount["mountPath"])
            if "secret" in volume:
                source = volume["secret"]
                write_secret_volume(target, secrets[source["secretName"]], source.get("defaultMode", 0o644))
            elif "emptyDir" in volume:
                target.mkdir(parents=True)
                target.chmod(0o777)
            else:
                raise AssertionError(f"volume {volume['name']}: a kind this stand-in does not know")
            self._own_by_fs_group(target)
            self.mounts[mount["mountPath"]] = target

    def _own_by_fs_group(self, volume: Path) -> None:
        """What `fsGroup` does to a volume: everything in it of that group,
        directories set-group-ID so new files inherit it. Only root can give
        files away; run as anyone else, the files stay theirs, their modes
        as the kubelet sets them."""
        group = self.security.get("fsGroup")
        if group is None or os.geteuid() != 0:
            return
        for path in [volume, *volume.rglob("*")]:
            os.lchown(path, 0, group)
            if path.is_dir() and not path.is_symlink():
                path.chmod(path.stat().st_mode & 0o7777 | 0o2000)

    def argv(self, container: dict, entrypoint: list[str], env: dict[str, str]) -> list[str]:
        """The process the container runs: the image's ENTRYPOINT (the
        container gives no command) then its args, expanded against `env`,
        with mount paths and the image's files under the pod root and
        0.0.0.0 as the pod's address."""
        assert "command" not in container, "the container overrides the image's ENTRYPOINT"
        program = [str(self.host_path(entrypoint[0])), *entrypoint[1:]]
        return program + [self._here(expand(arg, env)) for arg in container.get("args", [])]

    def _here(self, arg: str) -> str:
        for container_path, host in sorted(self.mounts.items(), key=lambda item: -len(item[0])):
            arg = re.sub(re.escape(container_path) + r"(?=/|$)", str(host), arg)
        return arg.replace("0.0.0.0", self.ip)

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
        """Runs `argv` from the pod's root (the image sets no WORKDIR) with
        only `env` (a container inherits nothing else), as the pod's user and
        groups when this process may switch to them."""
        with open(log_path, "w") as log_file:
            return subprocess.Popen(
                argv, cwd=self.root, env=env, stdout=subprocess.PIPE, stderr=log_file, text=True, **self._identity()
            )

    def _identity(self) -> dict:
        if os.geteuid() != 0:
            return {}
        security = self.security
        groups = [security["fsGroup"]] if "fsGroup" in security else []
        return {"user": security["runAsUser"], "group": security["runAsGroup"], "extra_groups": groups}


def write_secret_volume(target: Path, files: dict[str, bytes], mode: int) -> None:
    """`files` as the kubelet's atomic writer publishes a Secret: written
    into `..YYYY_MM_DD_HH_MM_SS.N/` with `mode`, which `..data` links to,
    and reached by one link per key, `KEY -> ..data/KEY`. The volume is a
    tmpfs whose root is world-writable and sticky; the timestamped
    directory is 0755."""
    target.mkdir(parents=True)
    target.chmod(0o1777)
    stamp = datetime.now(timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.") + str(time.monotonic_ns())
    (target / stamp).mkdir(mode=0o755)
    for key, content in files.items():
        path = target / stamp / key
        path.write_bytes(content)
        path.chmod(mode)
    (target / "..data").symlink_to(stamp)
    for key in files:
        (target / key).symlink_to(f"..data/{key}")


def pod_root() -> Path:
    """An empty directory for a pod's files that the pod's user can reach
    (unlike pytest's tmp_path, private to the user running the tests)."""
    root = Path(tempfile.mkdtemp(prefix="cellflight-pod-"))
    root.chmod(0o755)
    return root
