"""Read rows from whichever database the running test variant uses (SQLite file or PostgreSQL).

The ``database_url_for`` fixture registers its resolver here for the duration of a test, so support
helpers (fingerprints, row checks) need no extra fixture argument."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

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
