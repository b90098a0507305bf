"""`connect()` and `Client`: datasets, SQL, cohorts, AnnData subsets and the
minibatch loader, over plain `pyarrow.flight` (docs/protocol.md)."""

from __future__ import annotations

import gc
import json
import os
import re
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.flight as flight

from .errors import NotFound, translate

DATASET_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Keys of the stream request (docs/protocol.md, "Request"), in the order the
# loader accepts them as keywords.
REQUEST_KEYS = (
    "dataset", "query", "batch_size", "block_size", "fetch_factor", "seed", "epoch", "partitions",
    "obs_columns", "genes", "gene_column", "genes_query", "format", "transform", "tokenizer", "sampling",
    "weights", "balance_by", "num_samples", "drop_last",
)
# The server refuses a minibatch that could exceed this (docs/protocol.md).
MINIBATCH_LIMIT = 64 << 20
# Seconds a replica may stay silent (no answer to HTTP/2 pings) before the
# client gives up on it and fails over (docs/protocol.md, "Replicas").
DEFAULT_FAILOVER_TIMEOUT = 20.0


def connect(
    address: str, *, token: str | None = None, username: str | None = None, password: str | None = None,
    failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT, **options
) -> "Client":
    """A client of the cellflight server at `address`: `grpc://host:port`,
    `grpc+tls://host:port`, or `grpc+unix:///path/to/socket` for a server on
    the same host.

    A server with authentication wants a `token` (default: the environment
    variable `CELLFLIGHT_TOKEN`), or a `username` and `password` traded for
    the token once, by a Flight Handshake (docs/operations.md).

    `failover_timeout`: seconds a server may leave the connection silent
    (HTTP/2 pings unanswered, e.g. a hung replica) before the client gives
    up on it; a stream then goes on at the endpoint's next replica
    (docs/protocol.md, "Replicas").

    `options` go to `pyarrow.flight.connect`: e.g. `tls_root_certs` (the
    PEM CA of a server's certificate), `cert_chain` and `private_key` for
    mutual TLS, `generic_options`. For a Unix socket the `:authority` is set
    to `localhost`, which the server's HTTP/2 stack requires
    (docs/protocol.md)."""
    return Client(
        address, token=token, username=username, password=password, failover_timeout=failover_timeout, **options
    )


def quote_identifier(name: str) -> str:
    """`name` as a double-quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def check_dataset_name(name: str) -> str:
    if not isinstance(name, str) or DATASET_NAME.fullmatch(name) is None:
        raise ValueError(f"invalid dataset name {name!r}: dataset names are [a-z][a-z0-9_]* (at most 63 characters)")
    return name


def is_full_query(query: str) -> bool:
    """Whether a cohort `query` is a whole statement (SELECT/WITH returning
    `cell_id`) rather than a predicate, by the protocol's rule."""
    return re.match(r"\s*(select|with)\b", query, re.IGNORECASE) is not None


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset the server holds (from ListFlights)."""

    name: str
    version: str
    n_cells: int
    n_genes: int
    nnz: int
    schema: pa.Schema  # its `cells` table


# gRPC does not survive fork(): a child process (a DataLoader worker) forked
# while its parent had gRPC running hangs on its first call. So before any
# fork the idle connections of every Client are closed (they reopen on next
# use) and the fork waits for gRPC's threads to end. If they do not (a stream
# or a connection of another library is open), the child refuses to use gRPC
# with an explanation instead of hanging.
_CLIENTS: "weakref.WeakSet[Client]" = weakref.WeakSet()
_GRPC_THREAD_NAMES = ("event_engine", "grpc_global_tim", "lifeguard", "grpc_")
_FORK_WAIT = 2.0  # seconds
_fork_state = {"grpc_alive": False, "poisoned": False}
_open_streams = [0]  # streams being read in this process


def _grpc_threads() -> int:
    """gRPC threads running in this process (-1 if it cannot be told)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return -1
    count = 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        count += name.startswith(_GRPC_THREAD_NAMES)
    return count


def _before_fork() -> None:
    if _open_streams[0] == 0:
        for client in list(_CLIENTS):
            client._close_all()
    alive = _grpc_threads()
    if alive > 0 and _open_streams[0] == 0:
        gc.collect()  # a dropped pyarrow FlightClient holds gRPC until collected
        # gRPC's threads end within milliseconds of its last channel closing;
        # a count that stays put means a connection is still open elsewhere.
        deadline, settled = time.monotonic() + _FORK_WAIT, time.monotonic() + 0.25
        while alive > 0 and time.monotonic() < min(deadline, settled):
            time.sleep(0.002)
            now = _grpc_threads()
            if now != alive:
                alive, settled = now, time.monotonic() + 0.25
    _fork_state["grpc_alive"] = alive > 0


def _after_fork_in_child() -> None:
    _fork_state["poisoned"] = _fork_state["grpc_alive"]
    _open_streams[0] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _check_fork() -> None:
    if _fork_state["poisoned"]:
        from .errors import CellflightError

        raise CellflightError(
            "this process was forked while gRPC was running in its parent (an open stream or Flight "
            "connection), and gRPC cannot be used after such a fork. Close the parent's streams and "
            "connections before starting workers, or start them with "
            "DataLoader(..., multiprocessing_context='forkserver') (or 'spawn').",
            "FAILED_PRECONDITION",
        )


def _call(fn, *args, **kwargs):
    """Runs a pyarrow Flight call; server errors become CellflightError."""
    try:
        return fn(*args, **kwargs)
    except pa.ArrowException as error:
        raise translate(error) from error


class Client:
    """A connection to a cellflight server. Cheap to pickle: a copy in
    another process (a DataLoader worker) opens its own connection."""

    def __init__(
        self, address: str, *, token: str | None = None, username: str | None = None, password: str | None = None,
        failover_timeout: float = DEFAULT_FAILOVER_TIMEOUT, **options,
    ):
        if not failover_timeout > 0:
            raise ValueError(f"failover_timeout must be a positive number of seconds, not {failover_timeout!r}")
        self.address = address
        self.failover_timeout = float(failover_timeout)
        self._options = dict(options)
        if address.startswith("grpc+unix://"):
            generic = list(self._options.get("generic_options") or [])
            if not any(key == "grpc.default_authority" for key, _ in generic):
                generic.append(("grpc.default_authority", "localhost"))
            self._options["generic_options"] = generic
        if username is not None or password is not None:
            if token is not None:
                raise TypeError("give a token, or a username and password, not both")
            if username is None or password is None:
                raise TypeError("a username needs a password, and a password a username")
            token = self._sign_in(username, password)
        elif token is None:
            token = os.environ.get("CELLFLIGHT_TOKEN") or None
        self._token = token
        self._init_connections()

    def _sign_in(self, username: str, password: str) -> str:
        """The bearer token the server's Handshake trades for these credentials."""
        client = _call(flight.connect, self.address, **self._options)
        try:
            _, value = _call(client.authenticate_basic_token, username, password)
        finally:
            client.close()
        value = value.decode() if isinstance(value, bytes) else value
        return value.removeprefix("Bearer ")

    def _init_connections(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[int, tuple[int, flight.FlightClient]] = {}  # thread id -> (pid, client)
        _CLIENTS.add(self)

    # --- plumbing ---------------------------------------------------------

    def __getstate__(self):
        return {
            "address": self.address, "options": self._options, "token": self._token,
            "failover_timeout": self.failover_timeout,
        }

    def __setstate__(self, state):
        self.address, self._options, self._token = state["address"], state["options"], state["token"]
        self.failover_timeout = state["failover_timeout"]
        self._init_connections()

    def __repr__(self) -> str:
        return f"cellflight.Client({self.address!r})"

    def flight_client(self) -> flight.FlightClient:
        """This thread's `pyarrow.flight.FlightClient` (one per thread and
        process: after a fork the child opens its own)."""
        key, pid = threading.get_ident(), os.getpid()
        with self._lock:
            held = self._connections.get(key)
        if held is not None and held[0] == pid:
            return held[1]
        client = self.new_flight_client()
        with self._lock:
            self._connections[key] = (pid, client)
        return client

    def new_flight_client(self, address: str | None = None) -> flight.FlightClient:
        """A new connection to this client's server, or to `address` (a
        replica an endpoint lists) with the same token and options; a
        stream reader uses one of its own."""
        _check_fork()
        options = {**self._options, "generic_options": self._generic_options()}
        if self._token is not None:
            options["middleware"] = [*options.get("middleware", ()), _BearerToken(self._token)]
        return _call(flight.connect, address or self.address, **options)

    def _generic_options(self) -> list[tuple[str, Any]]:
        """The caller's gRPC channel options, and HTTP/2 keepalive so that
        a server silent for `failover_timeout` (a hung replica keeps its
        socket open) fails the call with UNAVAILABLE: a ping every half of
        it, given half of it to be answered, pinging on a quiet stream too.
        Connecting to a hung server is given up after as long."""
        half = max(1, int(self.failover_timeout * 500))
        keepalive = {
            "grpc.keepalive_time_ms": half,
            "grpc.keepalive_timeout_ms": half,
            "grpc.keepalive_permit_without_calls": 1,
            "grpc.http2.max_pings_without_data": 0,
            # gRPC gives any ping in flight (a flow-control probe's too) a
            # minute unless told: a keepalive ping then waits behind it.
            "grpc.http2.ping_timeout_ms": half,
            "grpc.min_reconnect_backoff_ms": 2 * half,
        }
        given = list(self._options.get("generic_options") or [])
        given_keys = {key for key, _ in given}
        return given + [(key, value) for key, value in keepalive.items() if key not in given_keys]

    def close(self) -> None:
        """Closes this Client's connections (they reopen on next use)."""
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            held, self._connections = self._connections, {}
        for pid, client in held.values():
            if pid == os.getpid():
                try:
                    client.close()
                except Exception:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get_flight_info(self, command: dict) -> flight.FlightInfo:
        descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
        return _call(self.flight_client().get_flight_info, descriptor)

    def plan(self, **request) -> flight.FlightInfo:
        """`GetFlightInfo` for a stream request (keys of docs/protocol.md;
        None values are left out, so the server's defaults apply)."""
        unknown = sorted(set(request) - set(REQUEST_KEYS))
        if unknown:
            raise TypeError(f"unknown request keys {unknown}; known: {list(REQUEST_KEYS)}")
        command = {k: v for k, v in request.items() if v is not None}
        if "dataset" in command:
            check_dataset_name(command["dataset"])
        return self.get_flight_info(command)

    # --- metadata -----------------------------------------------------------

    def datasets(self) -> list[DatasetInfo]:
        """Every dataset served, by name."""
        out = []
        for info in _call(lambda: list(self.flight_client().list_flights())):
            meta = json.loads(info.app_metadata)
            out.append(
                DatasetInfo(
                    name=json.loads(info.descriptor.command)["dataset"],
                    version=meta["version"], n_cells=meta["n_cells"], n_genes=meta["n_genes"], nnz=meta["nnz"],
                    schema=info.schema,
                )
            )
        return sorted(out, key=lambda d: d.name)

    def dataset(self, name: str | None = None) -> DatasetInfo:
        """One dataset's description (`None`: the only one served)."""
        infos = self.datasets()
        if name is None:
            if len(infos) != 1:
                raise ValueError(f"this server holds {len(infos)} datasets: name one of {[d.name for d in infos]}")
            return infos[0]
        check_dataset_name(name)
        for info in infos:
            if info.name == name:
                return info
        raise NotFound(f"unknown dataset {name!r}; served: {[d.name for d in infos]}")

    def cells_schema(self, dataset: str | None = None) -> pa.Schema:
        """The schema of a dataset's `cells` table (`None`: the default dataset's)."""
        if dataset is not None:
            return self.dataset(dataset).schema
        return self.sql("SELECT * FROM cells LIMIT 0").schema

    def sql(self, query: str) -> pa.Table:
        """One read-only SQL statement over every dataset's `cells` and
        `genes` (schema = dataset name), through the `{"sql": ...}` command."""
        client = self.flight_client()
        info = self.get_flight_info({"sql": query})
        tables = [_call(lambda e=e: client.do_get(e.ticket).read_all()) for e in info.endpoints]
        if not tables:
            return info.schema.empty_table()
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _from(self, dataset: str | None, table: str) -> str:
        if dataset is None:
            return table  # the server's default dataset
        return f"{quote_identifier(check_dataset_name(dataset))}.{table}"

    def _cohort_sql(self, dataset: str | None, select: str, query: str | None, order: str | None) -> str:
        """`SELECT <select> FROM <dataset>.cells` over the cohort `query`, read
        as the stream reads it: a predicate, or a full query returning
        `cell_id` whose unqualified `cells` and `genes` are the dataset's."""
        sql = ""
        where = ""
        if query is not None and is_full_query(query):
            if dataset is not None:
                # Unqualified tables of the user's query must be this
                # dataset's: CTEs of those names shadow the default's.
                sql = f"WITH cells AS (SELECT * FROM {self._from(dataset, 'cells')}), genes AS (SELECT * FROM {self._from(dataset, 'genes')})\n"
            where = f"\nWHERE cell_id IN (\n{query}\n)"
            source = "cells"
        else:
            source = self._from(dataset, "cells")
            if query is not None:
                where = f"\nWHERE (\n{query}\n)"
        sql += f"SELECT {select} FROM {source}{where}"
        if order:
            sql += f"\nORDER BY {order}"
        return sql

    def cells(self, dataset: str | None = None, query: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """The cohort's rows of `cells` (all columns, or `columns`), in
        `cell_id` order. `query` is a cohort as in the stream request."""
        select = "*" if columns is None else ", ".join(quote_identifier(c) for c in _names(columns, "columns"))
        return self.sql(self._cohort_sql(dataset, select, query, order="cell_id"))

    def count(self, dataset: str | None = None, query: str | None = None) -> int:
        """Cells in the cohort."""
        table = self.sql(self._cohort_sql(dataset, "count(*) AS n", query, order=None))
        return int(table.column(0)[0].as_py())

    def genes(self, dataset: str | None = None, query: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows of `genes` (all, or those where the predicate `query` holds),
        in `gene_idx` order."""
        select = "*" if columns is None else ", ".join(quote_identifier(c) for c in _names(columns, "columns"))
        where = "" if query is None else f"\nWHERE (\n{query}\n)"
        return self.sql(f"SELECT {select} FROM {self._from(dataset, 'genes')}{where}\nORDER BY gene_idx")

    def categories(self, dataset: str | None = None, columns: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Each categorical `cells` column's FULL category list, in code
        order (docs/format.md): what the codes of a minibatch index into."""
        from .loader import read_categories

        return read_categories(self, dataset, columns)

    # --- notebooks ------------------------------------------------------------

    def anndata(
        self,
        dataset: str | None = None,
        query: str | None = None,
        genes: Sequence[str] | None = None,
        max_cells: int = 100_000,
        *,
        gene_column: str | None = None,
        genes_query: str | None = None,
        transform: dict | None = None,
        obs_columns: Sequence[str] | None = None,
        stats: bool = False,
    ):
        """The cohort as an `anndata.AnnData`: obs (index `obs_name`,
        categoricals with their full category lists) and X as CSR in the
        stored value type (float32 with a `transform`), var for the output
        gene space. Refuses a cohort above `max_cells` cells before reading
        any of it. `stats=True` keeps the `stat_` columns."""
        from .anndata import read_anndata

        return read_anndata(
            self, dataset, query=query, genes=genes, max_cells=max_cells, gene_column=gene_column,
            genes_query=genes_query, transform=transform, obs_columns=obs_columns, stats=stats,
        )

    # --- training ---------------------------------------------------------------

    def loader(self, dataset: str | None = None, **kwargs):
        """An iterable of minibatches; see `cellflight.Loader`."""
        from .loader import Loader

        return Loader(self, dataset, **kwargs)


class _BearerToken(flight.ClientMiddlewareFactory):
    """Sends `authorization: Bearer TOKEN` with every call of a connection."""

    def __init__(self, token: str):
        super().__init__()
        self._headers = {"authorization": f"Bearer {token}"}

    def start_call(self, info):
        return _SendHeaders(self._headers)


class _SendHeaders(flight.ClientMiddleware):
    def __init__(self, headers: dict[str, str]):
        super().__init__()
        self._headers = headers

    def sending_headers(self):
        return self._headers


def _names(values: Iterable[str] | str, what: str) -> list[str]:
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of names, not a string")
    return [str(v) for v in values]


def as_client(client_or_address: Any) -> Client:
    if isinstance(client_or_address, Client):
        return client_or_address
    if isinstance(client_or_address, str):
        return connect(client_or_address)
    raise TypeError(f"expected a cellflight.Client or an address, not {type(client_or_address).__name__}")
