"""Transactions run whole as one synchronous function (the upload path's database work).

With aiosqlite every statement is a hop to the connection's thread and back (~0.2 ms here), and an
upload's check and insert take some thirty statements: most of the time of a small upload. A
``SqliteUnits`` runs the whole transaction in one worker thread on a pysqlite connection instead:
one hop per transaction, ~12 µs per statement. ``SessionUnits`` runs the same functions on any
database through ``AsyncSession.run_sync`` (asyncpg needs no thread at all).

The functions receive a synchronous ``Session`` and use the synchronous helpers of ``app.db.repo``.

``lookup`` is the one read an upload waits for (is the filename taken, or was it deleted?). On
SQLite it runs on the event loop, on a read-only sqlite3 connection, as ``SqliteSerials`` does:
two lookups by index take some 20 µs there, against ~0.3 ms through a session in a worker thread
(more while the upload's fsync and archive read compete for the same two CPUs).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

import anyio
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db import repo
from app.db.engine import build_sync_engine, connect_readonly, sqlite_path

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

    async def lookup(self, filename: str) -> Lookup:
        """The live file named ``filename``, or else its last deletion (repo.upload_lookup)."""
        ...

    def close(self) -> None: ...


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


class SqliteUnits:
    in_thread = True
    # repo's statements, compiled for SQLite (positional parameters: the filename each time).
    FILE_REF = _Compiled(repo._FILE_REF)
    LAST_DELETION = _Compiled(repo._LAST_DELETION)

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
