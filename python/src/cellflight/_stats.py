"""Where an epoch's time goes: what `CellDataset.stats()` reports.

The training loop's waits are timed by `CellDataset.track()`; conversions
and the time readers spent waiting on the server are recorded where the
tensors are made (the loader's threads, or, for DataLoader workers, the
figures travel with each batch and are recorded when it arrives)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

# The loop waiting for data more than this share of its time makes data the bottleneck.
DATA_BOUND_SHARE = 0.1


@dataclass(frozen=True)
class EpochStats:
    """One epoch of the training loop, as far as it has gone.

    `seconds`: since the loop started; `wait_seconds`: of those, waiting for
    the next batch; `convert_seconds`: spent turning Arrow batches into
    tensors (in the loader's threads or the DataLoader workers, so mostly
    alongside the loop); `server_cells_per_s`: the pace the server sends
    at, cells per second of a reader's waiting for them (summed over the
    concurrent streams); `batches`, `cells`: consumed by the loop (cells
    without padding); `bottleneck`: "data" if the loop waited more than
    10% of its time, else "model", and `hint` says what would help."""

    epoch: int
    batches: int
    cells: int
    seconds: float
    wait_seconds: float
    convert_seconds: float
    server_cells_per_s: float
    bottleneck: str
    hint: str

    @property
    def cells_per_s(self) -> float:
        """The loop's pace."""
        return self.cells / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        return (
            f"epoch {self.epoch}: {self.cells:,} cells in {self.batches:,} batches, {self.seconds:.1f} s "
            f"({self.cells_per_s:,.0f} cells/s); waited {self.wait_seconds:.1f} s for data, converting "
            f"{self.convert_seconds:.1f} s, server pace {self.server_cells_per_s:,.0f} cells/s; "
            f"bottleneck: {self.bottleneck} ({self.hint})"
        )


class EpochMeter:
    """Figures of the current epoch, added to from several threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.start(0)

    def start(self, epoch: int) -> None:
        with self._lock:
            self.epoch, self.started, self.last = epoch, time.perf_counter(), None
            self.batches = self.cells = 0
            self.wait = self.convert = self.receive = 0.0
            self.received = 0

    def converted(self, cells: int, convert_seconds: float, receive_seconds: float) -> None:
        with self._lock:
            self.received += cells
            self.convert += convert_seconds
            self.receive += receive_seconds

    def consumed(self, cells: int, wait_seconds: float) -> None:
        with self._lock:
            self.batches += 1
            self.cells += cells
            self.wait += wait_seconds
            self.last = time.perf_counter()

    def report(self, streams: int) -> EpochStats:
        """The figures so far; `streams` read concurrently."""
        with self._lock:
            seconds = (self.last or time.perf_counter()) - self.started
            pace = self.received * streams / self.receive if self.receive else 0.0
            waited = self.wait / seconds if seconds else 0.0
            if waited > DATA_BOUND_SHARE:
                bottleneck = "data"
                hint = (f"the loop waited {waited:.0%} of its time; more streams=, num_workers=0 if it has workers, "
                        "a larger fetch_factor or a less loaded server would help")  # fmt: skip
            else:
                bottleneck = "model"
                hint = f"data was ready {1 - waited:.0%} of the time: a faster step, not the loader, speeds this up"
            return EpochStats(self.epoch, self.batches, self.cells, seconds, self.wait, self.convert, pace,
                              bottleneck, hint)  # fmt: skip
