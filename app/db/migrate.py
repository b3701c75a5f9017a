"""Bring the schema to the latest Alembic revision (Alembic is the only way the schema changes)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import app

if TYPE_CHECKING:
    from alembic.config import Config


def script_location() -> Path:
    package = Path(app.__file__).resolve().parent
    installed = package / "_migrations"  # inside a built wheel (see pyproject force-include)
    return installed if installed.is_dir() else package.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


# Any constant: replicas starting together on one PostgreSQL database take turns migrating.
_MIGRATION_LOCK = 0x7061636B686F7573  # "packhous"


def script_heads() -> set[str]:
    """Head revisions of the migration scripts, read from their ``revision``/``down_revision``
    assignments. Importing Alembic costs ~0.3 s of every start; this check avoids it when the
    database is already up to date (the usual case)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (script_location() / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            if not isinstance(target, ast.Name) or node.value is None:  # type: ignore[union-attr]
                continue
            value = ast.literal_eval(node.value)  # type: ignore[union-attr]
            values = {value} if isinstance(value, str) else set(value or ())
            if target.id == "revision":
                revisions |= values
            elif target.id == "down_revision":
                parents |= values
    return revisions - parents


def _current(connection: Connection) -> set[str]:
    if not inspect(connection).has_table("alembic_version"):
        return set()
    return {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}


async def has_schema(engine: AsyncEngine) -> bool:
    """Whether the database holds Packhouse's schema (at any revision)."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))


async def upgrade_to_head(engine: AsyncEngine) -> None:
    def _upgrade(connection: Connection) -> None:
        heads = script_heads()
        if heads and _current(connection) == heads:
            return
        from alembic import command

        if connection.dialect.name == "postgresql":
            # Held until this transaction ends; the next replica then finds the schema at head.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        command.upgrade(alembic_config(connection), "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
