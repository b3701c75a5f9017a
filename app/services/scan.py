"""Indexing files that did not come through the upload API.

Two uses: ``packhouse run PACKAGES_DIR`` indexes the files already in a pypiserver folder *in place*
(flat or nested; the storage key is the path relative to the folder) at start and on every rescan,
and ``packhouse import DIR`` copies a folder's archives into the store. Either way each archive is
hashed and its metadata read with ``app.dists.read_metadata`` (requires-python, the PEP 658 METADATA
file), its upload time is the file's mtime, and a broken archive is reported and skipped, never fatal.
So is a file whose name, version or path is longer than the index stores (app/db/limits.py); an
informational value too long to store is dropped with a warning and the file served without it
(``_fit``), as an invalid Requires-Python is.

Indexed: wheels, sdists (``.tar.gz``, legacy ``.zip``) and the old sdist names pypiserver also
served (``.tgz``, ``.tar.bz2``: pip still installs them). Every other file is skipped with a
warning naming it and why (``.egg`` files, which pypiserver listed but pip cannot install; a
symlink out of the folder; a symlinked subfolder), once per file, and counted in the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import multiprocessing
import os
import signal
import stat
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app import dists
from app.db import limits, repo
from app.db.models import Project
from app.errors import InvalidDistributionError
from app.services.form import FileDigests
from app.services.manage import ManageService
from app.storage.base import Storage, open_regular_file
from app.storage.flat import FlatLocalStorage

log = logging.getLogger("packhouse.scan")

DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", *dists.LEGACY_SDIST_SUFFIXES)
SERVED = ", ".join(DIST_SUFFIXES)
SYMLINKED_FOLDER = "a symlinked folder is not followed; give its target as another PACKAGES_DIR"
CHUNK = 1024 * 1024
SETTLE_NS = 2_000_000_000
BATCH = 500  # rows per transaction when a folder is indexed in place
BATCH_TEXT = 16 * 1024 * 1024  # and fewer once their READMEs (descriptions) add up to this
#: A folder scan with this many new files or more reads them in worker processes, one per CPU (at
#: most POOL_MAX): hashing an archive and parsing its metadata costs ~1.7 ms of CPU a file, so a
#: 30,000-file pypiserver folder's first start took about a minute on one core. Below this, the
#: processes' own start (~1 s each, importing the app) costs more than they save.
POOL_MIN_FILES = 2000
POOL_MAX = 8
POOL_CHUNK = 64  # files per task: few round trips, and the results still arrive in order soon
KeyFunc = Callable[[str, str, str], str]  # (sha256, filename, relative path) -> storage key
Progress = Callable[[int, int, str], None]  # (done, total, current filename)


@dataclass
class ScanReport:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    broken: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    duplicates: list[str] = field(default_factory=list)  # same filename already indexed
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not a served file type
    unchanged: int = 0


@dataclass
class FolderListing:
    files: list[str] = field(default_factory=list)  # archives, relative to the folder
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)  # archive -> (mtime_ns, size)


def in_place_key(_sha256: str, _filename: str, relpath: str) -> str:
    return relpath


def skip_reason(name: str) -> str:
    """Why a file in a package folder is not indexed."""
    if name.lower().endswith(".egg"):
        return "a Python egg (.egg): pip cannot install eggs; publish a wheel or an sdist of it instead"
    if name.lower().endswith((".tar.xz", ".tar", ".tbz", ".txz", ".exe", ".msi", ".rpm", ".dmg")):
        return f"unsupported archive type (Packhouse serves {SERVED} files)"
    return f"not a distribution file (Packhouse serves {SERVED} files)"


def walk_folder(root: Path) -> FolderListing:
    """Archive paths under ``root`` relative to it, and the other files with why they are skipped.
    Hidden files and folders are left out silently (as pypiserver, and Packhouse keeps its own
    ``.packhouse/`` there). Folders are read with ``os.scandir``, each folder's files before its
    subfolders, by name: every restart and rescan walks the whole tree, one stat per archive (a
    folder of 30,000 files took a second with ``os.walk`` and pathlib)."""
    out = FolderListing()
    root = root.resolve()
    pending = [(str(root), "")]  # (folder, its path relative to root with a trailing "/")
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # gone or unreadable meanwhile (os.walk skipped these too)
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = prefix + entry.name
            if _is_dir(entry):
                if entry.is_symlink():  # not followed (nor did pypiserver)
                    out.skipped.append((rel, SYMLINKED_FOLDER))
                else:
                    subfolders.append((entry.path, rel + "/"))
            elif not entry.name.endswith(DIST_SUFFIXES):
                out.skipped.append((rel, skip_reason(entry.name)))
            elif isinstance(found := _examine(entry, rel, root), str):
                out.skipped.append((rel, found))
            else:
                out.files.append(rel)
                out.stamps[rel] = (found.st_mtime_ns, found.st_size)
        pending.extend(reversed(subfolders))  # the first subfolder is walked next
    return out


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows a symlink, as os.walk did
    except OSError:
        return False


def _examine(entry: os.DirEntry[str], rel: str, root: Path) -> os.stat_result | str:
    """An archive-named entry of a package folder: its stat (the scan's stamp of it), or why it
    cannot be indexed. Only regular files are: reading a FIFO named like a wheel would block the
    scan (and the server's start) for good."""
    try:
        rel.encode()
    except UnicodeEncodeError:
        return "its path is not valid UTF-8 (a name from another system's encoding): rename it"
    try:
        if entry.is_symlink() and not Path(entry.path).resolve(strict=True).is_relative_to(root):
            # the store refuses to serve anything outside its root
            return "a symlink to outside the package folder"
        st = entry.stat()
    except RuntimeError:  # Python 3.11's resolve() on a loop
        return "a symlink loop"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if entry.is_symlink():
            return "a symlink to a file that does not exist"
        return f"could not be read ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a folder, a FIFO, a socket or a device)"
    return st


def folder_files(
    roots: Sequence[Path],
) -> tuple[dict[str, Path], dict[str, tuple[int, int]], list[tuple[Path, str]]]:
    """Storage key -> file for every archive in pypiserver's PACKAGES_DIR... (first folder: the
    relative path; folder N >= 1: ``@N/<relative path>``), storage key -> its (mtime_ns, size) when
    listed, and the skipped files, with why."""
    out: dict[str, Path] = {}
    stamps: dict[str, tuple[int, int]] = {}
    skipped: list[tuple[Path, str]] = []
    for n, root in enumerate(roots):
        listing = walk_folder(root)
        for rel in listing.files:
            key = f"@{n}/{rel}" if n else rel
            out[key], stamps[key] = root / rel, listing.stamps[rel]
        skipped += [(root / rel, why) for rel, why in listing.skipped]
    return out, stamps, skipped


def _digest(path: Path) -> FileDigests:
    """SHA-256 and size (the digest the index publishes; md5 and blake2b are not kept for files
    that were not uploaded with them, see app/services/form.py)."""
    sha, size = hashlib.sha256(), 0
    # Only a regular file is read: one replaced by a FIFO after the folder was listed must not
    # block the scan (NotRegularFileError is an OSError: the file is reported as unreadable).
    with open_regular_file(path) as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return FileDigests(size, sha.hexdigest())


class FolderIndexer:
    """Reconciles a folder of archives with the index."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], storage: Storage, *, exclusive_names: bool = False
    ) -> None:
        self.sessions = sessions
        self.storage = storage
        # Keys are filenames in a package folder (pypiserver's): an import never replaces a file there.
        self.exclusive_names = exclusive_names
        self.manage = ManageService(sessions, storage)
        # Broken archives found by earlier rescans, by (mtime_ns, size): reported once, not every rescan.
        self._broken: dict[str, tuple[int, int]] = {}
        self._skipped: dict[str, tuple[int, int]] = {}  # files of other types, likewise
        self._seen: dict[str, tuple[int, int]] = {}  # indexed files: (mtime, size) when last seen

    async def sync_in_place(
        self, roots: Sequence[Path], progress: Progress | None = None, *, settle: bool = True
    ) -> ScanReport:
        """Index new archives under ``roots`` where they lie (the first is the storage root; files in
        the others get keys ``@N/<path>``, as FlatLocalStorage resolves them); forget rows whose file
        was deleted by hand, as pypiserver would stop listing it, and their PEP 658 metadata files.
        ``settle=False`` (at start, before any upload can run) indexes even files modified a moment
        ago."""
        report = ScanReport()
        present, listed, skipped = await anyio.to_thread.run_sync(folder_files, roots)
        for path, why in skipped:
            if self._skipped.get(str(path)) != (st := _stamp(path)):
                self._skipped[str(path)] = st
                report.skipped.append((str(path), why))
                log.warning("skipped %s: %s", path, why)
        async with self.sessions() as session:
            known = await repo.storage_keys(session)
        # Files younger than SETTLE_NS are left for the next rescan: one being copied in by hand may be
        # incomplete, and one an upload has just moved into place is about to get its own row.
        cutoff = time.time_ns() - SETTLE_NS if settle else None
        stamps = {key: st for key, st in listed.items() if key not in known}
        new = [
            (key, present[key])
            for key, st in stamps.items()
            if self._broken.get(key) != st and (cutoff is None or st[0] <= cutoff)
        ]
        replaced = await self._replaced_by_hand(present, listed, known, cutoff)
        for key in replaced:
            await self._forget(key, *known[key][:3], report, why="its file was replaced in the package folder")
        new += [(key, present[key]) for key in replaced]
        report.unchanged = len(present) - len(stamps) - len(replaced)
        await self._add_all(new, in_place_key, copy=False, report=report, progress=progress)
        for key in sorted(set(known) - set(present)):
            if key.endswith(DIST_SUFFIXES) and not await self.storage.exists(key):
                await self._forget(key, *known[key][:3], report)
        return report

    async def _replaced_by_hand(
        self,
        present: dict[str, Path],
        listed: dict[str, tuple[int, int]],
        known: dict[str, tuple[int, int, str, int, str]],
        cutoff: int | None,
    ) -> list[str]:
        """Indexed files whose bytes were replaced in the folder (a rebuilt wheel copied over the
        old one): their rows would publish the old sha256, and pip would refuse the download. A
        file is hashed again when its size differs from its row's, or when its mtime or size
        changed since an earlier scan of this process saw it; it is replaced in the index only if
        its sha256 changed. (A file replaced while the server was down by one of the same size is
        not noticed: ``packhouse check`` finds it.)"""
        for key in self._seen.keys() - present.keys():
            del self._seen[key]  # deleted from the folder
        suspects = []
        for key, path in present.items():
            st = listed[key]
            if key not in known or (cutoff is not None and st[0] > cutoff):
                continue  # not indexed yet; still being written
            seen = self._seen.setdefault(key, st)
            if st[1] != known[key][3] or seen != st:
                suspects.append((key, path, st))
        replaced = []
        for key, path, st in suspects:
            try:
                digests = await anyio.to_thread.run_sync(_digest, path)
            except OSError:
                continue  # unreadable now: the next rescan looks again
            self._seen[key] = st
            if digests.sha256 != known[key][4]:
                replaced.append(key)
        return replaced

    async def import_folder(self, source: Path, key_for: KeyFunc, progress: Progress | None = None) -> ScanReport:
        """Copy every archive under ``source`` into the store (files already indexed are skipped)."""
        report = ScanReport()
        listing = await anyio.to_thread.run_sync(walk_folder, source)
        for rel, why in listing.skipped:
            report.skipped.append((rel, why))
            log.warning("skipped %s: %s", source / rel, why)
        items = [(rel, source / rel) for rel in listing.files]
        await self._add_all(items, key_for, True, report, progress)
        return report

    async def _add_all(
        self,
        items: list[tuple[str, Path]],  # (path relative to its folder, or @N/path; the file)
        key_for: KeyFunc,
        copy: bool,
        report: ScanReport,
        progress: Progress | None,
    ) -> None:
        """Index ``items``. Files indexed in place are committed ``BATCH`` rows per transaction
        (a transaction per file, and its fsync, was most of a large folder's first start); an
        import commits each file's row once its copy is stored, so no copy waits long without one."""
        async with self.sessions() as session:
            filenames = await repo.all_filenames(session)
        pooled: AsyncIterator[tuple[str, str, Any]] | None = None
        if not copy and self._poolable(items, filenames):
            # Every file that is not a duplicate, read in worker processes, the results in order.
            todo = [(rel, path) for rel, path in items if path.name not in filenames]
            pooled = _prepared_in_pool(self.storage, todo)  # type: ignore[arg-type]
        async with contextlib.aclosing(pooled) if pooled is not None else contextlib.nullcontext():  # type: ignore[attr-defined]
            await self._add_each(items, key_for, copy, report, progress, filenames, pooled)

    def _poolable(self, items: list[tuple[str, Path]], filenames: set[str]) -> bool:
        """Whether to read ``items`` in worker processes: many of them, more than one CPU, a package
        folder, and no filename twice among them (a duplicate is decided by the files before it:
        those are read one by one, as ever)."""
        if len(items) < POOL_MIN_FILES or type(self.storage) is not FlatLocalStorage or _pool_size() < 2:
            return False
        names = [path.name for _, path in items]
        return len(set(names)) == len(names)

    async def _add_each(
        self,
        items: list[tuple[str, Path]],
        key_for: KeyFunc,
        copy: bool,
        report: ScanReport,
        progress: Progress | None,
        filenames: set[str],
        pooled: AsyncIterator[tuple[str, str, Any]] | None,
    ) -> None:
        batch: list[_Prepared] = []
        held = 0  # characters of README held by the batch
        for done, (rel, path) in enumerate(items, 1):
            name = path.name
            if progress:
                progress(done, len(items), name)
            if name in filenames:
                report.duplicates.append(rel)
                continue
            try:
                if copy:
                    prepared = await anyio.to_thread.run_sync(_prepare, path, rel, key_for)
                    await self._copy(path, prepared.key, prepared.sidecars)
                elif pooled is not None:
                    prepared = _outcome(rel, await anext(pooled))  # type: ignore[arg-type]
                else:
                    prepared = await anyio.to_thread.run_sync(_prepare_in_place, self.storage, path, rel)
            except InvalidDistributionError as exc:
                self._broken[rel] = _stamp(path)
                report.broken.append((rel, exc.detail))
                log.warning("skipped %s: %s", rel, exc.detail)
                continue
            except FileExistsError:  # importing into a package folder that has a file of that name
                report.duplicates.append(rel)
                log.warning("skipped %s: a file of that name is already in the package folder (left as it is)", rel)
                continue
            except OSError as exc:
                # Storing its metadata file failed (a full disk): one file, not a failed scan. Not
                # remembered as broken: the next rescan tries it again.
                report.broken.append((rel, f"could not be stored ({exc})"))
                log.warning("skipped %s: could not be stored (%s)", rel, exc)
                continue
            filenames.add(name)
            batch.append(prepared)
            held += len(prepared.row["description"] or "")
            if copy or len(batch) >= BATCH or held >= BATCH_TEXT:
                await self._insert(batch, report, copied=copy)
                batch, held = [], 0
        if batch:
            await self._insert(batch, report, copied=copy)

    async def _insert(self, batch: list[_Prepared], report: ScanReport, *, copied: bool = False) -> None:
        """The rows of ``batch``, in one transaction. If one of them is indexed already (another
        worker's scan got there first), each is inserted on its own and that one is a duplicate.
        ``copied``: the files were copied into the store for these rows (``packhouse import``): a
        duplicate's copy is removed, unless a row refers to its key (a package folder's name)."""
        try:
            async with self.sessions() as session, session.begin():
                await session.run_sync(_insert_rows, batch)
        except IntegrityError:
            if len(batch) == 1:
                # Uploaded (or imported by another run) since this import listed the index.
                report.duplicates.append(batch[0].rel)
                if copied:
                    await self.manage.forget_blobs([batch[0].key])
                return
            for one in batch:
                await self._insert([one], report, copied=copied)
            return
        for done in batch:
            report.added.append(done.rel)
            log.info("indexed %s (%d bytes, sha256 %s)", done.rel, done.row["size"], done.row["sha256"])

    async def _copy(self, path: Path, key: str, sidecars: dict[str, bytes]) -> None:
        staged = self.storage.stage()
        try:

            def _fill() -> None:
                with path.open("rb") as fh:
                    while chunk := fh.read(CHUNK):
                        staged.write(chunk)

            await anyio.to_thread.run_sync(_fill)
            if self.exclusive_names:  # never replace a file of the package folder
                await self.storage.commit(staged, key, sidecars=sidecars, exclusive=True)  # type: ignore[call-arg]
            else:
                await self.storage.commit(staged, key, sidecars=sidecars)
        except BaseException:
            await self.storage.discard(staged)
            raise

    async def _forget(
        self,
        key: str,
        file_id: int,
        project_id: int,
        filename: str,
        report: ScanReport,
        why: str = "its file was deleted from the package folder",
    ) -> None:
        """Forget the row of a file deleted from the folder by hand, then its PEP 658 metadata file
        (``.packhouse/metadata/<key>.metadata``: Packhouse's, and nothing else would remove it),
        unless a row refers to the key again by then (an identical file uploaded meanwhile).
        Another rescan (another worker's) may have forgotten the row first: then nothing is done,
        nor journaled twice."""
        async with self.sessions() as session, session.begin():
            if not await session.run_sync(repo.delete_file, file_id):
                return
            await session.run_sync(
                repo.record_event, project_id, action="remove", project=dists.parse_folder_filename(filename).name,
                filename=filename, actor=None,
                detail=why.removeprefix("its "),
            )  # fmt: skip
        await self.manage.forget_blobs([key], metadata_only=True)
        report.removed.append(filename)
        log.info("removed %s from the index: %s", filename, why)


@dataclass
class _Prepared:
    """A file of a folder, read and checked, ready to be indexed: its project's name (as its
    metadata spells it, fitted), its row and journal entry, and its sidecars (key -> bytes)."""

    rel: str
    name: str
    normalized: str
    row: dict[str, Any]
    event: dict[str, Any]
    sidecars: dict[str, bytes]

    @property
    def key(self) -> str:
        return str(self.row["storage_key"])


def _prepare(path: Path, rel: str, key_for: KeyFunc) -> _Prepared:
    """Hash ``path`` and read its metadata (blocking): what indexing it stores.

    Raises:
        InvalidDistributionError: it cannot be indexed (unreadable, empty, broken, or its metadata
            contradicts its filename); the reason names it by ``rel``.
    """
    filename = path.name
    dist = dists.parse_folder_filename(filename)
    try:
        mtime = path.stat().st_mtime
        digests = _digest(path)
    except OSError as exc:
        raise InvalidDistributionError(f"{rel} could not be read ({exc})") from None
    if digests.size == 0:
        raise InvalidDistributionError(f"{rel} is empty (0 bytes)")
    try:
        meta = dists.read_metadata(path, dist, filename)
    except InvalidDistributionError:
        raise
    except Exception as exc:  # a reader failure nobody foresaw: still one bad file, not a failed scan
        log.error("reading %s failed unexpectedly", rel, exc_info=True)
        raise InvalidDistributionError(f"{rel} could not be read ({type(exc).__name__}: {exc})") from None
    if dists.normalize(meta.name) != dist.name or dists.parse_version(meta.version) != dist.version:
        raise InvalidDistributionError(
            f"the metadata inside {rel} says {meta.name} {meta.version}, not what its filename says"
        )
    if problem := dists.requires_python_problem(meta.requires_python):
        # Served all the same (pypiserver did; pip ignores such a value), but not published:
        # uv refuses a file whose data-requires-python it cannot parse.
        log.warning("%s: Requires-Python %r is not a version specifier (%s); not published", rel,
                    meta.requires_python, problem)  # fmt: skip
        meta = replace(meta, requires_python=None)
    key = key_for(digests.sha256, filename, rel)
    row = {
        **repo.file_columns(dist, filename, key, meta, **asdict(digests)),
        "pyversion": dists.python_tag(filename, dist),
        "upload_time": datetime.fromtimestamp(mtime, UTC),  # the file's mtime, as pypiserver shows
        "uploader": None,
    }
    event = {
        "action": "import", "project": dist.name, "version": str(dist.version), "filename": filename,
        "sha256": digests.sha256, "actor": None, "detail": rel,
    }  # fmt: skip
    name, row = _fit(rel, meta.name, dist.name, row, event)  # before anything is stored
    sidecars = {key + ".metadata": meta.raw} if row["metadata_sha256"] else {}  # PEP 658
    return _Prepared(rel, name, dist.name, row, event, sidecars)


def _prepare_in_place(storage: Storage, path: Path, rel: str) -> _Prepared:
    """``_prepare`` for a file indexed where it lies, and its metadata file written (blocking).
    The store is a package folder (a LocalStorage): the file is derived data, not made durable
    (``LocalStorage.put_derived``)."""
    prepared = _prepare(path, rel, in_place_key)
    for sidecar, data in prepared.sidecars.items():
        storage.put_derived(sidecar, data)  # type: ignore[attr-defined]
    prepared.sidecars.clear()  # written: not held by the batch
    return prepared


def _pool_size() -> int:
    return min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, POOL_MAX)


async def _prepared_in_pool(
    storage: FlatLocalStorage, items: list[tuple[str, Path]]
) -> AsyncIterator[tuple[str, str, Any]]:
    """``_prepare_in_place`` of each of ``items`` in worker processes, yielded in order as
    (relative path, "ok" | "broken" | "unstored", the _Prepared or why); what the workers logged
    is logged here. At most two chunks per worker are in flight, so memory stays bounded.

    Worker processes that cannot be started (no /dev/shm for their locks, say), or that die (the
    kernel's OOM killer), are not a failed start: the files they had not answered for are read here,
    one at a time, as without a pool (reading a file again only writes its metadata file again)."""
    loop = asyncio.get_running_loop()
    workers = _pool_size()
    chunks = deque([(rel, str(path)) for rel, path in items[i : i + POOL_CHUNK]]
                   for i in range(0, len(items), POOL_CHUNK))  # fmt: skip
    inflight: deque[tuple[list[tuple[str, str]], asyncio.Future[list[Any]]]] = deque()
    pool: ProcessPoolExecutor | None = None
    try:
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a process that runs threads
            initializer=_worker_init,
            initargs=(str(storage.root), [str(root) for root in storage.extra_roots]),
        )
    except (OSError, NotImplementedError) as exc:
        log.warning("could not start worker processes to read the package folder (%s): reading it here", exc)

    def submit() -> None:
        if pool is not None and chunks:
            work = chunks.popleft()
            inflight.append((work, loop.run_in_executor(pool, _prepare_chunk, work)))

    try:
        for _ in range(2 * workers):
            submit()
        while inflight or chunks:
            if inflight:
                work, future = inflight[0]
                try:
                    results = await future
                except BrokenProcessPool as exc:
                    log.warning("a worker process reading the package folder died (%s): reading the rest here", exc)
                    chunks.extendleft(reversed([w for w, _ in inflight]))
                    for _, lost in inflight:  # they fail alike: their errors are known, not to be logged
                        lost.add_done_callback(lambda f: f.cancelled() or f.exception())
                    inflight.clear()
                    assert pool is not None
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = None
                    continue
                inflight.popleft()
                submit()
            else:
                results = await anyio.to_thread.run_sync(_prepare_chunk, chunks.popleft(), storage)
            for rel, kind, value, logged in results:
                for level, message in logged:
                    log.log(level, "%s", message)
                yield rel, kind, value
    finally:
        if pool is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(partial(pool.shutdown, wait=True, cancel_futures=True))


def _outcome(rel: str, result: tuple[str, str, Any]) -> _Prepared:
    """A pooled result as the thread's call would end: the _Prepared, or its exception."""
    got, kind, value = result
    assert got == rel, (got, rel)  # in order, one each
    if kind == "broken":
        raise InvalidDistributionError(value)
    if kind == "unstored":
        raise OSError(value)
    return value  # type: ignore[no-any-return]


# In a worker process of the pool ------------------------------------------------------------
_worker_storage: FlatLocalStorage | None = None
_worker_logged: list[tuple[int, str]] = []


class _KeepRecords(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _worker_logged.append((record.levelno, record.getMessage()))


def _worker_init(root: str, extra_roots: list[str]) -> None:
    global _worker_storage
    # Ctrl-C in a terminal signals the whole process group: the server decides when to stop, and
    # stops its workers with it (a worker ends when the server's end of the pool's pipe closes).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_storage = FlatLocalStorage(Path(root), [Path(r) for r in extra_roots])
    log.handlers[:] = [_KeepRecords()]  # sent back with the results, and logged by the server
    log.propagate = False
    log.setLevel(logging.DEBUG)


def _prepare_chunk(
    chunk: list[tuple[str, str]], storage: FlatLocalStorage | None = None
) -> list[tuple[str, str, Any, list[tuple[int, str]]]]:
    """In a worker process: ``_prepare_in_place`` of each (relative path, path), its failure
    returned as a value (the reason), with what was logged meanwhile. In the server itself (when
    the pool cannot be used) with its ``storage``: what it logs is logged at once."""
    storage = storage or _worker_storage
    assert storage is not None
    out: list[tuple[str, str, Any, list[tuple[int, str]]]] = []
    for rel, path in chunk:
        result: tuple[str, Any]
        try:
            result = ("ok", _prepare_in_place(storage, Path(path), rel))
        except InvalidDistributionError as exc:
            result = ("broken", exc.detail)
        except OSError as exc:  # its metadata file could not be written (a full disk)
            result = ("unstored", str(exc))
        out.append((rel, *result, _worker_logged[:]))
        _worker_logged.clear()
    return out


def _insert_rows(session: Session, batch: Sequence[_Prepared]) -> None:
    repo.add_uploads(session, [repo.NewUpload(one.name, one.normalized, one.row, one.event) for one in batch])


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, -1)
    return (st.st_mtime_ns, st.st_size)


#: What to do about a file whose required value is too long to store, by column.
_SKIP_FIXES = {
    "files.storage_key": "move it to a folder with a shorter path",
    "files.version": "rebuild it with a shorter version (a local label, after the '+', is the usual reason)",
    "projects.normalized_name": "rebuild it under a shorter project name",
}


def _fit(
    rel: str, name: str, normalized_name: str, row: dict[str, Any], event: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The project's display name and the file's row, fitted to their columns (app/db/limits.py),
    as the scan treats an invalid Requires-Python: a value the file can be served without (the
    name as its metadata spells it, Metadata-Version, Requires-Python, Description-Content-Type,
    the Python tag) is dropped with a warning and the file is indexed; one it cannot (its
    normalised name, version, filename, path) makes it skipped and reported.

    Raises:
        InvalidDistributionError: a required value does not fit (the file is skipped).
    """
    fitted = limits.fit(limits.FILES, row)
    blocking = [
        *limits.overflows(limits.PROJECTS, {"normalized_name": normalized_name}),
        *fitted.blocking,
        *limits.overflows(limits.EVENTS, event),
    ]
    if blocking:
        o = blocking[0]
        fix = _SKIP_FIXES.get(o.key, f"rename it with a shorter {o.label}")
        raise InvalidDistributionError(f"{o.describe()}: {fix}")
    for o in fitted.dropped:
        log.warning("%s: %s: not kept (the file is served without it)", rel, o.describe())
    if not limits.fits(Project.name, name):
        log.warning("%s: the project's name as its metadata spells it is %d characters long: it is listed "
                    "as %s", rel, len(name), normalized_name)  # fmt: skip
        name = normalized_name
    return name, fitted.values
