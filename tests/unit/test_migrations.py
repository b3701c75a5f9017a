"""Alembic is the only way the schema changes: `upgrade head` on an empty database must produce
exactly the models' schema (no autogenerate diff)."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db.base import Base
from app.db.engine import build_engine
from app.db.migrate import upgrade_to_head


@pytest.mark.anyio
async def test_upgrade_head_matches_models(tmp_path):
    engine = build_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", immediate=True)
    await upgrade_to_head(engine)
    await upgrade_to_head(engine)  # idempotent: a restart is a no-op

    def diff(conn):
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    await engine.dispose()
