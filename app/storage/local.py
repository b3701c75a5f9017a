"""Local filesystem storage: temp file beside the target, then ``os.replace``; nothing outside root."""

from __future__ import annotations

import ctypes
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiofiles
import aiofiles.os
import anyio

from app.storage.base import Delivery, LocalPath

TMP_DIR = ".tmp"
CHUNK = 256 * 1024


WRITEBACK_BYTES = 4 * 1024 * 1024


def _sync_file_range() -> object:
    """Linux's sync_file_range(2), or None elsewhere (Python's os module does not wrap it)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


class LocalStaged:
    """A file being received. Every few MiB, writeback of what was written is started (the way
    RocksDB's bytes_per_sync or PostgreSQL's backend_flush_after do), so the disk writes while the
    rest arrives and the final fsync only waits for the last few MiB instead of the whole file.

    ``durable=False`` for a scratch copy that is read back and sent elsewhere (the S3 backend's
    staging): no writeback is started and nothing is fsynced, as the object store's PUT is what
    makes the upload durable; the file is deleted after it, usually before the kernel wrote it."""

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        # The pid in the name lets a restarted server sweep only the leftovers of dead processes.
        fd, name = tempfile.mkstemp(prefix=f"upload-{os.getpid()}-", suffix=".part", dir=directory)
        self.path = Path(name)
        self._fh = os.fdopen(fd, "wb", buffering=0)
        self._written = self._flushed = 0
        self._durable = durable

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[self._fh.write(view) :]  # type: ignore[arg-type]
        self._written += len(data)
        if self._durable and _SYNC_FILE_RANGE is not None and self._written - self._flushed >= WRITEBACK_BYTES:
            # Starts writeback and returns (no wait); an error shows up at the fsync in finish().
            _SYNC_FILE_RANGE(self._fh.fileno(), self._flushed, self._written - self._flushed, _SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]
            self._flushed = self._written

    def finish(self) -> None:
        if not self._fh.closed:
            if self._durable:
                os.fsync(self._fh.fileno())
            self._fh.close()


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tmp = self.root / TMP_DIR
        self.tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        """Resolve a key, refusing anything that would land outside the root."""
        if not key or key.startswith("/") or "\\" in key or "\0" in key:
            raise ValueError(f"invalid storage key {key!r}")
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root or path.is_relative_to(self.tmp):
            raise ValueError(f"storage key {key!r} resolves outside the storage root")
        return path

    def stage(self) -> LocalStaged:
        return LocalStaged(self.tmp)

    async def commit(  # type: ignore[override]
        self, staged: LocalStaged, key: str, *, sidecars: Mapping[str, bytes] | None = None, exclusive: bool = False
    ) -> None:
        """Move the staged file to ``key`` and write each sidecar (key -> bytes, e.g. the PEP 658
        metadata), all durable when this returns: one thread hop, and one fsync per directory.
        ``exclusive``: never replace an existing file (raises FileExistsError, and no sidecar is
        written) -- for keys that are not content-addressed, such as pypiserver's flat names."""
        target = self._path(key)
        extra = {self._path(k): data for k, data in (sidecars or {}).items()}

        def _commit() -> None:
            staged.finish()
            directories = {target.parent, *_makedirs(target.parent)}
            if exclusive:
                try:
                    os.link(staged.path, target)  # atomic, and fails if the name is taken
                finally:
                    staged.path.unlink(missing_ok=True)
            else:
                os.replace(staged.path, target)
            for path, data in extra.items():
                directories.update(_write_durably(self.tmp, path, data))
            for directory in directories:
                _fsync_dir(directory)

        await anyio.to_thread.run_sync(_commit)

    async def discard(self, staged: LocalStaged) -> None:  # type: ignore[override]
        def _discard() -> None:
            if not staged._fh.closed:
                staged._fh.close()
            staged.path.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(_discard)

    async def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)

        def _put() -> None:
            for directory in _write_durably(self.tmp, path, data):
                _fsync_dir(directory)

        await anyio.to_thread.run_sync(_put)

    async def get_bytes(self, key: str) -> bytes:
        async with aiofiles.open(self._path(key), "rb") as fh:
            return await fh.read()

    async def open(self, key: str) -> AsyncIterator[bytes]:
        async with aiofiles.open(self._path(key), "rb") as fh:
            while chunk := await fh.read(CHUNK):
                yield chunk

    async def exists(self, key: str) -> bool:
        return await aiofiles.os.path.isfile(self._path(key))

    async def delete(self, key: str) -> None:
        try:
            await aiofiles.os.remove(self._path(key))
        except FileNotFoundError:
            pass

    async def delivery(self, key: str) -> Delivery:
        path = self._path(key)
        try:
            # One stat, in a worker thread; the response reuses it (Starlette would stat again).
            st = await anyio.to_thread.run_sync(os.stat, path)
        except (OSError, ValueError):  # as os.path.isfile: gone, not a directory, unreadable
            raise FileNotFoundError(key) from None
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(key)
        return LocalPath(path, st)

    async def check(self) -> None:
        def _check() -> None:
            probe = self.tmp / f"ready-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()

        await anyio.to_thread.run_sync(_check)

    def sweep_temporary(self) -> int:
        return sweep_dead_uploads(self.tmp)

    async def keys(self) -> dict[str, float]:
        """Every stored key and its file's mtime (for consistency checks)."""

        def listing() -> dict[str, float]:
            out = {}
            for key in self._walk():
                try:
                    out[key] = (self.root / key).stat().st_mtime
                except FileNotFoundError:
                    pass  # removed meanwhile (a delete), or a dangling symlink
            return out

        return await anyio.to_thread.run_sync(listing)

    def _walk(self) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root and TMP_DIR in dirnames:
                dirnames.remove(TMP_DIR)
            for name in filenames:
                out.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return out


def _write_durably(tmp: Path, path: Path, data: bytes) -> set[Path]:
    """Write ``data`` to a temporary file, fsync it, rename it to ``path``: readers never see a
    partial file. Returns the directories the caller must fsync to make the new name durable."""
    staged = LocalStaged(tmp)
    try:
        staged.write(data)
        staged.finish()
        directories = {path.parent, *_makedirs(path.parent)}
        os.replace(staged.path, path)
    except BaseException:
        staged._fh.close()
        staged.path.unlink(missing_ok=True)
        raise
    return directories


def _makedirs(path: Path) -> list[Path]:
    """``mkdir -p``; returns the parents of the directories it had to create: a new directory's
    name is durable only once its parent is fsynced (as a new file's is once its directory is)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            pass  # another upload made it meanwhile; its parent is fsynced here all the same
    return [directory.parent for directory in missing]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_dead_uploads(directory: Path) -> int:
    """Remove staged uploads whose process (pid in the name, see LocalStaged) is gone; return how many.
    Files of live processes -- other workers receiving uploads right now -- are left alone."""
    count = 0
    for path in directory.glob("upload-*.part"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and _alive(int(pid)):
            continue
        path.unlink(missing_ok=True)
        count += 1
    return count


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
