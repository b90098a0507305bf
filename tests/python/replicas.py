"""Three replicas of one data location on distinct loopback addresses
(127.0.0.2, .3, .4), each advertising itself and listing all three as
peers."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from dataclasses import dataclass

from cli import log

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def free_port(host: str = HOSTS[0]) -> int:
    """A port free now on `host` (the replicas share it, each on its own address)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class Replica:
    process: subprocess.Popen
    uri: str

    def log(self) -> str:
        return log(self.process)


def start_replica(cellflight, data, host: str, port: int, *flags, env=None) -> Replica:
    """A replica of `data` on `host` (in `env`: an object store's settings)."""
    uri = f"grpc://{host}:{port}"
    argv = ("serve", "--data", data, "--listen", f"{host}:{port}", "--advertise", uri, *flags)
    process = cellflight.popen(*argv, env=env)
    first = process.stdout.readline()
    assert first.startswith("cellflight listening on grpc"), first + log(process)
    return Replica(process, uri)


@contextlib.contextmanager
def three_replicas(cellflight, data, env=None, caches=None):
    """The three replicas of `data` (any location `serve --data` takes, in
    `env`), each with --peers naming all three and, under `caches`, a cache
    directory of its own; on the way out each is woken (a test may have
    stopped one) and ended."""
    port = free_port()
    peers = ",".join(f"grpc://{host}:{port}" for host in HOSTS)
    replicas = []
    try:
        for host in HOSTS:
            cache = ("--cache-dir", caches / host) if caches else ()
            replicas.append(start_replica(cellflight, data, host, port, "--peers", peers, *cache, env=env))
        yield replicas
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGCONT)
                replica.process.kill()
                replica.process.wait(timeout=30)
