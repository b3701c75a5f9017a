"""A throwaway PostgreSQL cluster for the test session, from Debian's packages.

Started once per session on 127.0.0.1 and a free port (trust auth, fsync off: tests only), with
its socket and data in a private temporary folder. A template database is migrated to head once;
every test gets a fresh copy of it (``CREATE DATABASE ... TEMPLATE``), taken from a small pool
that a background thread keeps filled, so a test rarely waits; databases are dropped in the
background at teardown. (Migrations on an empty PostgreSQL database are tested explicitly:
``create_database(blank=True)``.) As root, the server runs as the ``postgres`` user (initdb
refuses root).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tests.support.ports import free_port

TEMPLATE = "packhouse_template"
POOL = 3


class PostgresUnavailableError(RuntimeError):
    pass


def find_pgbin() -> Path:
    """The newest installed server's bin folder (``postgresql`` package), or PACKHOUSE_TEST_PGBIN."""
    if given := os.environ.get("PACKHOUSE_TEST_PGBIN"):
        return Path(given)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    candidates = [p for p in candidates if (p / "initdb").exists()]
    if not candidates:
        raise PostgresUnavailableError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: install them with "
            "'apt-get install -y postgresql' (.ci/run does), or run only the SQLite variants with "
            "PACKHOUSE_TEST_DATABASES=sqlite"
        )
    return candidates[-1]


class PostgresCluster:
    def __init__(self) -> None:
        self.pgbin = find_pgbin()
        self.dir = Path(tempfile.mkdtemp(prefix="packhouse-pg-"))
        self.port = 0
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._names = itertools.count(1)
        self._drops: list[subprocess.Popen[bytes]] = []
        self._ready: queue.Queue[str] = queue.Queue(maxsize=POOL)
        self._stopping = threading.Event()
        self._filler: threading.Thread | None = None

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def start(self) -> PostgresCluster:
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(self._as + [str(self.pgbin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync"])  # fmt: skip
        for _attempt in range(3):  # another process may grab the free port before we bind it
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
                "-c full_page_writes=off -c synchronous_commit=off -c max_connections=300"
            )
            proc = subprocess.run(
                self._as + [str(self.pgbin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30",
                            "-l", str(self.dir / "server.log"), "start", "-o", options],
                capture_output=True, text=True,
            )  # fmt: skip
            if proc.returncode == 0:
                self._make_template()
                return self
        raise PostgresUnavailableError(f"pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n{self.log()}")

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _make_template(self) -> None:
        from app.db.engine import build_engine
        from app.db.migrate import upgrade_to_head

        self.psql(f"CREATE DATABASE {TEMPLATE}")

        async def migrate() -> None:
            engine = build_engine(self.url(TEMPLATE))
            try:
                await upgrade_to_head(engine)
            finally:
                await engine.dispose()

        asyncio.run(migrate())
        self._filler = threading.Thread(target=self._fill, name="postgres-db-pool", daemon=True)
        self._filler.start()

    def _fill(self) -> None:
        while not self._stopping.is_set():
            name = self._new_name()
            try:
                self._copy_template(name)
            except Exception:  # noqa: BLE001 - the filler must outlive any one failure
                if self._stopping.is_set():
                    return
                # e.g. the template still has a backend finishing, or psql could not be started on
                # a loaded machine. The thread must not die: an exception escaping it fails
                # whichever test runs then (pytest reports unhandled thread exceptions), and every
                # later test would wait 10 s before create_database() makes its own database.
                time.sleep(0.5)
                continue
            while not self._stopping.is_set():
                try:
                    self._ready.put(name, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def _new_name(self) -> str:
        return f"t{os.getpid()}_{next(self._names)}"

    def stop(self) -> None:
        self._stopping.set()
        if self._filler is not None:
            self._filler.join(10)
        for proc in self._drops:
            proc.wait()
        if self.port:
            subprocess.run(
                self._as + [str(self.pgbin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
            )
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str, driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        proc = subprocess.run(
            [str(self.pgbin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {proc.stderr}")
        return proc.stdout

    def create_database(self, *, blank: bool = False) -> str:
        """A fresh database at the schema's head (``blank``: empty, no tables at all)."""
        if blank:
            name = self._new_name()
            self.psql(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
            return name
        try:
            return self._ready.get(timeout=10)
        except queue.Empty:
            name = self._new_name()
            self._copy_template(name)  # raises with psql's message if the cluster is unusable
            return name

    def _copy_template(self, name: str) -> None:
        self.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")

    def drop_database(self, name: str) -> None:
        """Drop in the background (nothing waits for it until the session ends)."""
        self._drops = [p for p in self._drops if p.poll() is None]
        self._drops.append(
            subprocess.Popen(
                [str(self.pgbin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                 "-d", "postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PostgresUnavailableError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
