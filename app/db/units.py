"""Transactions run whole as one synchronous function (the upload path's database work).

With aiosqlite every statement is a hop to the connection's thread and back (~0.2 ms here), and an
upload's check and insert take some thirty statements: most of the time of a small upload. A
``SqliteUnits`` runs the whole transaction in one worker thread on a pysqlite connection instead:
one hop per transaction, ~12 µs per statement. ``SessionUnits`` runs the same functions on any
database through ``AsyncSession.run_sync`` (asyncpg needs no thread at all).

The functions receive a synchronous ``Session`` and use the synchronous helpers of ``app.db.repo``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db.engine import build_sync_engine

T = TypeVar("T")


class Units(Protocol):
    async def read(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` outside any write transaction (reads see the last commit)."""
        ...

    async def write(self, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` in one write transaction, committed when it returns (rolled back if it raises)."""
        ...

    def close(self) -> None: ...


class SessionUnits:
    def __init__(self, readers: async_sessionmaker[AsyncSession], writers: async_sessionmaker[AsyncSession]) -> None:
        self.readers, self.writers = readers, writers

    async def read(self, fn: Callable[[Session], T]) -> T:
        async with self.readers() as session:
            return await session.run_sync(fn)

    async def write(self, fn: Callable[[Session], T]) -> T:
        async with self.writers() as session, session.begin():
            return await session.run_sync(fn)

    def close(self) -> None:
        pass


class SqliteUnits:
    def __init__(self, url: str) -> None:
        self.reader = build_sync_engine(url)
        self.writer = build_sync_engine(url, immediate=True)  # BEGIN IMMEDIATE, see engine.py

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
        self.reader.dispose()
        self.writer.dispose()
