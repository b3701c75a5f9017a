"""Local filesystem storage: nothing is ever visible under a key half-written; nothing outside root.

Uploads are staged in place (see ``LocalStorage.stage``): the file is received into its final
directory under a fresh, never-used key, so making it durable costs one fsync of the file and one
of its directory, issued at the same time, and no directory is created per upload.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import aiofiles
import aiofiles.os
import anyio

from app.storage.base import Delivery, LocalPath

TMP_DIR = ".tmp"
# Stored files are created as any program creates files, 0666 less the process's umask (0644 under
# the usual 022), as pypiserver does: a front server sending them (X-Accel-Redirect), or pypiserver
# run by another user on the same folder, can read them. A stricter umask keeps them private.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
CHUNK = 256 * 1024
PART_SUFFIX = ".part"
# An upload staged in place is named "<key>.upload-<pid>.part" until it is committed.
_PART_MARK = ".upload-"
# Keys of in-place uploads: "<2 hex>/<14 hex>-<filename>". The filename must leave room for the
# token, the ".metadata" sidecar suffix and the ".upload-<pid>.part" suffix within NAME_MAX (255).
IN_PLACE_MAX_FILENAME = 200


# Part files created ahead of the next uploads, per process (LocalStorage.replenish).
SPARE_PARTS = 2
# Spares' names, in a prefix directory: "<14 hex>.upload-<pid>.part" (an upload's part file has
# "-<filename>" after the 14 hex digits; "<14 hex>m.upload-<pid>.part", a spare for a sidecar,
# was made by earlier versions, and is swept like the others).
_SPARE_NAME = re.compile(r"[0-9a-f]{14}m?" + re.escape(_PART_MARK) + r"(\d+)" + re.escape(PART_SUFFIX))


WRITEBACK_BYTES = 4 * 1024 * 1024
# The fsyncs of a commit (LocalStorage.start_commit), issued at the same time. Process-wide, as
# anyio's worker threads are: it holds no settings and no app state, and its threads start only
# when first used. Two per upload staged in place (its directory, the file).
_FSYNCS = ThreadPoolExecutor(8, thread_name_prefix="packhouse-fsync")


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

    def __init__(
        self,
        directory: Path,
        *,
        durable: bool = True,
        target: Path | None = None,
        spare: tuple[Path, int] | None = None,
    ) -> None:
        """In ``directory`` under a temporary name; or, staged in place (LocalStorage.stage), as
        ``<target>.upload-<pid>.part`` beside ``target``, the path it is committed under: created
        now, or renamed from a ``spare`` (path, open fd) created beforehand in the same directory
        (raises FileNotFoundError, having closed it, if the spare is gone)."""
        # The pid in the name lets a restarted server sweep only the leftovers of dead processes.
        if target is None:
            fd, name = tempfile.mkstemp(prefix=f"upload-{os.getpid()}-", suffix=PART_SUFFIX, dir=directory)
            os.fchmod(fd, FILE_MODE)  # mkstemp's is 0600, whatever the umask
            self.path = Path(name)
        else:
            self.path = target.with_name(f"{target.name}{_PART_MARK}{os.getpid()}{PART_SUFFIX}")
            if spare is None:
                fd = _create_new(self.path)
            else:
                spare_path, fd = spare
                try:
                    os.rename(spare_path, self.path)  # a fresh name in one directory: ~20 µs
                except BaseException:
                    os.close(fd)
                    raise
        self.target = target
        # The key of an upload staged in place: "<prefix directory>/<name>".
        self.key = None if target is None else f"{target.parent.name}/{target.name}"
        self._fh = os.fdopen(fd, "wb", buffering=0)
        self._written = self._flushed = 0
        self._durable = durable
        self._finishing = threading.Lock()
        self._failure: OSError | None = None  # a failed fsync (finish)

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
        """fsync and close. Idempotent and thread-safe: a second caller waits for the first, so
        the upload can start it early and the commit still knows the file is durable."""
        with self._finishing:
            if self._failure is not None:
                # After a failed fsync Linux may mark the lost pages clean: a second fsync could
                # succeed without the bytes being on disk. Every later caller gets the failure.
                raise OSError(self._failure.errno, f"an earlier fsync of this file failed: {self._failure.strerror}")
            if not self._fh.closed:
                if self._durable:
                    try:
                        os.fsync(self._fh.fileno())
                    except OSError as exc:
                        self._failure = exc
                        raise
                self._fh.close()

    def start_finish(self) -> Future[None]:
        """``finish()`` in the commit's fsync pool, not waited for: a small upload's file is
        fsynced while it is checked, and its commit then only waits for what is left (measured:
        0.15 ms less per small upload, sequential). The caller must wait for it before a discard."""
        return _FSYNCS.submit(self.finish)


class LocalStorage:
    # Subclasses whose keys are not free to choose (pypiserver's flat folder) stage in .tmp.
    stages_in_place = True

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tmp = self.root / TMP_DIR
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._prefix_dirs_ready = False
        self._spares: list[tuple[Path, int]] = []  # see replenish()
        self._spares_pid = os.getpid()

    def _path(self, key: str) -> Path:
        """Resolve a key, refusing anything that would land outside the root."""
        if not key or key.startswith("/") or "\\" in key or "\0" in key:
            raise ValueError(f"invalid storage key {key!r}")
        path = resolve_or_missing(self.root / key, key)
        if not path.is_relative_to(self.root) or path == self.root or path.is_relative_to(self.tmp):
            raise ValueError(f"storage key {key!r} resolves outside the storage root")
        return path

    def _place(self, key: str) -> Path:
        """Where a file of ``key`` is written: its folders resolved and checked as ``_path`` does,
        its own name not followed, so that whatever lies there (a symlink out of the store or to
        another file of it, a loop) is replaced by a rename, never written through."""
        path = self.root / key
        if not key or key.startswith("/") or "\\" in key or "\0" in key or path.name in ("", ".."):
            raise ValueError(f"invalid storage key {key!r}")
        parent = resolve_or_missing(path.parent, key)
        if not parent.is_relative_to(self.root) or parent.is_relative_to(self.tmp):
            raise ValueError(f"storage key {key!r} resolves outside the storage root")
        return parent / path.name

    def stage(self, filename: str | None = None) -> LocalStaged:
        """A file to receive an upload into. Given the upload's ``filename``, the file is staged in
        place: created (exclusively; or renamed from a spare made ahead, see replenish) in its
        final directory under a fresh key of its own, ``<2 hex>/<14 hex>-<filename>``, as
        ``<key>.upload-<pid>.part`` until it is committed, so
        committing it is a rename within one directory. No directory is created per upload (256
        at most, ever), and nothing is visible under the key before the commit. Without a
        filename (or with one that is not a plain file name), the file is staged in ``.tmp``."""
        if filename is None or not self.stages_in_place or not _plain_name(filename):
            return LocalStaged(self.tmp)
        remade = False
        while True:
            spare = self._take_spare()
            if spare is not None:  # its name holds the token: "<2 hex>/<14 hex>.upload-<pid>.part"
                directory, token = spare[0].parent, spare[0].parent.name + spare[0].name[:14]
            else:
                token = secrets.token_hex(8)
                if not self._prefix_dirs_ready:
                    self._make_prefix_dirs()
                # Built, not resolved (as _path does for keys from elsewhere): a hex directory and
                # a plain name cannot leave the root, and resolving costs a stat per component.
                directory = self.root / token[:2]
            target = directory / f"{token[2:]}-{filename}"
            if target.exists():  # 64 random bits: never in practice, but a key is never reused
                _drop_spare(spare)
                continue
            try:
                staged = LocalStaged(directory, target=target, spare=spare)
            except FileExistsError:
                continue
            except FileNotFoundError:
                if spare is not None:
                    continue  # the spare was removed by hand: create the file instead
                if remade:  # a prefix directory was removed by hand: make them again, once
                    raise
                remade, self._prefix_dirs_ready = True, False
                continue
            return staged

    def _take_spare(self) -> tuple[Path, int] | None:
        self._own_spares()
        return self._spares.pop() if self._spares else None

    def _own_spares(self) -> None:
        if self._spares_pid != os.getpid():  # a forked child: the spares are the parent's
            self._spares, self._spares_pid = [], os.getpid()

    def replenish(self) -> None:
        """Create files ahead of the next uploads (SPARE_PARTS per process), each
        ``<2 hex>/<14 hex>.upload-<pid>.part``. Staging an upload then renames one (~20 µs)
        instead of creating its file, which costs ~0.2 ms on a disk whose inode tables are not in
        memory. Blocking and short; the upload route calls it once its answer is sent. A spare is empty
        and never a key; a dead process's spares are swept with its part files, and
        ``release_spares`` removes them at shutdown."""
        if not self.stages_in_place:
            return
        self._own_spares()
        if not self._prefix_dirs_ready:
            self._make_prefix_dirs()
        while len(self._spares) < SPARE_PARTS:
            token = secrets.token_hex(8)
            path = self.root / token[:2] / f"{token[2:]}{_PART_MARK}{os.getpid()}{PART_SUFFIX}"
            try:
                self._spares.append((path, _create_new(path)))
            except OSError:
                return  # staging creates its own file, as without spares

    def release_spares(self) -> None:
        """Remove the spare part files (at shutdown)."""
        spares, self._spares = self._spares, []
        if self._spares_pid != os.getpid():
            return
        for spare in spares:
            _drop_spare(spare)

    def _make_prefix_dirs(self) -> None:
        """The 256 prefix directories, made once and fsynced with the root: their names are then
        durable (a crashed process may have made one without), and no upload creates a directory."""
        for i in range(256):
            (self.root / f"{i:02x}").mkdir(exist_ok=True)
        fsync_dir(self.root)
        self._prefix_dirs_ready = True

    async def commit(  # type: ignore[override]
        self, staged: LocalStaged, key: str, *, sidecars: Mapping[str, bytes] | None = None, exclusive: bool = False
    ) -> None:
        """Move the staged file to ``key`` and write each sidecar (key -> bytes, e.g. the PEP 658
        metadata), all durable when this returns: one thread hop, and one fsync per directory.
        ``exclusive``: never replace an existing file (raises FileExistsError, and no sidecar is
        written) -- for keys that are not content-addressed, such as pypiserver's flat names."""
        if staged.target is not None and staged.key == key and not exclusive:
            await anyio.to_thread.run_sync(lambda: self.start_commit(staged, sidecars or {})())
            return

        def _commit() -> None:
            try:
                staged.finish()
                if exclusive and os.path.lexists(self.root / key):
                    # Taken, even by a symlink that resolves outside the root or to nothing (_path
                    # would refuse those as keys): never replaced.
                    raise FileExistsError(errno.EEXIST, "a file of that name exists", key)
                target = self._path(key)
                extra = {self._place(k): data for k, data in (sidecars or {}).items()}  # not followed
                directories = {target.parent, *_makedirs(target.parent)}
                ours = exclusive or not target.exists()  # there already: a file copied again (transfer)
                if exclusive:
                    os.link(staged.path, target)  # atomic, and fails if the name is taken
                else:
                    os.replace(staged.path, target)
            finally:
                if exclusive:  # linked, or refused: the staged name goes either way
                    staged.path.unlink(missing_ok=True)
            written: list[Path] = []
            try:
                for path, data in extra.items():
                    directories.update(_write_durably(self.tmp, path, data))
                    written.append(path)
            except BaseException:
                # A sidecar could not be written (a full disk): nothing of the upload is kept.
                for path in (target, *written) if ours else ():  # else: derived bytes of that same file
                    path.unlink(missing_ok=True)
                raise
            for directory in directories:
                fsync_dir(directory)

        await anyio.to_thread.run_sync(_commit)

    def start_commit(self, staged: LocalStaged, sidecars: Mapping[str, bytes]) -> Callable[[], None]:  # type: ignore[override]
        """Commit an upload staged in place under its own key (``staged.key``), blocking, in a worker
        thread: rename it within its directory, start the fsyncs of the file and the directory at
        once (nothing needs an order between them, as nothing refers to the key until the row
        does), and write the sidecars beside it (``<key><suffix>``: fresh names, nobody reads them
        before the database row exists) while those run. Returns without waiting, with a function
        that waits (it raises what an fsync raised, having removed the sidecars), so the caller can
        run its own work, the row's statements, meanwhile. The file's fsync is often under way
        already (the upload starts finish() while it checks a large file).

        The sidecars are derived data (the PEP 658 metadata is the wheel's own METADATA, and the
        row records its sha256): they are written but not fsynced. Readers check the bytes against
        the row and rebuild a sidecar that a crash lost or cut short from the file itself
        (``app.services.metadata``), so the upload is durable once the file, its name and the row
        are."""
        target, key = staged.target, staged.key
        if target is None or key is None:
            raise ValueError("start_commit is for an upload staged in place (LocalStorage.stage(filename))")
        # Sidecars beside it: "<key><suffix>", a suffix without a path separator.
        extra = [(target.with_name(target.name + k[len(key) :]), data) for k, data in sidecars.items()
                 if k.startswith(key) and "/" not in k[len(key) :]]  # fmt: skip
        if len(extra) != len(sidecars):
            raise ValueError("sidecars of an upload staged in place are named <key><suffix>")
        os.rename(staged.path, target)
        staged.path = target  # a discard() after a failure below removes it
        # The directory's fsync makes the file's name durable (its own name is: _make_prefix_dirs).
        pending = [_FSYNCS.submit(fsync_dir, target.parent), _FSYNCS.submit(staged.finish)]
        written: list[Path] = []

        def undo() -> None:
            for path in written:
                path.unlink(missing_ok=True)

        def wait() -> None:
            failure = None
            for future in pending:  # every one: nothing is removed under its fsync
                try:
                    future.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised below, after the rest
                    failure = failure or exc
            if failure is not None:
                undo()
                raise failure

        try:
            for path, data in extra:
                written.append(path)
                _write_new(path, data)
        except BaseException:
            with contextlib.suppress(BaseException):
                wait()
            undo()
            raise
        return wait

    async def discard(self, staged: LocalStaged) -> None:  # type: ignore[override]
        def _discard() -> None:
            if not staged._fh.closed:
                staged._fh.close()
            staged.path.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(_discard)

    async def put_bytes(self, key: str, data: bytes) -> None:
        path = self._place(key)  # a symlink in its place is replaced, never written through

        def _put() -> None:
            for directory in _write_durably(self.tmp, path, data):
                fsync_dir(directory)

        await anyio.to_thread.run_sync(_put)

    def put_derived(self, key: str, data: bytes) -> None:
        """``put_bytes`` for derived bytes (a PEP 658 metadata file) under a key no row refers to
        yet (the folder scan commits the rows after), blocking. Written in place and not made
        durable, as start_commit's sidecars are: nobody reads it before its row exists, and a file
        a crash lost or cut short is rebuilt by the reader that checks it against the row
        (``app.services.metadata``). The scan writes one per wheel: with three fsyncs each, that was
        most of its time; through a temporary file and a rename, 0.37 ms a file here, 0.13 ms so.
        Anything but a regular file in the way (a symlink, a FIFO) is replaced, never written
        through."""
        path = self._place(key)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            try:
                fd = os.open(path, flags, 0o666)  # less the umask
            except FileNotFoundError:  # its folder is new
                _makedirs(path.parent)
                fd = os.open(path, flags, 0o666)
        except OSError:  # a symlink (ELOOP), a FIFO without a reader (ENXIO), ...: replaced below
            fd = None
        if fd is not None:
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    _write_all(fd, data)
                    return
            finally:
                os.close(fd)
        _write_durably(self.tmp, path, data, durable=False)  # a rename replaces what is in the way

    async def get_bytes(self, key: str) -> bytes:
        async with aiofiles.open(self._path(key), "rb") as fh:
            return await fh.read()

    async def open(self, key: str) -> AsyncIterator[bytes]:
        async with aiofiles.open(self._path(key), "rb") as fh:
            while chunk := await fh.read(CHUNK):
                yield chunk

    async def exists(self, key: str) -> bool:
        try:
            path = self._path(key)
        except FileNotFoundError:  # a symlink loop; a package folder no longer given
            return False
        return await aiofiles.os.path.isfile(path)

    async def delete(self, key: str) -> None:
        try:
            await aiofiles.os.remove(self._path(key))
        except FileNotFoundError:
            pass

    async def delivery(self, key: str) -> Delivery:
        try:
            path = self._path(key)
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

    def sweep_in_place(self) -> int:
        """Remove the uploads that dead processes were receiving in place (``*.upload-<pid>.part``
        in the prefix directories). One listing of each of the 256: it takes time in proportion to
        the files stored (17 ms for 30,000 here), so the server runs it once it is up."""
        count = 0
        if self.stages_in_place:
            for entry in os.scandir(self.root):
                if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
                    count += _sweep_in_place(Path(entry.path))
        return count

    async def keys(self) -> dict[str, float]:
        """Every stored key and its file's mtime (for consistency checks)."""

        def listing() -> dict[str, float]:
            out = {}
            for key in self._walk():
                try:
                    out[key] = listed_mtime(self.root / key)
                except FileNotFoundError:
                    pass  # removed meanwhile (a delete), or a symlink that leads nowhere
            return out

        return await anyio.to_thread.run_sync(listing)

    def _walk(self) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root and TMP_DIR in dirnames:
                dirnames.remove(TMP_DIR)
            for name in filenames:
                if (spare := _SPARE_NAME.fullmatch(name)) and _alive(int(spare.group(1))):
                    continue  # a running server's spare part file (replenish): never a key
                out.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return out


def listed_mtime(path: Path) -> float:
    """A listed file's mtime. Raises FileNotFoundError also for a symlink that leads nowhere (a loop,
    a dangling one): not a key's file (``packhouse check`` reports an indexed one by its row)."""
    try:
        return path.stat().st_mtime
    except OSError as exc:
        raise FileNotFoundError(exc.errno, exc.strerror, str(path)) from None


def resolve_or_missing(path: Path, key: str) -> Path:
    """``path.resolve()``; a symlink loop is a missing file (FileNotFoundError), not a crash."""
    try:
        return path.resolve()
    except RuntimeError:  # Python 3.11 raises it for a loop (3.13: OSError ELOOP)
        raise FileNotFoundError(errno.ELOOP, "a symlink loop", key) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileNotFoundError(errno.ELOOP, "a symlink loop", key) from None
        raise


def _write_durably(tmp: Path, path: Path, data: bytes, *, durable: bool = True) -> set[Path]:
    """Write ``data`` to a temporary file, fsync it (unless not ``durable``), rename it to ``path``:
    readers never see a partial file. Returns the directories the caller must fsync to make the
    new name durable."""
    staged = LocalStaged(tmp, durable=durable)
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


def is_spare_part(name: str) -> bool:
    """A spare part file's name (LocalStorage.replenish): an empty file, never a key."""
    return _SPARE_NAME.fullmatch(name) is not None


def _drop_spare(spare: tuple[Path, int] | None) -> None:
    """Close and remove a spare file (path, fd) that will not be used."""
    if spare is not None:
        os.close(spare[1])
        spare[0].unlink(missing_ok=True)


def _create_new(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)  # less the umask


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) holding ``data``; not fsynced."""
    fd = _create_new(path)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


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


def _plain_name(filename: str) -> bool:
    """A name that can be a file in a directory as it is (the upload checks it fully later)."""
    return (
        0 < len(filename.encode("utf-8", "surrogateescape")) <= IN_PLACE_MAX_FILENAME
        and not filename.startswith(".")
        and not any(c in filename for c in "/\\\0")
        and filename.isprintable()
    )


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_dead_uploads(directory: Path) -> int:
    """Remove staged uploads whose process (pid in the name, see LocalStaged) is gone; return how many.
    Files of live processes -- other workers receiving uploads right now -- are left alone."""
    return sum(_remove_if_dead(path, path.name.split("-")[1]) for path in directory.glob(f"upload-*{PART_SUFFIX}"))


def _sweep_in_place(directory: Path) -> int:
    """The same for uploads staged in place in one prefix directory (``<key>.upload-<pid>.part``);
    a dead process's spares (LocalStorage.replenish) are removed too, and not counted."""
    count = 0
    for path in directory.glob(f"*{_PART_MARK}*{PART_SUFFIX}"):
        removed = _remove_if_dead(path, path.name.rsplit(_PART_MARK, 1)[1].removesuffix(PART_SUFFIX))
        count += removed and not _SPARE_NAME.fullmatch(path.name)
    return count


def _remove_if_dead(path: Path, pid: str) -> bool:
    """Remove a staged upload unless the process named by ``pid`` is alive; True if removed."""
    if pid.isdigit() and _alive(int(pid)):
        return False
    path.unlink(missing_ok=True)
    return True


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
