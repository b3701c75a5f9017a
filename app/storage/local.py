"""Local filesystem storage: temp file beside the target, then ``os.replace``; nothing outside root."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles
import aiofiles.os
import anyio

from app.storage.base import Delivery, LocalPath

TMP_DIR = ".tmp"
CHUNK = 256 * 1024


class LocalStaged:
    def __init__(self, directory: Path) -> None:
        # The pid in the name lets a restarted server sweep only the leftovers of dead processes.
        fd, name = tempfile.mkstemp(prefix=f"upload-{os.getpid()}-", suffix=".part", dir=directory)
        self.path = Path(name)
        self._fh = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._fh.write(data)

    def finish(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
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

    async def commit(self, staged: LocalStaged, key: str, *, exclusive: bool = False) -> None:  # type: ignore[override]
        """Move the staged file to ``key``. ``exclusive``: never replace an existing file (raises
        FileExistsError) -- for keys that are not content-addressed, such as pypiserver's flat names."""
        target = self._path(key)

        def _commit() -> None:
            staged.finish()
            target.parent.mkdir(parents=True, exist_ok=True)
            if exclusive:
                try:
                    os.link(staged.path, target)  # atomic, and fails if the name is taken
                finally:
                    staged.path.unlink(missing_ok=True)
            else:
                os.replace(staged.path, target)
            _fsync_dir(target.parent)

        await anyio.to_thread.run_sync(_commit)

    async def discard(self, staged: LocalStaged) -> None:  # type: ignore[override]
        def _discard() -> None:
            if not staged._fh.closed:
                staged._fh.close()
            staged.path.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(_discard)

    async def put_bytes(self, key: str, data: bytes) -> None:
        staged = self.stage()
        staged.write(data)
        await self.commit(staged, key)

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
        if not await aiofiles.os.path.isfile(path):
            raise FileNotFoundError(key)
        return LocalPath(path)

    async def check(self) -> None:
        def _check() -> None:
            probe = self.tmp / f"ready-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()

        await anyio.to_thread.run_sync(_check)

    def sweep_temporary(self) -> int:
        return sweep_dead_uploads(self.tmp)

    def keys(self) -> list[str]:
        """Every stored key (for consistency checks)."""
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root and TMP_DIR in dirnames:
                dirnames.remove(TMP_DIR)
            for name in filenames:
                out.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return out


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
