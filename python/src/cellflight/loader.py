"""The minibatch loader: plans a stream request, reads its endpoints in
parallel threads with a bounded prefetch, and hands out numpy minibatches
whose arrays are views of the Arrow buffers received (no copy)."""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from . import client as _client
from .client import Client, _call, as_client, check_dataset_name
from ._failover import Locations, fails_over
from .errors import IncompleteStream, translate

FORMATS = ("csr", "dense", "tokens")
# Columns of the stream that are not obs columns.
STREAM_COLUMNS = ("cell_id", "indices", "values", "x", "input_ids", "attention_mask", "is_padding")
# Schema metadata holding the width of the output gene space (docs/protocol.md).
N_GENES_METADATA_KEY = b"cellflight.n_genes"


@dataclass
class Tokens:
    """The tokens of a `"format": "tokens"` minibatch (docs/protocol.md).

    Padded rows (`"padding": "max_length"`, the default): `input_ids`
    (uint32), `values` (scGPT's bins, uint16; None for Geneformer) and
    `attention_mask` (bool), each of shape (cells, max_length). Ragged rows
    (`"padding": "none"`): `input_ids` and `values` are every row's tokens
    one after another, row r's at `offsets[r]:offsets[r+1]` (`offsets`:
    int32, cells + 1), and `attention_mask` is None."""

    input_ids: np.ndarray
    values: np.ndarray | None = None
    attention_mask: np.ndarray | None = None
    offsets: np.ndarray | None = None

    @property
    def padded(self) -> bool:
        return self.offsets is None


def tokens_of(record_batch: pa.RecordBatch) -> Tokens:
    """The token columns as numpy: views of the Arrow buffers, except the
    mask (Arrow packs booleans into bits)."""
    names = record_batch.schema.names
    ids = record_batch.column("input_ids")
    if pa.types.is_fixed_size_list(ids.type):
        rows, width = len(ids), ids.type.list_size
        square = lambda column: primitive(column.flatten()).reshape(rows, width)  # noqa: E731
        return Tokens(
            input_ids=square(ids),
            values=square(record_batch.column("values")) if "values" in names else None,
            attention_mask=square(record_batch.column("attention_mask")),
        )
    offsets, flat_ids = list_parts(ids)
    values = list_parts(record_batch.column("values"))[1].to_numpy() if "values" in names else None
    return Tokens(input_ids=flat_ids.to_numpy(), values=values, offsets=offsets)


@dataclass
class Batch:
    """One minibatch, as numpy arrays viewing the received Arrow buffers.

    `csr`: row r's genes are `indices[indptr[r]:indptr[r+1]]` (positions in
    the output gene space), its values the same slice of `values` (the
    stored type, float32 after a transform). `dense`: `x`, float32, shape
    (cells, n_genes). `tokens`: `tokens` (a `Tokens`). `obs`: each obs column asked for, in order; a
    categorical as int32 codes into the loader's `categories[name]` (-1 for
    a missing value). `partition`, `index`: where the batch is in its
    stream (its `app_metadata`), what resuming needs. `receive_seconds`:
    how long its reader thread waited for it from the server.

    The arrays are read-only views of Arrow memory (which Flight does not
    align to the element size); copy one before writing to it."""

    cell_id: np.ndarray
    is_padding: np.ndarray
    n_genes: int
    partition: int
    index: int
    epoch: int
    obs: dict[str, np.ndarray] = field(default_factory=dict)
    indptr: np.ndarray | None = None
    indices: np.ndarray | None = None
    values: np.ndarray | None = None
    x: np.ndarray | None = None
    tokens: Tokens | None = None
    record_batch: pa.RecordBatch | None = field(default=None, repr=False)
    receive_seconds: float = 0.0  # how long its reader waited for it from the server

    def __len__(self) -> int:
        return len(self.cell_id)

    @property
    def format(self) -> str:
        if self.tokens is not None:
            return "tokens"
        return "dense" if self.x is not None else "csr"

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.cell_id), self.n_genes)

    @property
    def X(self):
        """The matrix: a `scipy.sparse.csr_matrix` for `csr` (needs scipy;
        indptr is shared, indices are widened to int32 as scipy requires),
        the dense array for `dense`."""
        if self.x is not None:
            return self.x
        try:
            import scipy.sparse
        except ImportError as error:
            raise ImportError("batch.X as a scipy.sparse.csr_matrix needs scipy (pip install scipy); "
                              "batch.indptr, batch.indices and batch.values are the same matrix in numpy") from error
        return scipy.sparse.csr_matrix((self.values, self.indices.astype(np.int32), self.indptr), shape=self.shape)

    def toarray(self, dtype=np.float32) -> np.ndarray:
        """The minibatch as a dense (cells, n_genes) array."""
        if self.x is not None:
            return self.x.astype(dtype, copy=False)
        out = np.zeros(self.shape, dtype=dtype)
        rows = np.repeat(np.arange(len(self.cell_id)), np.diff(self.indptr))
        out[rows, self.indices] = self.values
        return out


# --- Arrow to numpy, without copies --------------------------------------------


def list_parts(column: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(offsets from 0 as numpy, the child values of exactly these rows) of
    a List array; zero-copy unless the array is a slice not starting at 0."""
    offsets = column.offsets.to_numpy()
    start, end = int(offsets[0]), int(offsets[-1])
    child = column.values.slice(start, end - start)
    if start:
        offsets = offsets - start
    return offsets, child


def primitive(array: pa.Array) -> np.ndarray:
    """A numpy view of a primitive array; a copy only where Arrow's layout
    differs from numpy's (nulls, booleans, strings)."""
    if array.null_count == 0 and (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        return array.to_numpy()
    return array.to_numpy(zero_copy_only=False)


def obs_array(column: pa.Array) -> np.ndarray:
    if pa.types.is_dictionary(column.type):
        codes = column.indices
        return primitive(codes.fill_null(-1) if codes.null_count else codes)
    return primitive(column)


def to_batch(record_batch: pa.RecordBatch, metadata: dict, n_genes: int, epoch: int,
             receive_seconds: float = 0.0) -> Batch:
    names = record_batch.schema.names
    batch = Batch(
        cell_id=record_batch.column("cell_id").to_numpy(),
        is_padding=record_batch.column("is_padding").to_numpy(zero_copy_only=False),
        n_genes=n_genes,
        partition=int(metadata["partition"]),
        index=int(metadata["batch"]),
        epoch=epoch,
        obs={name: obs_array(record_batch.column(name)) for name in names if name not in STREAM_COLUMNS},
        record_batch=record_batch,
        receive_seconds=receive_seconds,
    )
    if "x" in names:
        column = record_batch.column("x")
        batch.x = column.flatten().to_numpy().reshape(len(column), column.type.list_size)
    elif "input_ids" in names:
        batch.tokens = tokens_of(record_batch)
    else:
        batch.indptr, indices = list_parts(record_batch.column("indices"))
        batch.indices = indices.to_numpy()
        _, values = list_parts(record_batch.column("values"))
        batch.values = values.to_numpy()
    return batch


# --- what a request's stream holds -----------------------------------------------


def categorical_columns(schema: pa.Schema, columns: Sequence[str] | None = None) -> list[str]:
    return [f.name for f in schema if pa.types.is_dictionary(f.type) and (columns is None or f.name in columns)]


def read_categories(client: Client, dataset: str | None, columns: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The full category list of each categorical `cells` column (or of
    those in `columns`): the dictionary of a one-cell stream, which the
    protocol defines as the dataset's full list in code order."""
    wanted = categorical_columns(client.cells_schema(dataset), columns)
    if columns is not None:
        missing = [c for c in columns if c not in wanted]
        if missing:
            raise ValueError(f"not categorical columns of {dataset or 'the default dataset'}'s cells: {missing}")
    if not wanted:
        return {}
    plan = client.plan(dataset=dataset, obs_columns=wanted, batch_size=1, sampling="sequential")
    reader = _call(client.flight_client().do_get, plan.endpoints[0].ticket)
    try:
        chunk = _call(reader.read_chunk)
    except StopIteration:
        return {name: [] for name in wanted}
    finally:
        reader.cancel()
    return {name: chunk.data.column(name).dictionary.to_pylist() for name in wanted}


def ticket_at(ticket: flight.Ticket, start_batch: int) -> flight.Ticket:
    """The same ticket, resuming at `start_batch` (docs/protocol.md, Tickets)."""
    if not start_batch:
        return ticket
    body = json.loads(ticket.ticket)
    body["start_batch"] = int(start_batch)
    return flight.Ticket(json.dumps(body).encode())


# --- reading endpoints in threads ---------------------------------------------------

_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


@dataclass(frozen=True)
class Stream:
    """One partition to read: its ticket, the batches it must deliver
    (from the ticket's start_batch to the plan's batches_per_partition),
    and the endpoint's locations."""

    ticket: flight.Ticket
    partition: int
    batches: range
    locations: tuple[str, ...] = ()  # the replicas to read it from, in order; none: the client's address


def check_position(stream: Stream, expected: int, metadata: dict) -> int:
    """The next batch due after one with `metadata`, which must be batch
    `expected` of `stream`'s partition."""
    position = (metadata.get("partition"), metadata.get("batch"))
    if position != (stream.partition, expected):
        raise IncompleteStream(
            f"partition {position[0]} batch {position[1]} arrived where partition "
            f"{stream.partition} batch {expected} was due"
        )
    return expected + 1


def check_ended(stream: Stream, next_batch: int) -> None:
    """A stream that ended without an error must have sent its last batch:
    otherwise the epoch would silently miss cells."""
    if next_batch < stream.batches.stop:
        raise IncompleteStream(
            f"the stream of partition {stream.partition} ended before batch {next_batch} "
            f"of its {stream.batches.stop}; resume from start_batch {next_batch}"
        )


class _StreamReader(threading.Thread):
    """Reads one endpoint on its own connection into a bounded queue,
    converting each record batch with `convert` on the way, and checking
    that its batches come in order up to the last; a location that fails
    hands the partition to the next (`_failover`)."""

    def __init__(self, client: Client, stream: Stream, convert: Callable, depth: int, stop: threading.Event):
        super().__init__(daemon=True, name="cellflight-stream")
        self.client, self.stream, self.convert = client, stream, convert
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = stop
        self.reader = None
        self.connection = None
        self.next_batch = stream.batches.start
        self.locations = Locations(stream.locations or (client.address,), stream.partition)

    def put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self):
        try:
            self.connect()
            if self.read_resuming():
                self.put(_END)
        except BaseException as error:  # handed to the consumer, which re-raises it
            if not self.stop.is_set():
                self.put(_Failed(translate(error)))
        finally:
            self.disconnect()

    def connect(self) -> None:
        """A connection of this reader's own to the current location."""
        self.disconnect()
        self.connection = self.client.new_flight_client(self.locations.current)

    def disconnect(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:
                pass
            self.connection = None

    def read_resuming(self) -> bool:
        """Reads the partition to its end (True) or until stopped (False).
        A stream that fails over (a replica down or silent, or one that
        aborted the stream, e.g. left unread past its idle timeout while
        the trainer paused) is requested again from the next batch at the
        next location, within one round of them (`_failover`)."""
        while True:
            try:
                return self.read_from(self.next_batch)
            except Exception as error:
                error = translate(error)
                if not fails_over(error) or self.stop.is_set():
                    raise error
                self.locations.fail(error, self.next_batch)
                self.connect()

    def read_from(self, start_batch: int) -> bool:
        self.reader = self.connection.do_get(ticket_at(self.stream.ticket, start_batch))
        while not self.stop.is_set():
            asked = time.perf_counter()
            try:
                chunk = self.reader.read_chunk()
            except StopIteration:
                check_ended(self.stream, self.next_batch)
                return True
            received = time.perf_counter() - asked
            metadata = json.loads(chunk.app_metadata.to_pybytes())
            self.next_batch = check_position(self.stream, self.next_batch, metadata)
            if not self.put(self.convert(chunk.data, metadata, received)):
                return False
        return False

    def cancel(self):
        reader = self.reader
        if reader is not None:
            try:
                reader.cancel()
            except Exception:
                pass


def read_streams(client: Client, streams: Sequence[Stream], convert: Callable, prefetch: int) -> Iterator[Any]:
    """Every batch of every stream, read concurrently (one thread
    and connection per ticket, at most `prefetch` converted batches waiting
    in all), handed out round-robin across streams: stream 0's first batch,
    stream 1's first, ..., so the order does not depend on timing."""
    stop = threading.Event()
    depth = max(1, math.ceil(prefetch / max(1, len(streams))))
    readers = [_StreamReader(client, stream, convert, depth, stop) for stream in streams]
    _client._open_streams[0] += 1
    for reader in readers:
        reader.start()
    try:
        live = list(readers)
        while live:
            for reader in list(live):
                item = reader.queue.get()
                if item is _END:
                    live.remove(reader)
                elif isinstance(item, _Failed):
                    raise item.error
                else:
                    yield item
    finally:
        stop.set()
        for reader in readers:
            reader.cancel()
        for reader in readers:
            reader.join(timeout=5)
        _client._open_streams[0] -= 1


# --- the loader -------------------------------------------------------------------


class Loader:
    """Minibatches of a cohort, for numpy.

        loader = client.loader("demo", query="plate = 'plate3'", batch_size=64, streams=2)
        for epoch in range(3):
            loader.set_epoch(epoch)
            for batch in loader:     # cellflight.Batch: batch.indptr/indices/values, batch.obs, batch.X
                ...

    Keywords are the request keys of docs/protocol.md (`query`,
    `batch_size`, `block_size`, `fetch_factor`, `seed`, `epoch`, `genes`,
    `gene_column`, `genes_query`, `format`, `transform`, `tokenizer`,
    `obs_columns`, `sampling`, `weights`, `balance_by`, `num_samples`,
    `drop_last`); left out, the server's defaults apply.

    `streams=k` plans the epoch as k partitions and reads the k endpoints
    concurrently, each on its own connection and thread, handing batches out
    round-robin (partition 0's batch 0, partition 1's batch 0, ...). The
    epoch still holds every cohort cell exactly once among rows with
    `is_padding` false, but its order depends on k (the partitions are part
    of the request), so keep k fixed to reproduce a run.

    `prefetch`: converted batches held ready in all (default 2 per stream)
    while the caller computes. `len(loader)` is the batches of one epoch.

    For a share of a larger epoch (what `cellflight.torch.CellDataset`
    does per worker), give `partitions` (the total) and `read` (the
    partitions this loader reads), and `start_batches` to resume them.
    """

    def __init__(
        self,
        client: Client | str,
        dataset: str | None = None,
        *,
        query: str | None = None,
        batch_size: int = 64,
        block_size: int | None = None,
        fetch_factor: int | None = None,
        seed: int = 0,
        epoch: int = 0,
        genes: Sequence[str] | None = None,
        gene_column: str | None = None,
        genes_query: str | None = None,
        format: str = "csr",
        transform: dict | None = None,
        tokenizer: dict | None = None,
        obs_columns: Sequence[str] | None = None,
        sampling: str | None = None,
        weights: str | None = None,
        balance_by: str | None = None,
        num_samples: int | None = None,
        drop_last: bool | None = None,
        streams: int = 1,
        prefetch: int | None = None,
        partitions: int | None = None,
        read: Sequence[int] | None = None,
        start_batches: dict[int, int] | None = None,
        convert: Callable[[Batch], Any] | None = None,
    ):
        self.client = as_client(client)
        if dataset is not None:
            check_dataset_name(dataset)
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        if isinstance(obs_columns, str) or isinstance(genes, str):
            raise TypeError("obs_columns and genes are lists of names, not a string")
        if streams < 1:
            raise ValueError("streams must be at least 1")
        self.dataset = dataset
        self.request = {
            "dataset": dataset, "query": query, "batch_size": batch_size, "block_size": block_size,
            "fetch_factor": fetch_factor, "seed": seed, "genes": list(genes) if genes is not None else None,
            "gene_column": gene_column, "genes_query": genes_query, "format": format, "transform": transform,
            "tokenizer": tokenizer, "obs_columns": list(obs_columns) if obs_columns else None, "sampling": sampling,
            "weights": weights,
            "balance_by": balance_by, "num_samples": num_samples, "drop_last": drop_last,
        }
        self.epoch = int(epoch)
        self.partitions = int(partitions) if partitions is not None else int(streams)
        self.read = list(read) if read is not None else list(range(self.partitions))
        bad = [p for p in self.read if not 0 <= p < self.partitions]
        if bad:
            raise ValueError(f"partitions {bad} are not in 0..{self.partitions}")
        self.start_batches = dict(start_batches or {})
        self.prefetch = prefetch if prefetch is not None else 2 * len(self.read)
        self.convert = convert
        self._plans: dict[int, flight.FlightInfo] = {}
        self._categories: dict[str, list[str]] | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_plans"] = {}  # FlightInfo does not pickle; plans are cheap to redo
        return state

    # --- the plan -------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass (the shuffle is a function of seed
        and epoch: call it before each epoch, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def plan(self, epoch: int | None = None) -> flight.FlightInfo:
        epoch = self.epoch if epoch is None else int(epoch)
        if epoch not in self._plans:
            self._plans = {epoch: self.client.plan(**self.request, epoch=epoch, partitions=self.partitions)}
        return self._plans[epoch]

    @property
    def metadata(self) -> dict:
        """The plan's app_metadata: cohort_size, batches_per_partition, seed, dataset_version."""
        return json.loads(self.plan().app_metadata)

    @property
    def schema(self) -> pa.Schema:
        return self.plan().schema

    @property
    def cohort_size(self) -> int:
        return int(self.metadata["cohort_size"])

    @property
    def batches_per_partition(self) -> int:
        return int(self.metadata["batches_per_partition"])

    def __len__(self) -> int:
        """Batches in one epoch of the partitions read (resumed batches not subtracted)."""
        return self.batches_per_partition * len(self.read)

    @property
    def n_genes(self) -> int:
        """Width of the output gene space."""
        return int(self.schema.metadata[N_GENES_METADATA_KEY])

    @property
    def categories(self) -> dict[str, list[str]]:
        """For each categorical obs column asked for, the dataset's full
        category list: `categories[name][code]` is a code's value."""
        if self._categories is None:
            wanted = categorical_columns(self.schema)
            self._categories = read_categories(self.client, self.dataset, wanted) if wanted else {}
        return self._categories

    def var(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The output gene space's rows of `genes`, in output order."""
        genes, column = self.request["genes"], self.request["gene_column"] or "gene_id"
        table = self.client.genes(self.dataset, query=self.request["genes_query"], columns=columns)
        if genes is None:
            return table
        if columns is not None and column not in columns:
            table = self.client.genes(self.dataset, columns=[*columns, column])
        position = {name: i for i, name in enumerate(table.column(column).to_pylist())}
        rows = table.take(pa.array([position[g] for g in genes], pa.int64()))
        return rows if columns is None or column in columns else rows.drop_columns([column])

    # --- iteration --------------------------------------------------------------

    def streams(self) -> list[Stream]:
        endpoints, end = self.plan().endpoints, self.batches_per_partition
        streams = []
        for p in self.read:
            start = self.start_batches.get(p, 0)
            locations = tuple(location.uri.decode() for location in endpoints[p].locations)
            streams.append(Stream(ticket_at(endpoints[p].ticket, start), p, range(start, end), locations))
        return streams

    def _converter(self) -> Callable:
        n_genes, epoch, convert = self.n_genes, self.epoch, self.convert

        def run(record_batch, metadata, receive_seconds):
            batch = to_batch(record_batch, metadata, n_genes, epoch, receive_seconds)
            return convert(batch) if convert is not None else batch

        return run

    def __iter__(self) -> Iterator[Batch]:
        return read_streams(self.client, self.streams(), self._converter(), self.prefetch)
