"""The Storage port: a byte store that knows nothing of HTTP, the database or requests."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True, slots=True)
class LocalPath:
    """Deliver these bytes from a local file (the files route serves it with Range support).
    ``stat``: the file's stat, when the storage already took it (the response then needs no other)."""

    path: Path
    stat: os.stat_result | None = None


@dataclass(frozen=True, slots=True)
class RedirectURL:
    """Deliver by redirecting the client (e.g. a presigned object-store URL)."""

    url: str


@dataclass(frozen=True, slots=True)
class ObjectStream:
    """Deliver by streaming from the store: ``read(first, last)`` yields bytes first..last
    (inclusive, as in an HTTP Range), so the files route can answer HEAD and Range itself."""

    size: int
    read: Callable[[int, int], AsyncIterator[bytes]]


Delivery = LocalPath | RedirectURL | ObjectStream


class Staged(Protocol):
    """An upload being received: bytes go to a local temporary file until committed or discarded."""

    path: Path
    # Staged in place: the key these bytes will be committed under (the storage chose it, and
    # ``commit`` must be given it); None: the caller chooses the key.
    key: str | None

    def write(self, data: bytes | memoryview) -> None: ...

    def finish(self) -> None:
        """Flush and close (blocking): the file is complete, and durable on disk where the storage
        keeps it there (local files; an object store's commit makes its copy durable itself)."""
        ...

    def start_finish(self) -> Future[None]:
        """``finish()`` started in a background thread, not waited for (a small upload's fsync runs
        while it is checked). ``finish()`` is idempotent: a later call waits for this one."""
        ...


class Storage(Protocol):
    def stage(self, filename: str | None = None) -> Staged:
        """Open a temporary file beside the store (same filesystem for the local backend). With the
        upload's ``filename``, the store may stage it in place under a key of its own choosing
        (``Staged.key``)."""
        ...

    async def commit(self, staged: Staged, key: str, *, sidecars: Mapping[str, bytes] | None = None) -> None:
        """Move a staged file to ``key`` atomically (never a partial file under ``key``), and store
        each sidecar (key -> bytes, such as the PEP 658 metadata): all durable when it returns."""
        ...

    def start_commit(self, staged: Staged, sidecars: Mapping[str, bytes]) -> Callable[[], None]:
        """Only for a file staged in place (``staged.key`` set): ``commit`` under that key, blocking
        (for a worker thread), returning once the writes are issued with a function that waits
        until the file and its name are durable (and raises, leaving no sidecar, if that failed).
        Sidecars are derived from the file and may be written without being made durable: readers
        check them against the row and rebuild them (``app.services.metadata``)."""
        ...

    async def discard(self, staged: Staged) -> None: ...

    def replenish(self) -> None:
        """Prepare for the next uploads once an upload's answer is sent (blocking, short; the
        local store creates part files ahead: LocalStorage.replenish). May do nothing."""
        ...

    async def put_bytes(self, key: str, data: bytes) -> None: ...

    async def get_bytes(self, key: str) -> bytes:
        """Raises FileNotFoundError."""
        ...

    def open(self, key: str) -> AsyncIterator[bytes]: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def delivery(self, key: str) -> Delivery:
        """Raises FileNotFoundError."""
        ...

    async def check(self) -> None:
        """Raise if the store is not reachable or writable."""
        ...

    async def keys(self) -> dict[str, float]:
        """Every stored key, with the time it was stored (seconds since the epoch), for
        consistency checks (``packhouse check``)."""
        ...

    def sweep_temporary(self) -> int:
        """Remove temporary files left by a crash; return how many."""
        ...


class NotRegularFileError(OSError):
    """Something other than a regular file (a directory, a FIFO, a device) is where a stored file
    should be: put there by hand. ``str()`` says what it is."""


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _require_regular(st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        what = _KINDS.get(stat.S_IFMT(st.st_mode), "not a file")
        raise NotRegularFileError(f"{what}, not a regular file")


def open_regular_file(path: Path) -> BinaryIO:
    """``path`` opened for reading (blocking: for a worker thread), only if it is a regular file,
    and never waiting on what is not one: opening a FIFO for reading waits for a writer, forever,
    and nothing (not even SIGTERM) gets the thread back. So it is stat'ed first (a FIFO, a device
    or a directory is never opened), opened with O_NONBLOCK (one swapped in after the stat opens at
    once instead of waiting) and fstat'ed once open (that swap is caught too).

    Raises:
        FileNotFoundError: nothing is there (a dangling symlink included).
        NotRegularFileError: a directory, a FIFO, a socket or a device is there.
        OSError: it cannot be opened (permissions, a symlink loop, ...).
    """
    _require_regular(os.stat(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _require_regular(os.fstat(fd))
        os.set_blocking(fd, True)  # a regular file: reads never wait for a writer
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
