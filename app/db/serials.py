"""Change-serial lookups for the read path (DESIGN rule 9: reads are cheap).

Every request for a simple page needs one number from the database: the project's serial (or, for
the project list, the newest journal id). The page itself comes from the cache while that number is
unchanged. Asking through an ORM session costs a session, a pooled connection and, with aiosqlite,
a hop to its worker thread and back: most of the time of a cached request.

``SessionSerials`` works on any database. ``SqliteSerials`` keeps one read-only sqlite3 connection
per process and queries it on the event loop: a lookup by a unique index in WAL mode takes a few
microseconds and never waits for a writer (WAL readers read the last committed snapshot), which is
far cheaper than the thread hop. Each statement runs in autocommit, so it sees every commit made
before it started, by any worker or process.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repo
from app.db.engine import connect_readonly


class Serials(Protocol):
    async def project(self, normalized_name: str) -> int | None: ...

    async def last(self) -> int: ...

    def close(self) -> None: ...


class SessionSerials:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def project(self, normalized_name: str) -> int | None:
        async with self.sessions() as session:
            return await repo.project_serial(session, normalized_name)

    async def last(self) -> int:
        async with self.sessions() as session:
            return await repo.last_serial(session)

    def close(self) -> None:
        pass


class SqliteSerials:
    # The same queries as repo.project_serial / repo.last_serial, on the unique index and the rowid.
    PROJECT = "SELECT serial FROM projects WHERE normalized_name = ?"
    LAST = "SELECT coalesce(max(id), 0) FROM events"

    def __init__(self, path: str) -> None:
        self.conn = connect_readonly(path)

    async def project(self, normalized_name: str) -> int | None:
        row = self.conn.execute(self.PROJECT, (normalized_name,)).fetchone()
        return None if row is None else int(row[0])

    async def last(self) -> int:
        return int(self.conn.execute(self.LAST).fetchone()[0])

    def close(self) -> None:
        self.conn.close()
