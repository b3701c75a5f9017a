"""The same Alembic migrations on SQLite and PostgreSQL, and the test matrix really uses both."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from app.db.base import Base
from app.db.engine import POOL_TIMEOUT, build_engine
from app.db.migrate import alembic_config, upgrade_to_head
from tests.support.builders import make_wheel
from tests.support.forms import upload_form


def test_each_variant_runs_on_its_database(make_settings, db_backend, request):
    url = make_settings().effective_database_url
    assert url.startswith({"sqlite": "sqlite+aiosqlite://", "postgresql": "postgresql+asyncpg://"}[db_backend])


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
                diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
            async with engine.connect() as conn:
                left = await conn.run_sync(lambda c: sorted(Base.metadata.tables.keys() & _tables(c)))
            await upgrade_to_head(engine)
            await upgrade_to_head(engine)  # idempotent
            async with engine.connect() as conn:
                again = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
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


def test_replicas_starting_together_migrate_once(make_settings, db_backend, request, tmp_path):
    """Several processes run upgrade_to_head at once on an empty database: all succeed. On SQLite
    a new connection switching a new file to WAL while another migrated used to wait for it, both
    holding what the other needed, until "database is locked" (60 s): in about one round of ten
    here. Ten rounds, each on a new database."""
    if db_backend == "postgresql":
        urls = [_empty_database_url(make_settings, db_backend, request) for _ in range(3)]
    else:
        urls = [make_settings(data_dir=tmp_path / f"round{i}").effective_database_url for i in range(10)]

    async def one(url: str) -> None:
        engine = build_engine(url, immediate=True)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    async def scenario(url: str) -> None:
        await asyncio.gather(*(one(url) for _ in range(4)))

    for url in urls:
        asyncio.run(scenario(url))


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_database_server_that_goes_away_answers_503_and_the_server_recovers(
    make_client, database_url_for, postgres_cluster, tmp_path
):
    """PostgreSQL stopped, restarting or closed to connections: every request answers 503 with
    Retry-After and the reason (was: 500 Internal Server Error); the pool reconnects once it is back."""
    client = make_client()
    wheel = make_wheel(tmp_path, "steady", "1.0")
    data, files = upload_form(wheel)
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    database = database_url_for().rsplit("/", 1)[1]
    postgres_cluster.psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
    try:
        postgres_cluster.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
        later = make_wheel(tmp_path, "later", "1.0")
        data, files = upload_form(later)
        answers = [
            client.get(path)
            for path in ("/simple/", "/simple/steady/", f"/files/steady/{wheel.name}", "/api/projects/steady")
        ]
        answers += [
            client.post("/legacy/", data=data, files=files),
            client.delete(f"/api/projects/steady/files/{wheel.name}"),
        ]
        for r in answers:
            assert r.status_code == 503, (r.request.url, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["retry-after"] == "30"
            assert "could not reach its database" in r.json()["detail"]
            assert "not currently accepting connections" in r.json()["detail"]
        ready = client.get("/ready")
        assert ready.status_code == 503 and "database: " in ready.json()["detail"]
    finally:
        postgres_cluster.psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
    assert client.get("/simple/steady/").status_code == 200
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    assert client.get("/simple/later/").status_code == 200


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_connection_dropped_mid_request_answers_503_and_changes_nothing(
    make_client, database_url_for, postgres_cluster, tmp_path
):
    """The database's backend is terminated while a request waits on it (a failover, an operator's
    pg_terminate_backend): 503 (was: 500), and the change it was making did not happen."""
    client = make_client()
    wheel = make_wheel(tmp_path, "held", "1.0")
    data, files = upload_form(wheel)
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    url = database_url_for().replace("postgresql+asyncpg://", "postgresql://")

    async def scenario() -> httpx.Response:
        import asyncpg  # the PostgreSQL variant's driver

        holder = await asyncpg.connect(url)
        try:
            async with holder.transaction():
                # The delete's serial update waits for this row lock.
                await holder.execute("SELECT 1 FROM projects WHERE normalized_name = 'held' FOR UPDATE")
                mine = await holder.fetchval("SELECT pg_backend_pid()")
                delete = asyncio.get_running_loop().run_in_executor(
                    None, lambda: client.delete(f"/api/projects/held/files/{wheel.name}")
                )
                await _waiting_for_lock(holder)
                await holder.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> $1",
                    mine,
                )
                return await delete
        finally:
            await holder.close()

    r = asyncio.run(scenario())
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "30"
    assert "could not reach its database" in r.json()["detail"]
    # Nothing was deleted; the next request gets a fresh connection.
    page = client.get("/simple/held/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert page.status_code == 200 and [f["filename"] for f in page.json()["files"]] == [wheel.name]
    assert client.get(f"/files/held/{wheel.name}").content == wheel.read_bytes()


async def _waiting_for_lock(conn, timeout: float = 20.0) -> None:
    """Until another backend of this database waits for a lock."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    while not await conn.fetchval(query):
        assert time.monotonic() < deadline, "the request never reached the lock"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_requests_beyond_a_busy_pool_answer_503_in_time_and_the_rest_complete(make_client, database_url_for, tmp_path):
    """Every pooled connection waits on a lock held elsewhere (a migration, a VACUUM FULL, a stuck
    transaction): the requests beyond the pool answer 503 within POOL_TIMEOUT, before pip's own
    15 s timeout (was: 500 after SQLAlchemy's 30 s), and those waiting complete once it is freed."""
    client = make_client()
    wheel = make_wheel(tmp_path, "busy", "1.0")
    data, files = upload_form(wheel)
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    url = database_url_for().replace("postgresql+asyncpg://", "postgresql://")
    requests = 26  # the read engine's pool holds 20

    async def scenario() -> list[tuple[int, float, str]]:
        import asyncpg  # the PostgreSQL variant's driver

        def get() -> tuple[int, float, str]:
            started = time.monotonic()
            r = client.get("/simple/busy/")
            return r.status_code, time.monotonic() - started, r.text

        loop = asyncio.get_running_loop()
        holder = await asyncpg.connect(url)
        pool = ThreadPoolExecutor(requests)
        try:
            async with holder.transaction():
                await holder.execute("LOCK TABLE projects IN ACCESS EXCLUSIVE MODE")
                waiting = [loop.run_in_executor(pool, get) for _ in range(requests)]
                done, _ = await asyncio.wait(waiting, timeout=POOL_TIMEOUT + 4)
            # The lock is released: the requests that held the pool's connections complete.
            rest = await asyncio.wait_for(asyncio.gather(*(w for w in waiting if w not in done)), 30)
            return [w.result() for w in done] + list(rest)
        finally:
            await holder.close()
            pool.shutdown(wait=False)

    answers = asyncio.run(scenario())
    refused = [a for a in answers if a[0] != 200]
    assert len(refused) == requests - 20, [a[:2] for a in answers]  # every other one: 200
    for status, waited, body in refused:
        assert status == 503 and waited < POOL_TIMEOUT + 3, (status, waited, body)
        assert "database connections are all busy" in body
    assert client.get("/simple/busy/").status_code == 200


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_statement_cancelled_midway_stays_a_cancellation(make_client, caplog):
    """SQLAlchemy flags a task cancelled mid-statement as a disconnect (to discard the connection).
    It must still end as a cancellation, not as "could not reach its database": that error was
    caught as one, so a package-folder rescan cancelled at shutdown went on for ever, and the
    server (and the test suite) never stopped."""
    client = make_client()
    sessions = client.app.state.manage.sessions

    async def cancel_a_statement() -> str:
        async def statement() -> None:
            async with sessions() as session:
                await session.execute(text("SELECT pg_sleep(30)"))

        task = asyncio.create_task(statement())
        await asyncio.sleep(0.5)  # the statement is running on the server
        task.cancel()
        try:
            await asyncio.wait_for(task, 10)
        except asyncio.CancelledError:
            return "cancelled"
        except Exception as exc:  # noqa: BLE001 - the test reports what it was
            return f"{type(exc).__name__}: {exc}"
        return "completed"

    assert client.portal.call(cancel_a_statement) == "cancelled"
    assert "lost the connection to the database" not in caplog.text
    assert client.get("/simple/").status_code == 200  # the pool gives a fresh connection
