"""Server errors as Python exceptions carrying the server's message and its
gRPC status code.

pyarrow reports a failed Flight call as an ArrowException whose text holds
the status ("Flight returned invalid argument error, with message: ...");
`translate` turns it into a `CellflightError` subclass with `.code` (the
gRPC status name, e.g. "INVALID_ARGUMENT") and `.message` (the server's
text alone). The subclasses also derive from the matching built-in
exception, so `except ValueError` catches a bad request.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.flight as flight


class CellflightError(Exception):
    """A failed call: `.code` is the gRPC status name, `.message` the
    server's message (without pyarrow's decoration)."""

    code = "UNKNOWN"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(CellflightError, ValueError):
    """A bad request, ticket or SQL statement (INVALID_ARGUMENT)."""

    code = "INVALID_ARGUMENT"


class NotFound(CellflightError, LookupError):
    """An unknown dataset or table (NOT_FOUND)."""

    code = "NOT_FOUND"


class FailedPrecondition(CellflightError):
    """An obs-only dataset asked for a matrix, or a ticket of a dataset
    version that has been replaced (FAILED_PRECONDITION): plan again."""

    code = "FAILED_PRECONDITION"


class ResourceExhausted(CellflightError):
    """A server limit was reached (RESOURCE_EXHAUSTED): SQL memory, row cap."""

    code = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(CellflightError, TimeoutError):
    """A query ran past the server's SQL timeout, or a call past its own."""

    code = "DEADLINE_EXCEEDED"


class Unauthenticated(CellflightError, PermissionError):
    """No token, or one the server does not know (UNAUTHENTICATED)."""

    code = "UNAUTHENTICATED"


class PermissionDenied(CellflightError, PermissionError):
    """A dataset the token has no grant for (PERMISSION_DENIED); the
    message names it."""

    code = "PERMISSION_DENIED"


class Unavailable(CellflightError, ConnectionError):
    """The server cannot be reached (UNAVAILABLE)."""

    code = "UNAVAILABLE"


class Unimplemented(CellflightError, NotImplementedError):
    code = "UNIMPLEMENTED"


class Cancelled(CellflightError):
    code = "CANCELLED"


class Aborted(CellflightError):
    """The server ended a stream it had accepted, e.g. one left unread past
    its --stream-idle-timeout; the loaders resume it from the next batch by
    themselves."""

    code = "ABORTED"


class IncompleteStream(CellflightError):
    """A partition's stream ended without an error before its last batch,
    or skipped one (checked by the client, whatever the server): the
    message says from which start_batch to resume."""

    code = "DATA_LOSS"


class SharedMemoryError(CellflightError):
    """A DataLoader worker could not reserve shared memory for a batch (a
    full or small /dev/shm, or $CELLFLIGHT_SHM_DIR): the message names the
    directory, the bytes needed and the fixes. Raised by the client itself."""

    code = "RESOURCE_EXHAUSTED"


_CLASSES = {
    cls.code: cls
    for cls in (
        InvalidArgument, NotFound, FailedPrecondition, ResourceExhausted, DeadlineExceeded, Unauthenticated,
        PermissionDenied, Unavailable, Unimplemented, Cancelled, Aborted,
    )
}

# How pyarrow words each status ("... returned <words> error, with message: ").
_WORDS = {
    "invalid argument": "INVALID_ARGUMENT",
    "not found": "NOT_FOUND",
    "precondition failed": "FAILED_PRECONDITION",
    "resource exhausted": "RESOURCE_EXHAUSTED",
    "deadline exceeded": "DEADLINE_EXCEEDED",
    "timeout": "DEADLINE_EXCEEDED",
    "unavailable": "UNAVAILABLE",
    "unimplemented": "UNIMPLEMENTED",
    "internal": "INTERNAL",
    "already exists": "ALREADY_EXISTS",
    "out-of-range": "OUT_OF_RANGE",
    "permission denied": "PERMISSION_DENIED",
    "unauthorized": "PERMISSION_DENIED",
    "unauthenticated": "UNAUTHENTICATED",
    "aborted": "ABORTED",
    "data loss": "DATA_LOSS",
    "unknown": "UNKNOWN",
}

_STATUS = re.compile(r"(?:Flight|gRPC) returned (?P<words>[a-z -]+?) error, with message: (?P<message>.*)", re.DOTALL)
_CANCELLED = re.compile(r"(?:Flight|gRPC) cancelled call, with message: (?P<message>.*)", re.DOTALL)
_DEBUG_CODE = re.compile(r"gRPC client debug context: (?P<code>[A-Z_]+):")
# pyarrow's suffixes after the server's message.
_SUFFIXES = (". gRPC client debug context:", ". Client context:", ". Detail:")


def _strip(message: str) -> str:
    for suffix in _SUFFIXES:
        at = message.find(suffix)
        if at >= 0:
            message = message[:at]
    return message.strip()


def translate(error: BaseException) -> BaseException:
    """The `CellflightError` for a pyarrow Flight error; anything else as is."""
    if isinstance(error, CellflightError) or not isinstance(error, pa.ArrowException):
        return error
    text = str(error)
    debug = _DEBUG_CODE.search(text)
    if (m := _STATUS.search(text)) is not None:
        code = _WORDS.get(m.group("words"), "UNKNOWN")
        message = _strip(m.group("message"))
    elif (m := _CANCELLED.search(text)) is not None:
        code, message = "CANCELLED", _strip(m.group("message"))
    elif isinstance(error, flight.FlightError):
        code, message = "UNKNOWN", _strip(text)
    else:
        return error  # a local Arrow error (e.g. a type conversion), not the server's
    if debug is not None:
        code = debug.group("code")  # the status gRPC itself received
    cls = _CLASSES.get(code, CellflightError)
    out = cls(message, code)
    out.__cause__ = error
    return out
