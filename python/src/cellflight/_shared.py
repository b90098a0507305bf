"""Memory for batches' tensors that is reused once the trainer lets go of a
batch: private buffers for batches made in the training process
(`BufferPool`), and for DataLoader workers a ring of shared-memory files
through which their batches reach the training process (`Ring`), instead
of a new segment per batch.

A worker writes a batch's arrays into a free slot of its ring (a file in
/dev/shm, or $CELLFLIGHT_SHM_DIR) and hands the DataLoader a `SharedBatch`,
which pickles to the slot's path and the arrays' places only. Unpickled in
the training process, it maps the slot (`torch.UntypedStorage.from_file`,
one storage per batch, so `is_shared()` holds) and becomes the caller's
object built from tensors viewing that storage: no copy on this side.

A slot is never rewritten while the trainer holds a tensor on it. Its
first byte says "held": the worker sets it before writing, and the training
process clears it when the batch's storage is freed, that is when the last
tensor viewing it is gone (a `weakref.finalize` on the storage). The worker
only reuses slots that are not held; when all are, it opens another file
(so a loop may keep any number of batches), and keeps at most `RING_SLOTS`
released files for reuse.

Space is reserved when a file is made (`posix_fallocate`), so a full
/dev/shm is a `SharedMemoryError` saying what to do, never a SIGBUS on a
later write. Files are named `cellflight-<pid>-<token>-<n>.shm`: a worker
removes its own when it exits, and a new ring removes those of processes
that no longer run (a killed worker's).
"""

from __future__ import annotations

import mmap
import multiprocessing.util
import os
import secrets
import threading
import weakref
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .errors import SharedMemoryError

SHM_DIR_VARIABLE = "CELLFLIGHT_SHM_DIR"
PREFIX = "cellflight-"
RING_SLOTS = 8  # slots a worker keeps for reuse: the DataLoader's prefetch (2) + the batches a loop holds, and room
HEADER = 64  # byte 0: the slot is held by the training process; the arrays start after it
MIN_SLOT = 1 << 20
HELD, FREE = 1, 0

TORCH_TYPES = {np.dtype(k): v for k, v in {
    np.float16: torch.float16, np.float32: torch.float32, np.float64: torch.float64, np.int8: torch.int8,
    np.int16: torch.int16, np.int32: torch.int32, np.int64: torch.int64, np.uint8: torch.uint8, np.bool_: torch.bool,
}.items()}  # fmt: skip

Parts = Mapping[str, tuple[np.ndarray, np.dtype]]  # name → (source array, the type it is stored as)


def shm_dir() -> Path:
    return Path(os.environ.get(SHM_DIR_VARIABLE) or "/dev/shm")


# --- packing arrays into one buffer ---------------------------------------------


def layout(parts: Parts) -> tuple[dict[str, tuple[int, tuple, str]], int]:
    """Where each array goes when packed one after another (8-byte aligned,
    so any element type can view its place): name → (offset, shape, numpy
    type), and the bytes in all."""
    places, total = {}, 0
    for name, (source, dtype) in parts.items():
        dtype = np.dtype(dtype)
        total = -(-total // 8) * 8
        places[name] = (total, source.shape, dtype.str)
        total += source.size * dtype.itemsize
    return places, total


def fill(raw: np.ndarray, parts: Parts, places: Mapping[str, tuple[int, tuple, str]]) -> None:
    """Copies each array into its place in `raw` (bytes), casting on the way."""
    for name, (source, _) in parts.items():
        offset, shape, dtype = places[name]
        dtype = np.dtype(dtype)
        target = raw[offset:offset + source.size * dtype.itemsize].view(dtype).reshape(shape)
        np.copyto(target, source, casting="unsafe")


def views(storage: torch.UntypedStorage, base: int, places: Mapping[str, tuple[int, tuple, str]]) -> dict:
    """Tensors viewing `storage` at `base` + each place's offset."""
    out = {}
    for name, (offset, shape, dtype) in places.items():
        itemsize = np.dtype(dtype).itemsize
        out[name] = torch.empty(0, dtype=TORCH_TYPES[np.dtype(dtype)]).set_(storage, (base + offset) // itemsize, shape)
    return out


# --- reused private memory, for batches made in the training process ------------


class BufferPool:
    """Memory for the large tensors of batches made in this process, reused:
    a buffer goes back to the pool when the tensor's storage is freed.
    Fresh memory for every batch would go back to the system when freed and
    be page-faulted in again for the next (a fifth to a quarter of the CPU
    a batch costs, measured)."""

    KEEP = 32  # free buffers kept; more are left to the allocator

    def __init__(self):
        self.free: list[np.ndarray] = []
        self.lock = threading.Lock()  # reader threads take, any thread gives back

    def tensor(self, source: np.ndarray, dtype: np.dtype) -> torch.Tensor:
        """`source` cast to `dtype`, in a buffer of the pool."""
        size = source.size * dtype.itemsize
        buffer = self._take(size)
        array = buffer[:size].view(dtype).reshape(source.shape)  # its own object, held by the tensor's storage
        np.copyto(array, source, casting="unsafe")
        weakref.finalize(array, self._give_back, buffer)
        return torch.from_numpy(array)

    def _take(self, size: int) -> np.ndarray:
        with self.lock:
            for i, buffer in enumerate(self.free):
                if buffer.size >= size:
                    return self.free.pop(i)
        return np.empty(max(1 << 16, size * 5 // 4), np.uint8)  # room for a batch a little larger

    def _give_back(self, buffer: np.ndarray) -> None:
        with self.lock:
            if len(self.free) < self.KEEP:
                self.free.append(buffer)


# --- the worker's ring of slots -----------------------------------------------


class _Slot:
    """One reusable shared-memory file, mapped in the worker."""

    def __init__(self, path: Path, size: int):
        self.path, self.size = path, size
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise no_room(path.parent, size, error) from error
        try:
            os.posix_fallocate(fd, 0, size)
            self.map = mmap.mmap(fd, size)
        except OSError as error:
            os.unlink(path)
            raise no_room(path.parent, size, error) from error
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self.map[0] == HELD

    def close(self) -> None:
        self.map.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass  # swept meanwhile


def no_room(directory: Path, size: int, error: OSError) -> SharedMemoryError:
    return SharedMemoryError(
        f"a DataLoader worker cannot reserve {size:,} bytes of shared memory in {directory} for a batch "
        f"({error.strerror or error}). Give it more room (docker run --shm-size=1g, or a larger tmpfs), point "
        f"{SHM_DIR_VARIABLE} at a directory on a larger tmpfs, or use num_workers=0 (the loader's threads then "
        "read the streams in the training process, without shared memory)"
    )


class Ring:
    """A worker's slots; `put` writes a batch into one that is not held."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.token = secrets.token_hex(4)
        self.slots: list[_Slot] = []
        self.made = 0
        sweep(directory)

    def put(self, parts: Parts, finish: Callable[[dict, Any], Any], info: Any) -> SharedBatch:
        """The arrays in a slot, and the handle that becomes
        `finish(tensors, info)` in the process that unpickles it."""
        places, total = layout(parts)
        slot = self._take(HEADER + total)
        slot.map[0] = HELD  # before writing: the trainer clears it when it lets go
        fill(np.frombuffer(slot.map, np.uint8, total, HEADER), parts, places)
        return SharedBatch(str(slot.path), slot.size, places, finish, info)

    def _take(self, size: int) -> _Slot:
        free = sorted((s for s in self.slots if not s.held), key=lambda s: s.size)
        slot = next((s for s in free if s.size >= size), None)
        if slot is None:
            slot = self._new(size)
        # Held slots are the trainer's to keep; of the released ones, at
        # most a ring's worth stay for reuse (the smallest go).
        spare = [s for s in free if s is not slot]
        for extra in spare[: max(0, len(spare) - (RING_SLOTS - 1))]:
            self.slots.remove(extra)
            extra.close()
        return slot

    def _new(self, size: int) -> _Slot:
        size = max(MIN_SLOT, -(-size * 5 // 4 // 65536) * 65536)  # room for batches a little larger
        self.made += 1
        slot = _Slot(self.directory / f"{PREFIX}{os.getpid()}-{self.token}-{self.made}.shm", size)
        self.slots.append(slot)
        return slot

    def close(self) -> None:
        for slot in self.slots:
            slot.close()
        self.slots = []


_rings: dict[int, Ring] = {}


def worker_ring() -> Ring:
    """This process's ring (a forked child makes its own), removed when it exits."""
    ring = _rings.get(os.getpid())
    if ring is None:
        ring = _rings[os.getpid()] = Ring(shm_dir())
        # Run by multiprocessing when a DataLoader worker ends (fork or spawn).
        multiprocessing.util.Finalize(ring, ring.close, exitpriority=0)
    return ring


def sweep(directory: Path) -> None:
    """Removes the ring files of processes that no longer run."""
    try:
        names = [p for p in directory.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(".shm")]
    except OSError:
        return  # a missing directory: making the first slot says so
    for path in names:
        pid = path.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            try:
                path.unlink()
            except OSError:
                pass  # another sweep was first


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    return True


# --- the handle, and the training process's side ---------------------------------


class SharedBatch:
    """A batch in a worker's slot: what crosses to the training process."""

    def __init__(self, path: str, size: int, places: dict, finish: Callable, info: Any):
        self.path, self.size, self.places, self.finish, self.info = path, size, places, finish, info

    def __reduce__(self):
        return receive, (self.path, self.size, self.places, self.finish, self.info)


def receive(path: str, size: int, places: dict, finish: Callable, info: Any):
    """In the training process: the slot's tensors as views of its file,
    the slot released when the last of them is gone."""
    storage = torch.UntypedStorage.from_file(path, shared=True, nbytes=size)
    tensors = views(storage, HEADER, places)
    if storage_lifetime_is_tracked():
        _release_when_freed(storage, path)
    else:
        tensors = {name: t.clone() for name, t in tensors.items()}
        _release(os.open(path, os.O_WRONLY))
    return finish(tensors, info)


def _release_when_freed(storage: torch.UntypedStorage, path: str) -> None:
    # The descriptor, not the path: the worker may remove the file (when it
    # exits) before the trainer lets go of the batch.
    weakref.finalize(storage, _release, os.open(path, os.O_WRONLY))


def _release(fd: int) -> None:
    try:
        os.pwrite(fd, bytes([FREE]), 0)
    finally:
        os.close(fd)


@lru_cache(maxsize=None)
def storage_lifetime_is_tracked() -> bool:
    """Whether a finalizer on a storage runs only once no tensor views it.
    torch keeps a storage's Python object alive as long as the storage
    (since 2.1); without that, slots are copied out and released at once."""
    storage = torch.UntypedStorage(8)
    freed = []
    weakref.finalize(storage, freed.append, True)
    view = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (8,))
    del storage
    alive_with_view = not freed
    del view
    return alive_with_view and bool(freed)
