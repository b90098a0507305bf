"""Under load: 32 clients streaming at once for a bounded time all get
their data, each at a fair share, and the server's memory stays bounded."""

from __future__ import annotations

import statistics
import threading
import time

import pyarrow.flight as flight
import pytest

from test_serve import serving, start
from test_stream import plan

N_CLIENTS = 32
WARMUP_SECONDS = 3
SECONDS = 10
# Per stream about two fetches of 64 × 8 cells, kept sparse: a few MB in
# all here; the bound leaves room for the runtime and the allocator.
MAX_SERVER_RSS_MIB = 1024


@pytest.fixture(scope="module")
def served(cellflight, tmp_path_factory):
    data = tmp_path_factory.mktemp("load")
    cellflight.ok("generate", data / "cells", "--cells", 20_000, "--genes", 2000, "--seed", 8)
    with serving(cellflight, data / "cells") as (server, address):
        yield server, address


class Reader(threading.Thread):
    """Reads one partition over and over on its own connection, counting
    the cells received while `measuring` is set."""

    def __init__(self, address, ticket, measuring: threading.Event, stop: threading.Event):
        super().__init__(daemon=True)
        self.address, self.ticket, self.measuring, self.stop = address, ticket, measuring, stop
        self.cells = 0
        self.error: BaseException | None = None

    def run(self):
        try:
            client = flight.connect(self.address)
            while not self.stop.is_set():
                reader = client.do_get(self.ticket)
                for chunk in reader:
                    if self.measuring.is_set():
                        self.cells += chunk.data.num_rows
                    if self.stop.is_set():
                        reader.cancel()
                        break
        except BaseException as error:  # reported by the test
            self.error = error


def peak_rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_32_clients_at_once_get_fair_shares_without_errors_in_bounded_memory(served):
    server, address = served
    info = plan(flight.connect(address), batch_size=64, fetch_factor=8, partitions=N_CLIENTS)
    measuring, stopping = threading.Event(), threading.Event()
    readers = [Reader(address, e.ticket, measuring, stopping) for e in info.endpoints]
    for r in readers:
        r.start()
    time.sleep(WARMUP_SECONDS)
    measuring.set()
    time.sleep(SECONDS)
    measuring.clear()
    stopping.set()
    for r in readers:
        r.join(timeout=30)
    assert [r.error for r in readers if r.error] == []
    cells = [r.cells for r in readers]
    median = statistics.median(cells)
    rss = peak_rss_mib(server.pid)
    print(f"\n{N_CLIENTS} clients, {SECONDS} s: {sum(cells) / SECONDS:,.0f} cells/s in all, per client median "
          f"{median / SECONDS:,.0f}, min {min(cells) / SECONDS:,.0f}, max {max(cells) / SECONDS:,.0f}; "
          f"server peak RSS {rss:,.0f} MiB")  # fmt: skip
    assert median > 0
    unfair = [c for c in cells if abs(c - median) > 0.25 * median]
    assert not unfair, f"clients outside ±25% of the median {median}: {sorted(cells)}"
    assert rss < MAX_SERVER_RSS_MIB
