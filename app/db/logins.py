"""The failed-login ledger of app/auth/throttle.py, in the metadata database: every worker and every
replica reads and writes the same rows, so a client gets the limit once, not once per process."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import LoginFailure

_T = LoginFailure.__table__


class DatabaseLoginLedger:
    def __init__(self, readers: async_sessionmaker[AsyncSession], writers: async_sessionmaker[AsyncSession]) -> None:
        self.readers = readers
        self.writers = writers

    async def recent(self, client: str, username: str, since: float, limit: int) -> list[float]:
        """The times of the pair's last ``limit`` failures after ``since``, newest first."""
        query = (
            select(_T.c.failed_at)
            .where(_T.c.client == client, _T.c.username == username, _T.c.failed_at > since)
            .order_by(_T.c.failed_at.desc())
            .limit(limit)
        )
        async with self.readers() as session:
            return list((await session.scalars(query)).all())

    async def add(self, client: str, username: str, at: float, since: float, expired: float) -> int:
        """Records a failure at ``at``; returns the pair's failures after ``since``, this one
        included. Every row from before ``expired`` (out of the window) is deleted on the way."""
        async with self.writers() as session, session.begin():
            await session.execute(delete(_T).where(_T.c.failed_at <= expired))
            await session.execute(insert(_T).values(client=client, username=username, failed_at=at))
            counted = select(func.count()).where(
                _T.c.client == client, _T.c.username == username, _T.c.failed_at > since
            )
            return int(await session.scalar(counted) or 0)

    async def forget(self, client: str, username: str) -> None:
        async with self.writers() as session, session.begin():
            await session.execute(delete(_T).where(_T.c.client == client, _T.c.username == username))
