"""Which failures move a partition's stream to another replica, and the
round of locations it may still try (docs/protocol.md, "Replicas").

An endpoint lists the replicas that serve its partition, in the order to
try them. A stream that fails with UNAVAILABLE (a replica down, a broken
connection, or one silent past the client's `failover_timeout`) or ABORTED
goes on at the next location from the next batch it has not yielded. After
a failure, each location is tried at most once, the next one first and the
one that failed last, until a batch arrives; when every one has failed, the
last error is raised, naming every location and why it failed. Any other
error (a bad request, a missing grant or dataset, a replaced version) is
the same on every replica and is raised at once.
"""

from __future__ import annotations

from typing import Sequence

from .errors import CellflightError

FAILS_OVER = frozenset({"UNAVAILABLE", "ABORTED"})


def fails_over(error: BaseException) -> bool:
    """Whether another replica (or the same one, asked again) may serve
    what this error interrupted."""
    return isinstance(error, CellflightError) and error.code in FAILS_OVER


class Locations:
    """Where one partition is read from: the endpoint's locations in order,
    the current one, and the failures of the round under way."""

    def __init__(self, locations: Sequence[str], partition: int):
        if not locations:
            raise ValueError("an endpoint needs at least one location to read it from")
        self.locations, self.partition = list(locations), partition
        self.at = 0
        self.round_from: int | None = None  # the batch due when the round began
        self.failures: dict[str, str] = {}  # location -> why it failed, this round
        self.untried: set[str] = set()  # locations this round has yet to try

    @property
    def current(self) -> str:
        return self.locations[self.at]

    def fail(self, error: CellflightError, next_batch: int) -> None:
        """Records that the current location failed with `error` while
        batch `next_batch` was due, and moves to the next location; raises
        when every location has had its try in this round."""
        if self.round_from != next_batch:  # a batch arrived since: a new round
            self.round_from, self.failures = next_batch, {}
            self.untried = set(self.locations)
        self.failures[self.current] = str(error)
        if not self.untried:
            raise exhausted(error, self.partition, next_batch, self.failures)
        self.at = (self.at + 1) % len(self.locations)
        self.untried.discard(self.current)


def exhausted(error: CellflightError, partition: int, next_batch: int, failures: dict[str, str]) -> CellflightError:
    """`error`'s kind, saying where the partition stopped and why each
    location failed."""
    reasons = "; ".join(f"{location}: {reason}" for location, reason in failures.items())
    message = (
        f"partition {partition} could not be read from batch {next_batch} at any of its "
        f"{len(failures)} locations: {reasons}"
    )
    raised = type(error)(message, error.code)
    raised.__cause__ = error
    return raised
