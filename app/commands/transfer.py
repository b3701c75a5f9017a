"""``packhouse transfer``: copy an installation (database + files) into another, e.g. the embedded
SQLite + folder into PostgreSQL + S3 for scale-out.

Order, so that an interrupted run is simply run again: bring the destination schema to head and
check it holds no rows; copy every stored file (and its PEP 658 metadata), hashing the bytes on
the way and refusing any whose sha256 differs from its row; only then insert all rows, ids
included, in one transaction. A key names one file's bytes (checked against its sha256), so copying a
file twice is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.commands._server import ConfigError, fail, open_database, reason
from app.db import limits
from app.db.base import as_utc
from app.db.engine import database_url_problem
from app.db.models import Event, File, Project
from app.services.metadata import METADATA_SUFFIX, core_metadata
from app.storage import build_storage
from app.storage.base import Storage

TABLES = (Project.__table__, File.__table__, Event.__table__)  # parents first


class TransferError(Exception):
    pass


@dataclass
class Progress:
    """A one-line progress bar on stderr (plain lines when it is not a terminal)."""

    total: int
    total_bytes: int
    out: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    done_bytes: int = 0
    _last_pct: int = -1

    def advance(self, size: int) -> None:
        self.done += 1
        self.done_bytes += size
        pct = 100 if not self.total else self.done * 100 // self.total
        tty = self.out.isatty()
        if not tty and pct // 10 == self._last_pct // 10 and self.done != self.total:
            return
        self._last_pct = pct
        bar = "#" * (pct * 30 // 100)
        line = (
            f"copying files [{bar:<30}] {pct:3d}% {self.done}/{self.total} files, "
            f"{self.done_bytes / 1048576:.1f}/{self.total_bytes / 1048576:.1f} MiB"
        )
        self.out.write(("\r" + line) if tty else (line + "\n"))
        if tty and self.done == self.total:
            self.out.write("\n")
        self.out.flush()


async def _rows(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    async with engine.connect() as conn:
        return {
            table.name: [dict(row._mapping) for row in await conn.execute(select(table).order_by(table.c.id))]
            for table in TABLES
        }


async def _copy_blob(source: Storage, dest: Storage, key: str, sha256: str) -> int:
    """Copy one stored object, streaming; raise TransferError if its bytes do not hash to ``sha256``."""
    hasher, size = hashlib.sha256(), 0
    staged = dest.stage()
    try:
        async for chunk in source.open(key):
            hasher.update(chunk)
            size += len(chunk)
            await anyio.to_thread.run_sync(staged.write, chunk)
    except FileNotFoundError:
        await dest.discard(staged)
        raise TransferError(f"{key}: missing from the source storage") from None
    except BaseException:
        await dest.discard(staged)
        raise
    if hasher.hexdigest() != sha256:
        await dest.discard(staged)
        raise TransferError(f"{key}: sha256 is {hasher.hexdigest()}, but the database says {sha256}")
    await dest.commit(staged, key)
    return size


def _utc(row: dict[str, Any]) -> dict[str, Any]:
    """SQLite hands back naive datetimes (stored in UTC); say so before writing them elsewhere."""
    return {k: as_utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


async def _insert_rows(engine: AsyncEngine, rows: dict[str, list[dict[str, Any]]]) -> None:
    async with engine.begin() as conn:
        for table in TABLES:
            if rows[table.name]:
                await conn.execute(insert(table), [_utc(r) for r in rows[table.name]])
        if conn.dialect.name == "postgresql":
            # Explicit ids do not advance the sequences: move them past the copied rows.
            for table in TABLES:
                await conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608 - our names
                        f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                    )
                )


def _fit_rows(rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Fit the source's rows to the destination's columns (app/db/limits.py), in place; return what
    was changed, a line each. SQLite ignores VARCHAR lengths, so an installation that ran on it
    before Packhouse measured values may hold some that PostgreSQL refuses (the insert would fail
    once every file was copied). They are treated as a folder scan treats them: an optional value
    that does not fit is dropped (a journal entry keeps it in its detail text); a row with a
    required one (a project's normalised name, a file's version or key) is left out, and a
    project's files with it. A display name that does not fit becomes the normalised name."""
    notes: list[str] = []
    for project in rows["projects"]:
        if not limits.fits(Project.name, project["name"]):
            name, limit = project["normalized_name"], limits.max_length(Project.name)
            notes.append(f"project {name}: its display name is longer than {limit} characters; listed as {name}")
            project["name"] = project["normalized_name"]
    rows["projects"] = _fit_table(limits.PROJECTS, rows["projects"], notes)
    kept = {project["id"] for project in rows["projects"]}
    for f in rows["files"]:
        if f["project_id"] not in kept:
            notes.append(f"skipped file {f['filename']}: its project was skipped")
    rows["files"] = _fit_table(limits.FILES, [f for f in rows["files"] if f["project_id"] in kept], notes)
    rows["events"] = _fit_table(limits.EVENTS, rows["events"], notes)
    return notes


def _fit_table(table: Table, rows: list[dict[str, Any]], notes: list[str]) -> list[dict[str, Any]]:
    kept = []
    for row in rows:
        what = {"projects": "project {normalized_name}", "files": "file {filename}"}.get(
            table.name, "journal entry {id} ({action} {project})"
        ).format_map(row)
        fitted = limits.fit(table, row)
        if fitted.blocking:
            notes.append(f"skipped {what}: {fitted.blocking[0].describe()}")
            continue
        for o in fitted.dropped:
            notes.append(f"{what}: {o.describe()}; not kept")
            if "detail" in table.c:
                kept_text = f"{o.label} (too long to keep): {row[o.column]}"
                fitted.values["detail"] = "; ".join(filter(None, [row.get("detail"), kept_text]))
        kept.append(fitted.values)
    return kept


async def _check_empty(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        counts = {t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one() for t in TABLES}
    if any(counts.values()):
        raise TransferError(
            "the destination database is not empty ("
            + ", ".join(f"{n} {name}" for name, n in counts.items() if n)
            + "); transfer copies into a new, empty database"
        )


async def _storage(url: str | None, side: str, **kwargs: Any) -> tuple[Storage, Any]:
    """``build_storage``, with any failure (no credentials, no bucket, a folder that cannot be
    made) said in one line."""
    try:
        storage, close = await build_storage(url, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"cannot open the {side} storage {url or kwargs['files_dir']}: {reason(exc)}") from None
    return storage, close


async def transfer(args: argparse.Namespace, out: TextIO) -> int:
    source_db = dest_db = None
    closers = []
    try:
        if args.from_database_url == args.to_database_url:
            raise TransferError("source and destination are the same database")
        # The source must be an installation (a typo must not copy an empty one it just made).
        source_db = await open_database(
            args.from_database_url, must_exist=True, hint="pass --from-data-dir (or --from-database-url)",
            writable=False,  # only read
        )  # fmt: skip
        dest_db = await open_database(args.to_database_url)
        if str(source_db.url) == str(dest_db.url):
            raise TransferError("source and destination are the same database")
        await _check_empty(dest_db)
        source, close = await _storage(
            args.from_storage,
            "source",
            files_dir=Path(args.from_files_dir),
            staging_dir=Path(args.from_data_dir) / "staging",
            s3_endpoint_url=args.s3_endpoint_url,
        )
        closers.append(close)
        dest, close = await _storage(
            args.to_storage,
            "destination",
            files_dir=Path(args.to_files_dir or "."),  # unused with --to-storage
            staging_dir=Path(args.from_data_dir) / "staging",
            s3_endpoint_url=args.s3_endpoint_url,
        )
        closers.append(close)
        try:
            await dest.check()
        except Exception as exc:  # noqa: BLE001 - no credentials, no bucket, unreachable, ...
            raise ConfigError(f"destination storage {args.to_storage or args.to_files_dir}: {reason(exc)}") from None

        rows = await _rows(source_db)
        notes = _fit_rows(rows)
        for note in notes:
            print(f"packhouse transfer: {note}", file=out)
        files = rows[File.__table__.name]
        progress = Progress(len(files), sum(f["size"] for f in files), out)
        for f in files:
            size = await _copy_blob(source, dest, f["storage_key"], f["sha256"])
            if f["metadata_sha256"]:
                # Checked against the row, and rebuilt from the wheel if the source lost it (the
                # source is only read).
                key = f["storage_key"] + METADATA_SUFFIX
                try:
                    data = await core_metadata(
                        source, f["storage_key"], f["filename"], f["metadata_sha256"], store_back=None
                    )
                except FileNotFoundError:
                    raise TransferError(
                        f"{key}: missing from the source storage, and its wheel cannot rebuild it"
                    ) from None
                await dest.put_bytes(key, data)
            progress.advance(size)
        await _insert_rows(dest_db, rows)
        print(
            f"transferred {len(rows['projects'])} projects, {len(files)} files "
            f"({progress.done_bytes} bytes, every sha256 verified) and {len(rows['events'])} journal "
            "entries" + (f"; {len(notes)} value(s) or row(s) that do not fit were left out (above)" if notes else "")
        )
        return 0
    except TransferError as exc:
        print(f"packhouse transfer: error: {exc}", file=out)
        return 1
    finally:
        for close in closers:
            await close()
        for engine in (source_db, dest_db):
            if engine is not None:
                await engine.dispose()


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.from_data_dir)
    args.from_database_url = args.from_database_url or f"sqlite+aiosqlite:///{data_dir / 'packhouse.db'}"
    args.from_files_dir = args.from_files_dir or str(data_dir / "files")
    if not args.to_storage and not args.to_files_dir:
        print(
            "packhouse transfer: error: give --to-storage s3://BUCKET/PREFIX or --to-files-dir DIR",
            file=sys.stderr,
        )
        return 2
    for flag, url in (("--from-database-url", args.from_database_url), ("--to-database-url", args.to_database_url)):
        if problem := database_url_problem(url):
            return fail(f"{flag}: database URL {problem}")
    try:
        return asyncio.run(transfer(args, sys.stderr))
    except ConfigError as exc:
        return fail(str(exc))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    env = os.environ.get
    p = sub.add_parser(
        "transfer",
        help="copy an installation (database + files) into another, e.g. SQLite + folder -> PostgreSQL + S3",
        description="Copy every project, file and journal entry into a new, empty database and another "
        "storage, verifying the sha256 of every file. Safe to run again after an interruption. Stop "
        "uploads to the source while it runs.",
    )
    p.add_argument("--from-data-dir", default=env("PACKHOUSE_DATA_DIR", "data"), help="source data folder")
    p.add_argument("--from-database-url", help="source database (default: DATA_DIR/packhouse.db)")
    p.add_argument("--from-files-dir", help="source files folder (default: DATA_DIR/files)")
    p.add_argument("--from-storage", help="source s3://BUCKET/PREFIX instead of a files folder")
    p.add_argument("--to-database-url", required=True, help="destination database, e.g. postgresql+asyncpg://...")
    p.add_argument("--to-storage", help="destination s3://BUCKET/PREFIX (credentials the standard AWS way)")
    p.add_argument("--to-files-dir", help="destination files folder (instead of --to-storage)")
    p.add_argument(
        "--s3-endpoint-url",
        default=env("PACKHOUSE_S3_ENDPOINT_URL"),
        help="S3 endpoint, e.g. http://minio:9000 (env PACKHOUSE_S3_ENDPOINT_URL; unset: AWS)",
    )
    p.set_defaults(func=run)
