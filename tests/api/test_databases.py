"""The same Alembic migrations on SQLite and PostgreSQL, and the test matrix really uses both."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from app.db.base import Base
from app.db.engine import build_engine
from app.db.migrate import alembic_config, upgrade_to_head
from tests.support.builders import make_wheel
from tests.support.forms import upload_form


def test_each_variant_runs_on_its_database(make_settings, db_backend, request):
    url = make_settings().effective_database_url
    assert url.startswith(
        {"sqlite": "sqlite+aiosqlite://", "postgresql": "postgresql+asyncpg://"}[db_backend]
    )


def test_uploads_are_rows_in_the_configured_database(make_client, db_query, db_backend, tmp_path):
    client = make_client()
    wheel = make_wheel(tmp_path, "rowcheck", "1.0")
    data, files = upload_form(wheel)
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    assert db_query("SELECT filename, size FROM files") == [(wheel.name, wheel.stat().st_size)]
    assert (tmp_path / "data" / "packhouse.db").exists() == (db_backend == "sqlite")


def _empty_database_url(make_settings, db_backend, request) -> str:
    """An empty database with no tables at all (test databases usually start at head)."""
    if db_backend == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        return cluster.url(cluster.create_database(blank=True))
    return make_settings().effective_database_url


def test_migrations_build_exactly_the_models_and_downgrade_cleanly(make_settings, db_backend, request):
    url = _empty_database_url(make_settings, db_backend, request)

    async def scenario() -> tuple[list[object], list[str], list[object]]:
        engine = build_engine(url, immediate=True)
        try:
            await upgrade_to_head(engine)
            async with engine.connect() as conn:
                diff = await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
                )
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
            async with engine.connect() as conn:
                left = await conn.run_sync(lambda c: sorted(Base.metadata.tables.keys() & _tables(c)))
            await upgrade_to_head(engine)
            await upgrade_to_head(engine)  # idempotent
            async with engine.connect() as conn:
                again = await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
                )
                await conn.execute(text("SELECT count(*) FROM files"))
            return diff, left, again
        finally:
            await engine.dispose()

    diff, left, again = asyncio.run(scenario())
    assert diff == [] and again == []
    assert left == []


def _tables(connection) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(connection).get_table_names())


def test_replicas_starting_together_migrate_once(make_settings, db_backend, request):
    """Several processes run upgrade_to_head at once on an empty database: all succeed."""
    url = _empty_database_url(make_settings, db_backend, request)

    async def one() -> None:
        engine = build_engine(url, immediate=True)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    async def scenario() -> None:
        await asyncio.gather(*(one() for _ in range(4)))

    asyncio.run(scenario())
