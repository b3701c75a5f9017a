"""``packhouse backup DEST``: a consistent copy of the embedded installation (the SQLite database and
the stored files), taken while the server runs, that ``packhouse serve --data-dir DEST`` serves as
the index was at that moment. From a pypiserver package folder (``--packages-dir``, what
``packhouse run`` serves), DEST is a package folder that ``packhouse run DEST`` serves, with the
yanks, project statuses and journal that only its database holds.

Copying the data folder with ``cp`` or ``rsync`` while the server runs is not a backup: the
database is in WAL mode, so a copy of ``packhouse.db`` without the matching ``-wal`` file (or
caught between the two) misses the latest uploads or does not open at all, and a file copied
before its row was committed is missing from a database copied after it.

Here the database comes first, then the files, so that every row has its file:

1. a snapshot of the database through SQLite's backup API, in one read transaction, which the
   server's writes do not disturb (nor wait for), checked with ``PRAGMA quick_check``;
2. every file that the snapshot's rows name (and its PEP 658 metadata file, where one was stored:
   a server builds a missing one from the wheel), copied from the storage into DEST
   unless already there, its sha256 checked against the row on the way; files uploaded after the
   snapshot wait for the next backup;
3. the snapshot renamed over the previous one in DEST; only then are the files of DEST that no row
   names any more (deleted releases) removed.

Run again into the same folder, it copies only what is new: files never change once stored.
An interrupted backup leaves the previous one in place, whole. PostgreSQL installations are
backed up with ``pg_dump`` and a copy of the bucket instead (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from app.commands._server import ConfigError, build_settings, fail, reason

if TYPE_CHECKING:
    from app.storage.base import Storage

DB_NAME = "packhouse.db"
PARTIAL = ".packhouse.db.partial"
TMP = ".backup-tmp"
LOCK = ".backup.lock"
METADATA_SUFFIX = ".metadata"  # app.services.metadata's; not imported: `packhouse --help` stays fast
STATE_DIR = ".packhouse"  # a package folder's own (app.storage.flat)


@dataclass(frozen=True)
class Layout:
    """Where things go in DEST: a data folder (``packhouse serve --data-dir DEST``: packhouse.db,
    files/<key>) or, from a pypiserver package folder, a package folder (``packhouse run DEST``:
    the distributions under their own names, the database and metadata files in .packhouse/)."""

    dest: Path
    package_folder: bool

    @property
    def state(self) -> Path:
        """The database's folder; also the backup's lock and temporary files."""
        return self.dest / STATE_DIR if self.package_folder else self.dest

    @property
    def files(self) -> Path:
        return self.dest if self.package_folder else self.dest / "files"

    def place(self, key: str) -> Path:
        """Where ``key`` goes; a key that would leave DEST, or land in a hidden folder, is refused."""
        parts = PurePosixPath(key).parts
        if not key or key.startswith("/") or "\\" in key or "\0" in key or ".." in parts or parts[0].startswith("."):
            raise ValueError(f"invalid storage key {key!r}")
        if self.package_folder and key.endswith(METADATA_SUFFIX):
            return self.state.joinpath("metadata", *parts)
        return self.files.joinpath(*parts)

    def sweep_roots(self) -> list[Path]:
        """The folders whose files that no row names are removed (hidden folders in them skipped)."""
        return [self.files, self.state / "metadata"] if self.package_folder else [self.files]

    def foreign(self) -> list[str]:
        """What DEST holds that a backup of this kind does not: never written into."""
        if not self.dest.is_dir():
            return []
        names = sorted(p.name for p in self.dest.iterdir())
        if not self.package_folder:
            own = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", "files", PARTIAL, TMP, LOCK}
            return [n for n in names if n not in own]
        if not names or names == [STATE_DIR] or (self.state / DB_NAME).is_file():
            return []  # empty, or a previous backup of a package folder
        return names


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "backup",
        help="copy the index (database + files) into a folder, while the server runs",
        description="Copy the embedded installation (SQLite database and stored files) into DEST, "
        "consistently, while the server runs: the database first, then every file its rows name, "
        "with its sha256 checked. DEST is then a data folder that 'packhouse serve --data-dir DEST' "
        "serves as the index was (with --packages-dir: a package folder for 'packhouse run DEST'). "
        "Run again into the same folder, only new files are copied, and files deleted since are "
        "removed. Exit status 1 if a file could not be copied.",
    )
    p.add_argument("dest", help="the backup folder: new, empty, or a previous backup")
    p.add_argument("--data-dir", help="the server's data folder (default ./data; env PACKHOUSE_DATA_DIR)")
    p.add_argument("--database-url", help="the server's SQLite URL, if not DATA_DIR/packhouse.db "
                   "(env PACKHOUSE_DATABASE_URL)")  # fmt: skip
    p.add_argument("--files-dir", help="the server's files folder, if not DATA_DIR/files (env PACKHOUSE_FILES_DIR)")
    p.add_argument("--storage", help="s3://BUCKET/PREFIX when the server stores files in S3 (env PACKHOUSE_STORAGE)")
    p.add_argument("--packages-dir", help="the pypiserver package folder 'packhouse run' serves, instead "
                   "(env PACKHOUSE_PACKAGES_DIR)")  # fmt: skip
    p.add_argument("--config", help="the server's TOML settings file (env PACKHOUSE_CONFIG)")
    p.add_argument("--verify", action="store_true",
                   help="also read back the files already in DEST; copy again any whose sha256 differs")  # fmt: skip
    p.set_defaults(func=run)


@dataclass
class Report:
    projects: int = 0
    files: int = 0
    copied: int = 0
    copied_bytes: int = 0
    kept: int = 0
    removed: int = 0
    problems: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    try:
        settings = build_settings(
            {k: getattr(args, k) for k in ("data_dir", "database_url", "files_dir", "storage", "packages_dir")},
            args.config,
        )
        source, layout = _preflight(settings, Path(args.dest))
        started = time.monotonic()
        report = asyncio.run(_backup(settings, source, layout, verify=args.verify))
    except ConfigError as exc:
        return fail(str(exc))
    except OSError as exc:  # DEST: full, read-only, ...
        return fail(f"cannot write the backup into {args.dest}: {reason(exc)}; the previous backup there is unchanged")
    for problem in report.problems:
        print(f"PROBLEM {problem}")
    print(
        f"backed up {report.projects} project(s), {report.files} file(s) into {layout.dest}: {report.copied} copied "
        f"({report.copied_bytes:,} bytes), {report.kept} already there, {report.removed} removed; "
        f"{time.monotonic() - started:.1f} s"
    )
    if report.problems:
        print(
            f"packhouse: {len(report.problems)} file(s) could not be backed up (above); the backup holds "
            "everything else. Run 'packhouse check' on the server's data.",
            file=sys.stderr,
        )
        return 1
    return 0


def _preflight(settings: object, dest: Path) -> tuple[Path, Layout]:
    """The source database file and DEST's layout, or ConfigError saying why not."""
    from app.db.engine import sqlite_path
    from app.settings import Settings

    assert isinstance(settings, Settings)
    db = sqlite_path(settings.effective_database_url)
    if db is None:
        raise ConfigError(
            "'packhouse backup' copies the embedded SQLite database; back up PostgreSQL with pg_dump, "
            "then the files (docs/scale-out.md, 'Backup and restore')"
        )
    if settings.extra_packages_dirs_list:
        raise ConfigError(
            "'packhouse backup' copies one package folder; with further package folders, copy each "
            "of them too, or import them into the first ('packhouse import')"
        )
    source = Path(db).resolve()
    if not source.is_file():
        flag = "--packages-dir" if settings.packages_dir is not None else "--data-dir, or --database-url"
        raise ConfigError(f"no index at {source} (pass {flag})")
    layout = Layout(dest.resolve(), package_folder=settings.packages_dir is not None)
    if layout.dest.exists() and not layout.dest.is_dir():
        raise ConfigError(f"{layout.dest} is not a folder")
    ours = [source.parent, *([] if settings.storage else [settings.effective_files_dir.resolve()])]
    for folder in ours:
        if layout.dest == folder or layout.dest.is_relative_to(folder) or folder.is_relative_to(layout.dest):
            raise ConfigError(f"{layout.dest} overlaps the server's own folder {folder}: back up into a folder apart")
    if others := layout.foreign():
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        kind = "a package folder" if layout.package_folder else "a data folder"
        raise ConfigError(
            f"{layout.dest} holds other things ({shown}): give a new or empty folder, or a previous backup of {kind}"
        )
    return source, layout


async def _backup(settings: object, source: Path, layout: Layout, *, verify: bool) -> Report:
    from app.commands._server import open_storage

    with _locked(layout.state):
        snapshot = layout.state / PARTIAL
        try:
            _snapshot(source, snapshot)
            rows, projects = _rows(snapshot)
            report = Report(projects=projects, files=len(rows))
            storage, close = await open_storage(settings, check=True)  # type: ignore[arg-type]
            try:
                wanted = await _copy_files(storage, rows, layout, report, verify=verify)
            finally:
                await close()
        except BaseException:
            with contextlib.suppress(OSError):
                snapshot.unlink()  # the previous backup stays as it was
            raise
        _publish(snapshot, layout.state)
        report.removed = sum(_remove_unnamed(root, wanted) for root in layout.sweep_roots())
    return report


def _publish(snapshot: Path, state: Path) -> None:
    """The new snapshot replaces the previous one only now that its files are in place. A WAL
    left by a server that ran on DEST would be replayed into the new file: it goes first."""
    for leftover in (f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
        with contextlib.suppress(FileNotFoundError):
            (state / leftover).unlink()
    os.replace(snapshot, state / DB_NAME)
    _fsync_dir(state)


@contextlib.contextmanager
def _locked(state: Path):  # noqa: ANN202 - a context manager
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            where = state.parent if state.name == STATE_DIR else state
            raise ConfigError(f"another 'packhouse backup' into {where} is running") from None
        yield
    finally:
        os.close(fd)


def _snapshot(source: Path, target: Path) -> None:
    """The database as of one moment: SQLite's backup API copies every page in one step, inside
    one read transaction (WAL: the server's writers neither wait for it nor disturb it)."""
    from app.db.engine import connect_readonly

    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        src = connect_readonly(str(source))
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open {source}: {exc}") from None
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            problem = dst.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise ConfigError(f"the database {source} is damaged ({problem}): nothing was backed up")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot copy the database {source}: {exc}") from None
    finally:
        src.close()
    with open(target, "rb") as fh:
        os.fsync(fh.fileno())


class SourceError(Exception):
    """The storage could not give a file (its cause says why)."""


@dataclass(frozen=True)
class Row:
    filename: str
    key: str
    sha256: str
    size: int
    metadata_sha256: str | None


def _rows(snapshot: Path) -> tuple[list[Row], int]:
    from app.db.engine import connect_readonly

    conn = connect_readonly(str(snapshot))
    try:
        try:
            found = conn.execute(
                "SELECT filename, storage_key, sha256, size, metadata_sha256 FROM files ORDER BY id"
            ).fetchall()
            projects = conn.execute("SELECT count(*) FROM projects").fetchone()[0]
        except sqlite3.Error as exc:  # no Packhouse tables: some other SQLite file
            raise ConfigError(f"the database holds no Packhouse index ({exc})") from None
    finally:
        conn.close()
    return [Row(*row) for row in found], int(projects)


async def _copy_files(storage: Storage, rows: list[Row], layout: Layout, report: Report, *, verify: bool) -> set[Path]:
    """Copy what DEST lacks; returns the paths that the rows name."""
    tmp = layout.state / TMP
    await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
    wanted: set[Path] = set()
    touched: set[Path] = set()
    for row in rows:
        copies = [(row.key, row.sha256, row.size)]
        if row.metadata_sha256:
            copies.append((row.key + METADATA_SUFFIX, row.metadata_sha256, None))
        for key, sha256, size in copies:
            try:
                path = layout.place(key)
            except ValueError as exc:
                report.problems.append(f"{row.filename}: {exc}")
                continue
            wanted.add(path)
            dist = key == row.key  # the counts are of distributions; a metadata file follows its own
            if _present(path, sha256, size, verify=verify):
                report.kept += dist
                continue
            what = f"{row.filename}{' (its metadata file)' if key != row.key else ''}"
            try:
                copied = await _copy(storage, key, path, tmp / f"{len(wanted)}.part", sha256)
            except SourceError as exc:  # that file only; DEST's own errors stop the backup
                if not dist and isinstance(exc.__cause__, FileNotFoundError):
                    continue  # a metadata file not written yet: a server builds it from the wheel
                report.problems.append(f"{what}: cannot read {key} from the storage: {reason(exc.__cause__ or exc)}")
                continue
            if copied is None:
                if not dist:
                    continue  # a damaged metadata file: a server builds it again from the wheel
                report.problems.append(
                    f"{what}: its stored bytes do not have the sha256 of its row: damaged in the index; not copied"
                )
                continue
            report.copied += dist
            report.copied_bytes += copied
            touched.update(p for p in path.parents if p.is_relative_to(layout.dest))  # new folders too
    for folder in sorted(touched, key=lambda p: len(p.parts), reverse=True):
        _fsync_dir(folder)  # deepest first; each new folder's own parent is in the set if new too
    with contextlib.suppress(OSError):
        await asyncio.to_thread(tmp.rmdir)
    return wanted


def _present(path: Path, sha256: str, size: int | None, *, verify: bool) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if size is not None and st.st_size != size:
        return False
    if not verify:
        return True
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest() == sha256


async def _copy(storage: Storage, key: str, path: Path, part: Path, sha256: str) -> int | None:
    """Copy ``key`` to ``path`` through ``part``, durably; None (nothing placed) if its bytes do not
    have ``sha256``. Raises SourceError (the storage could not give the file) or OSError (DEST)."""
    import aiofiles
    import aiofiles.os

    digest = hashlib.sha256()
    size = 0
    try:
        async with aiofiles.open(part, "wb") as out:
            chunks = storage.open(key)
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - the storage's (OSError, ValueError, S3's own)
                    raise SourceError(key) from exc
                digest.update(chunk)
                await out.write(chunk)
                size += len(chunk)
            await out.flush()
            await asyncio.to_thread(os.fsync, out.fileno())
        if digest.hexdigest() != sha256:
            return None
        await aiofiles.os.makedirs(path.parent, exist_ok=True)
        await aiofiles.os.replace(part, path)
        return size
    finally:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(part)


def _remove_unnamed(root: Path, wanted: set[Path]) -> int:
    """Remove the files under ``root`` that no row names (deleted since the last backup), and the
    folders left empty below the top-level prefix folders (a server makes those once, at start).
    A server's own temporary folder (files/.tmp) is left alone."""
    removed = 0
    if not root.is_dir():
        return 0
    for folder, _dirs, names in os.walk(root, topdown=False):
        here = Path(folder)
        if here != root and here.relative_to(root).parts[0].startswith("."):
            continue
        for name in names:
            path = here / name
            if path not in wanted:
                path.unlink()
                removed += not name.endswith(METADATA_SUFFIX)
        if len(here.relative_to(root).parts) > 1:  # not the prefix folders a server makes once
            with contextlib.suppress(OSError):
                here.rmdir()  # only if empty
    return removed


def _fsync_dir(path: Path) -> None:
    from app.storage.local import fsync_dir

    fsync_dir(path)
