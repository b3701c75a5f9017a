"""Read and write rows in whichever database the running test variant uses (SQLite file or
PostgreSQL).

The ``database_url_for`` fixture registers its resolver here for the duration of a test, so support
helpers (fingerprints, row checks, seeded rows) need no extra fixture argument."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

T = TypeVar("T")

_resolver: Callable[[Path], str | None] | None = None


def register(resolver: Callable[[Path], str | None] | None) -> None:
    global _resolver
    _resolver = resolver


def query(sql: str, data_dir: Path) -> list[tuple[object, ...]]:
    url = _resolver(data_dir) if _resolver is not None else None
    if url is None:
        with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'packhouse.db'}?mode=ro", uri=True)) as conn:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
    import asyncpg

    async def fetch() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [tuple(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def transaction(data_dir: Path, fn: Callable[[Connection], T]) -> T:
    """``fn(connection)`` in one committed transaction on the database of the server whose data
    folder is ``data_dir`` (the migrated schema must exist: start the app first)."""
    url = (_resolver(data_dir) if _resolver is not None else None) or f"sqlite+aiosqlite:///{data_dir / 'packhouse.db'}"

    async def run() -> T:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    # A thread of its own: the caller may be running an event loop (Playwright's sync API does).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()
