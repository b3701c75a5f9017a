"""Async engines and session factory.

SQLite gets WAL, foreign keys and a busy timeout. Its write transactions start with
``BEGIN IMMEDIATE``: a deferred transaction that reads and then writes can fail at once with
SQLITE_BUSY when another writer committed in between (the busy timeout does not apply to that
upgrade), whereas an immediate one simply waits its turn. Reads keep plain ``BEGIN`` so they
never queue behind writers (WAL lets them run concurrently).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from app.errors import DatabaseUnavailableError, ReadOnlyDatabaseError, StorageFullError

log = logging.getLogger("packhouse.db")

# Packhouse runs on SQLAlchemy's asyncio extension: these drivers, nothing else.
_ASYNC_DRIVERS = {"sqlite": ("aiosqlite",), "postgresql": ("asyncpg", "psycopg", "psycopg_async")}
_EXAMPLES = "sqlite+aiosqlite:///PATH/packhouse.db or postgresql+asyncpg://USER:PASSWORD@HOST/DB"


def database_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be Packhouse's database URL (unparseable, another database, a synchronous
    driver), or None. Reads the URL only: no driver is imported, nothing is opened."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"{url!r} is not a SQLAlchemy URL; use {_EXAMPLES}"
    backend, _, driver = parsed.drivername.partition("+")
    shown = parsed.render_as_string()  # password hidden
    if backend not in _ASYNC_DRIVERS:
        return f"{shown!r}: Packhouse runs on SQLite or PostgreSQL; use {_EXAMPLES}"
    if driver not in _ASYNC_DRIVERS[backend]:
        example = "sqlite+aiosqlite://" if backend == "sqlite" else "postgresql+asyncpg://"
        which = f"{driver} is not an async driver" if driver else "it needs an async driver"
        return f"{shown!r}: {which}; start it with {example}"
    if backend == "sqlite" and (
        not parsed.database or parsed.database == ":memory:" or parsed.query.get("mode") == "memory"
    ):
        # Every upload would be lost at the next restart, and each worker would have its own index.
        return (
            f"{shown!r} is an in-memory SQLite database, which keeps nothing across restarts; give a "
            "file (sqlite+aiosqlite:////srv/packhouse/packhouse.db), or leave the URL out to use "
            "packhouse.db in the data folder"
        )
    return None


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> str | None:
    """The database file of a file-backed SQLite URL, else None (memory databases included)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return parsed.database


def connect_readonly(path: str) -> sqlite3.Connection:
    """A read-only sqlite3 connection in autocommit, for lookups on the event loop (WAL readers
    never wait for a writer; each statement sees every commit made before it started)."""
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def build_engine(url: str, *, immediate: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # Write transactions take turns (``immediate``): a few connections are plenty for them.
        size = 5 if immediate else 10
        engine = create_async_engine(
            url, poolclass=_ServerPool, pool_pre_ping=True, pool_size=size, max_overflow=size, pool_timeout=POOL_TIMEOUT
        )
        _server_events(engine.sync_engine, immediate)
        return engine
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # Each aiosqlite connection owns a thread. The default pool (5 + 10 overflow) closes overflow
    # connections on return, so a burst of concurrent reads started and stopped a thread per
    # request; keep enough connections open and let a burst wait for one instead.
    engine = create_async_engine(url, connect_args={"timeout": 60}, pool_size=20, max_overflow=0)
    _sqlite_events(engine.sync_engine, immediate)
    return engine


def build_sync_engine(url: str, *, immediate: bool = False) -> Engine:
    """A synchronous (pysqlite) engine on a SQLite file, for transactions run whole in one worker
    thread (app/db/units.py). Same pragmas and BEGIN rules as the async engine."""
    parsed = make_url(url).set(drivername="sqlite")
    engine = create_engine(
        parsed, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=20, max_overflow=0
    )
    _sqlite_events(engine, immediate)
    return engine


def _sqlite_error_name(exc: BaseException) -> str:
    """SQLite's error name (SQLITE_READONLY_..., SQLITE_FULL) of an error raised as it is or
    wrapped by SQLAlchemy; "" for any other error."""
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlite_errorname", "") if isinstance(orig, sqlite3.Error) else ""


def is_readonly_error(exc: BaseException) -> bool:
    """SQLite's "attempt to write a readonly database" (SQLITE_READONLY and its extended codes)."""
    return _sqlite_error_name(exc).startswith("SQLITE_READONLY")


def is_full_error(exc: BaseException) -> bool:
    """SQLite's "database or disk is full" (SQLITE_FULL)."""
    return _sqlite_error_name(exc) == "SQLITE_FULL"


def full_error(exc: BaseException) -> StorageFullError:
    """What a client is told when a write finds the database's disk full: nothing was changed."""
    orig = getattr(exc, "orig", None) or exc
    return StorageFullError(
        f"The server's database is full ({orig}): nothing was recorded. Ask the server's operator to "
        "free space, then try again."
    )


def readonly_error(path: str | None) -> ReadOnlyDatabaseError:
    """What a client is told when a write finds the database read-only (the log names the file)."""
    log.error(
        "the database %s is read-only: every change fails until it is writable again (its file, "
        "and the folder holding it: chattr -i, chmod, or a read-only mount)", path or "(in memory)",
    )  # fmt: skip
    return ReadOnlyDatabaseError(
        "The server's database is read-only: nothing was changed. Ask the server's operator to make "
        "it writable, then try again."
    )


async def sqlite_write_problem(engine: AsyncEngine) -> str | None:
    """Why the SQLite database cannot be written (one line naming the file), or None. SQLite
    opens a file it may not write (chattr +i, no write permission, a read-only mount) read-only
    without a word, and even begins a write transaction on it: only a write fails. So one is
    tried, and rolled back: setting ``user_version`` to the value it has.

    Raises the driver's error for any other failure."""
    try:
        async with engine.connect() as conn:
            await conn.execution_options(**{_PROBE: True})
            version = int((await conn.exec_driver_sql("PRAGMA user_version")).scalar_one())
            await conn.exec_driver_sql(f"PRAGMA user_version = {version}")
            await conn.rollback()
    except Exception as exc:
        if not is_readonly_error(exc):
            raise
        return (
            f"cannot write to the database {engine.url.database}: it is read-only (is the file, or the "
            "folder holding it, read-only? chattr -i, chmod, or a read-only mount)"
        )
    return None


_PROBE = "packhouse_write_probe"  # sqlite_write_problem's statements: their errors are its own


#: How long a new connection keeps trying to switch a database to WAL while others hold it.
WAL_SWITCH_SECONDS = 60.0


def _use_wal(cur: Any) -> None:
    """Put the database in WAL mode (it stays so: later connections only read the mode).

    The switch needs the database to itself. On a database not yet in WAL (the first start),
    another process's migration may be writing: waiting in SQLite's busy handler, this connection
    held a shared lock that the other needed to commit, and both waited (60 s, then "database is
    locked": replicas or workers starting together on a new file). So the switch is tried without
    a busy timeout, holding nothing between tries."""
    cur.execute("PRAGMA busy_timeout=0")
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            cur.execute("PRAGMA journal_mode")
            if str(cur.fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # sqlite3's, or the async driver's adaptation of it
            if "database is locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _sqlite_events(engine: Engine, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        _use_wal(cur)
        cur.execute("PRAGMA synchronous=FULL")  # an answered upload survives a power cut
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "handle_error")
    def _readonly(context: ExceptionContext) -> None:
        # The file (or its folder) became read-only while the server ran: a 503 that says so,
        # not a 500 (the start refuses a read-only database: app/commands/_server.py).
        probe = context.connection is not None and context.connection.get_execution_options().get(_PROBE)
        if not probe and is_readonly_error(context.original_exception):
            raise readonly_error(engine.url.database) from context.original_exception
        if is_full_error(context.original_exception):  # every write, not only uploads: a 507
            raise full_error(context.original_exception) from context.original_exception


def unavailable_error(exc: BaseException) -> DatabaseUnavailableError:
    """What a client is told when the database server cannot be reached or drops the connection
    (in the driver's words, which never hold the URL's password)."""
    orig = getattr(exc, "orig", None) or exc
    why = (str(orig).strip() or type(orig).__name__).splitlines()[0]
    return DatabaseUnavailableError(
        f"The server could not reach its database ({why}). Try again later (repeating an upload or "
        "a change is safe); if it persists, the server's administrator can see the database's state at /ready."
    )


# How long a request waits for one of the pool's connections before it answers 503: less than
# pip's 15 s read timeout, so that pip sees the 503 (and retries it) rather than a hang.
POOL_TIMEOUT = 10.0


class _ServerPool(AsyncAdaptedQueuePool):
    """Every connection busy for POOL_TIMEOUT (slow queries, a lock held elsewhere, a burst larger
    than the pool): a 503 that says so, not SQLAlchemy's TimeoutError as a 500."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeoutError as exc:
            log.error("no database connection free: %s", exc)
            raise DatabaseUnavailableError(
                f"The server's database connections are all busy (waited {POOL_TIMEOUT:g} s for one of "
                f"{self.size() + self._max_overflow}). Try again later (repeating an upload or a change is safe)."
            ) from exc


# Any constant (beside app/db/migrate.py's): the write transactions of every replica take turns.
_WRITE_LOCK = 0x7061636B77726974  # "packwrit"


def _server_events(engine: Engine, immediate: bool) -> None:
    """A database server (PostgreSQL) that is down, refuses connections (stopped, restarting, at
    max_connections, the database closed to connections) or drops one mid-request (its backend
    terminated, a failover) is the server's fault: a 503 that says so, not a 500 traceback.

    ``immediate``: the engine's transactions take turns, as SQLite's BEGIN IMMEDIATE ones do, by
    a transaction-level advisory lock taken before their first statement. The journal's ids then
    commit in their order: the project list's cache key is the newest id (repo.last_serial), and
    with a sequence a transaction that took id N could commit after one that took N+1 was seen,
    its change never seen by any replica (a deleted project still listed, its ETag still 304)."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:  # refused, unreachable, rejected: anything that gives no connection
            raise unavailable_error(exc) from exc

    @event.listens_for(engine, "handle_error")
    def _disconnect(context: ExceptionContext) -> None:
        # A pre-ping's failure is the pool's to handle (it reconnects, through _connect above).
        # SQLAlchemy also flags a cancellation (CancelledError, KeyboardInterrupt) mid-statement
        # as a disconnect, to discard the connection: that must stay a cancellation. Turned into
        # an error, it was caught as one: a cancelled package-folder rescan went on for ever, and
        # kept the server from stopping.
        if not isinstance(context.original_exception, Exception):
            return
        if context.is_disconnect and not context.is_pre_ping:
            log.error("lost the connection to the database: %s", context.original_exception)
            raise unavailable_error(context.original_exception) from context.original_exception

    if immediate:

        @event.listens_for(engine, "begin")
        def _take_turns(conn: Connection) -> None:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK})")


def build_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
