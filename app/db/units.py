"""Transactions run whole as one synchronous function (the upload path's database work).

With aiosqlite every statement is a hop to the connection's thread and back (~0.2 ms here), and an
upload's check and insert take some thirty statements: most of the time of a small upload. A
``SqliteUnits`` runs the whole transaction in one worker thread on a pysqlite connection instead:
one hop per transaction, ~12 µs per statement. ``SessionUnits`` runs the same functions on any
database through ``AsyncSession.run_sync`` (asyncpg needs no thread at all).

The functions receive a synchronous ``Session`` and use the synchronous helpers of ``app.db.repo``.
A new upload's rows (``add_upload``), the one write a busy index makes per request, skip even that
on SQLite: its statements are compiled once and run on the pool's sqlite3 connection itself.

``lookup`` is the one read an upload waits for (is the filename taken, or was it deleted?). On
SQLite it runs on the event loop, on a read-only sqlite3 connection, as ``SqliteSerials`` does:
two lookups by index take some 20 µs there, against ~0.3 ms through a session in a worker thread
(more while the upload's fsync and archive read compete for the same two CPUs).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

import anyio
from sqlalchemy import Table, bindparam
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db import repo
from app.db.engine import (
    build_sync_engine,
    connect_readonly,
    full_error,
    is_full_error,
    is_readonly_error,
    readonly_error,
    sqlite_path,
)

T = TypeVar("T")


class FileRef(NamedTuple):
    id: int
    filename: str
    sha256: str
    storage_key: str


class Deletion(NamedTuple):
    sha256: str
    time: datetime


Lookup = tuple[FileRef | None, Deletion | None]


class Units(Protocol):
    # True: ``read`` and ``write`` run their function in a worker thread, where it may also block
    # on other work (the upload commits its file there, beside the row's statements).
    in_thread: bool

    async def read(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` outside any write transaction (reads see the last commit)."""
        ...

    async def write(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` in one write transaction, committed when it returns (rolled back if it raises)."""
        ...

    async def add_upload(self, upload: repo.NewUpload, commit_file: FileCommit | None = None) -> None:
        """A new file's rows (repo.add_upload), in one write transaction. ``commit_file`` (only
        where ``in_thread``) is started in the transaction's thread before its first statement and
        waited for before it commits (run_with_file_commit)."""
        ...

    async def lookup(self, filename: str) -> Lookup:
        """The live file named ``filename``, or else its last deletion (repo.upload_lookup)."""
        ...

    def close(self) -> None: ...


# Starts committing a stored file, returns a function that waits for it (Storage.start_commit).
FileCommit = Callable[[], Callable[[], None]]


def run_with_file_commit(commit_file: FileCommit | None, body: Callable[[], T]) -> T:
    """``body()`` (a transaction's statements) with a file's commit started just before it, so its
    fsyncs run meanwhile, and waited for after it: the wait raises what an fsync raised, and the
    caller then rolls the transaction back."""
    if commit_file is None:
        return body()
    durable = commit_file()
    try:
        result = body()
    except BaseException:
        with contextlib.suppress(Exception):
            durable()  # nothing is removed under its fsync
        raise
    durable()
    return result


def _as_lookup(found: tuple[Any, Any]) -> Lookup:
    existing, deleted = found
    return (
        None if existing is None else FileRef(*existing),
        None if deleted is None else Deletion(*deleted),
    )


class SessionUnits:
    in_thread = False  # AsyncSession.run_sync runs the function on the event loop (asyncpg)

    def __init__(self, readers: async_sessionmaker[AsyncSession], writers: async_sessionmaker[AsyncSession]) -> None:
        self.readers, self.writers = readers, writers

    async def read(self, fn: Callable[[Session], T]) -> T:
        async with self.readers() as session:
            return await session.run_sync(fn)

    async def write(self, fn: Callable[[Session], T]) -> T:
        async with self.writers() as session, session.begin():
            return await session.run_sync(fn)

    async def add_upload(self, upload: repo.NewUpload, commit_file: FileCommit | None = None) -> None:
        await self.write(lambda session: run_with_file_commit(commit_file, lambda: repo.add_upload(session, upload)))

    async def lookup(self, filename: str) -> Lookup:
        return _as_lookup(await self.read(lambda session: repo.upload_lookup(session, filename)))

    def close(self) -> None:
        pass


class _Compiled:
    """A Core statement compiled once for sqlite3: its SQL, and its parameters in order (the
    statement's own literals, such as LIMIT 1, filled in)."""

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=sqlite.dialect())
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or ())
        self.defaults = dict(compiled.params)

    def params(self, **values: object) -> tuple[object, ...]:
        return tuple(values[n] if n in values else self.defaults[n] for n in self.names)


class _RawInsert:
    """An INSERT of one row into ``table``, compiled once for sqlite3, with what SQLAlchemy adds at
    execution: each Python-side default filled in (an upload's time, ``yanked`` false) and each
    value converted by its column type's bind processor (a DateTime as SQLAlchemy's ISO text).
    ``build`` adds to the statement (ON CONFLICT, RETURNING)."""

    def __init__(self, table: Table, build: Callable[[sqlite.Insert], Any] = lambda stmt: stmt) -> None:
        dialect = sqlite.dialect()
        columns = [c for c in table.columns if not c.primary_key]
        for c in columns:
            default = c.default
            if c.server_default is not None or (default is not None and not (default.is_scalar or default.is_callable)):
                raise NotImplementedError(f"{table.name}.{c.name}: only Python-side defaults are filled in")
        compiled = build(sqlite.insert(table).values({c.key: bindparam(c.key) for c in columns})).compile(
            dialect=dialect
        )
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or ())
        self._columns = {c.key: (c.default, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in columns}

    def params(self, values: Mapping[str, object]) -> tuple[object, ...]:
        if unknown := values.keys() - self._columns.keys():
            raise KeyError(f"not columns: {sorted(unknown)}")
        row = {}
        for key, (default, process) in self._columns.items():
            if key in values:
                value = values[key]
            elif default is None:
                value = None
            else:  # SQLAlchemy wraps a callable default to take the execution context
                value = default.arg(None) if default.is_callable else default.arg  # type: ignore[attr-defined]
            row[key] = value if process is None or value is None else process(value)
        return tuple(row[name] for name in self.names)


class SqliteUnits:
    in_thread = True
    # repo's statements, compiled for SQLite (positional parameters: the filename each time).
    FILE_REF = _Compiled(repo._FILE_REF)
    LAST_DELETION = _Compiled(repo._LAST_DELETION)
    # A new upload's rows (repo.add_upload), for sqlite3 directly: see _add_upload.
    ADD_PROJECT = _RawInsert(  # get or create, as repo.ensure_project
        repo._PROJECTS,
        lambda stmt: stmt.on_conflict_do_update(
            index_elements=["normalized_name"], set_={"normalized_name": stmt.excluded.normalized_name}
        ).returning(repo._PROJECTS.c.id, repo._PROJECTS.c.status, repo._PROJECTS.c.status_reason),
    )
    ADD_FILE = _RawInsert(repo._FILES)
    ADD_EVENT = _RawInsert(repo._EVENTS, lambda stmt: stmt.returning(repo._EVENTS.c.id))
    SET_SERIAL = _Compiled(repo._SET_SERIAL)

    def __init__(self, url: str) -> None:
        self.reader = build_sync_engine(url)
        self.writer = build_sync_engine(url, immediate=True)  # BEGIN IMMEDIATE, see engine.py
        path = sqlite_path(url)
        self._ro: sqlite3.Connection | None = None if path is None else connect_readonly(path)

    async def lookup(self, filename: str) -> Lookup:
        if self._ro is None:  # an in-memory database: only the engine's own connection sees it
            return _as_lookup(await self.read(lambda session: repo.upload_lookup(session, filename)))
        # Each statement runs in autocommit and sees every commit made before it started. The two
        # run on one snapshot only if the second finds nothing to add: a deletion is only asked
        # for when no live file has the name, exactly as in repo.upload_lookup.
        ref, deletion = self.FILE_REF, self.LAST_DELETION
        existing = self._ro.execute(ref.sql, ref.params(filename=filename)).fetchone()
        if existing is not None:
            return FileRef(*existing), None
        deleted = self._ro.execute(deletion.sql, deletion.params(filename=filename)).fetchone()
        # SQLAlchemy stores a DateTime on SQLite as ISO text (naive, UTC).
        return None, None if deleted is None else Deletion(deleted[0], datetime.fromisoformat(deleted[1]))

    async def read(self, fn: Callable[[Session], T]) -> T:
        return await anyio.to_thread.run_sync(self._read, fn)

    async def write(self, fn: Callable[[Session], T]) -> T:
        return await anyio.to_thread.run_sync(self._write, fn)

    async def add_upload(self, upload: repo.NewUpload, commit_file: FileCommit | None = None) -> None:
        if self._ro is None:  # an in-memory database: through a session, as every other write
            await SessionUnits.add_upload(self, upload, commit_file)  # type: ignore[arg-type]
            return
        await anyio.to_thread.run_sync(self._add_upload, upload, commit_file)

    def _add_upload(self, upload: repo.NewUpload, commit_file: FileCommit | None) -> None:
        """repo.add_upload's statements on the writer pool's sqlite3 connection itself. Through a
        Session they took ~0.65 ms in the server (0.2 ms of it to begin), on sqlite3 ~0.1 ms: a
        fifth of a small upload. Errors are raised as SQLAlchemy's (IntegrityError for a filename
        that another upload took meanwhile), as through a session."""
        fairy = self.writer.raw_connection()
        try:
            conn: sqlite3.Connection = fairy.driver_connection  # type: ignore[assignment]

            def insert() -> None:
                conn.execute("BEGIN IMMEDIATE")
                names = {"name": upload.name, "normalized_name": upload.normalized_name}
                row = conn.execute(self.ADD_PROJECT.sql, self.ADD_PROJECT.params(names)).fetchone()
                project_id = row[0]
                repo.refuse_closed(upload.normalized_name, *row[1:])  # rolled back below
                conn.execute(self.ADD_FILE.sql, self.ADD_FILE.params({**upload.file, "project_id": project_id}))
                (event_id,) = conn.execute(self.ADD_EVENT.sql, self.ADD_EVENT.params(upload.event)).fetchone()
                conn.execute(self.SET_SERIAL.sql, self.SET_SERIAL.params(project_id=project_id, serial=event_id))

            try:
                run_with_file_commit(commit_file, insert)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if is_readonly_error(exc):  # as through a session (engine.py: _readonly)
                    raise readonly_error(self.writer.url.database) from exc
                if is_full_error(exc):
                    raise full_error(exc) from exc
                if isinstance(exc, sqlite3.Error):
                    raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
                raise
        finally:
            fairy.close()

    def _read(self, fn: Callable[[Session], T]) -> T:
        with Session(self.reader, expire_on_commit=False) as session:
            return fn(session)

    def _write(self, fn: Callable[[Session], T]) -> T:
        with Session(self.writer, expire_on_commit=False) as session, session.begin():
            return fn(session)

    def close(self) -> None:
        if self._ro is not None:
            self._ro.close()
        self.reader.dispose()
        self.writer.dispose()
