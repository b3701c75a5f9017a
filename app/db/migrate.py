"""Bring the schema to the latest Alembic revision (Alembic is the only way the schema changes)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import app


def script_location() -> Path:
    package = Path(app.__file__).resolve().parent
    installed = package / "_migrations"  # inside a built wheel (see pyproject force-include)
    return installed if installed.is_dir() else package.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


# Any constant: replicas starting together on one PostgreSQL database take turns migrating.
_MIGRATION_LOCK = 0x7061636B686F7573  # "packhous"


async def upgrade_to_head(engine: AsyncEngine) -> None:
    def _upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends; the next replica then finds the schema at head.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        command.upgrade(alembic_config(connection), "head")

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
