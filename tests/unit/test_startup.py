"""Start-up shortcuts: the schema check without Alembic, and the serial lookup connection."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

from alembic.script import ScriptDirectory

from app.db.engine import build_engine
from app.db.migrate import alembic_config, script_heads, upgrade_to_head
from app.db.serials import SqliteSerials


def test_script_heads_match_alembic():
    assert script_heads() == set(ScriptDirectory.from_config(alembic_config()).get_heads())


def test_upgrade_then_noop_and_serials_see_other_connections(tmp_path):
    db = tmp_path / "sub dir" / "p.db"  # a path that needs quoting in a sqlite URI

    async def migrate() -> None:
        engine = build_engine(f"sqlite+aiosqlite:///{db}", immediate=True)
        await upgrade_to_head(engine)
        await upgrade_to_head(engine)  # already at head: returns without Alembic
        await engine.dispose()

    asyncio.run(migrate())
    with sqlite3.connect(db) as conn:
        assert {r[0] for r in conn.execute("SELECT version_num FROM alembic_version")} == script_heads()

    serials = SqliteSerials(str(db))
    try:
        assert asyncio.run(serials.project("demo")) is None
        assert asyncio.run(serials.last()) == 0
        with sqlite3.connect(db) as conn:  # another writer (another worker or replica)
            conn.execute(
                "INSERT INTO projects (name, normalized_name, created, serial) VALUES ('Demo', 'demo', "
                "'2024-01-01 00:00:00', 7)"
            )
            conn.execute("INSERT INTO events (time, action, project) VALUES ('2024-01-01 00:00:00', 'x', 'demo')")
        assert asyncio.run(serials.project("demo")) == 7
        assert asyncio.run(serials.last()) == 1
    finally:
        serials.close()


def test_the_app_loads_without_what_only_some_requests_need(tmp_path):
    """Start-up time (issue 5: first answer in under a second): building the app imports neither
    Jinja2 (the UI's first page does), nor SQLAlchemy's PostgreSQL dialect (a PostgreSQL
    deployment's first upload does), nor Alembic (only a schema behind head needs it), nor the
    README renderer (an upload with a README does)."""
    code = (
        "import sys; from app.main import create_app; from app.settings import Settings; "
        f"create_app(Settings(data_dir={str(tmp_path)!r})); "
        "print(' '.join(m for m in ('jinja2', 'sqlalchemy.dialects.postgresql', 'alembic', "
        "'readme_renderer', 'docutils') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
