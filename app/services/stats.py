"""Counts for the operations endpoints (Prometheus gauges)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repo


class StatsService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def counts(self) -> tuple[int, int]:
        """(projects with at least one file, files stored)."""
        async with self.sessions() as session:
            return await repo.counts(session)
