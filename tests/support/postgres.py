"""A throwaway PostgreSQL cluster for the test session, from Debian's packages.

Started once per session on 127.0.0.1 and a free port (trust auth, fsync off: tests only), with
its socket and data in a private temporary folder; every test gets a fresh database made with
``CREATE DATABASE ... STRATEGY FILE_COPY`` (~80 ms) and dropped at teardown. As root, the server
runs as the ``postgres`` user (initdb refuses root).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    def __init__(self) -> None:
        self.pgbin = find_pgbin()
        self.dir = Path(tempfile.mkdtemp(prefix="packhouse-pg-"))
        self.port = 0
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._names = itertools.count(1)
        self._drops: list[subprocess.Popen[bytes]] = []

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def start(self) -> PostgresCluster:
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(self._as + [str(self.pgbin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync"])  # fmt: skip
        for _attempt in range(3):  # another process may grab the free port before we bind it
            self.port = _free_port()
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
                return self
        raise PostgresUnavailableError(f"pg_ctl start failed:\n{proc.stdout}{proc.stderr}\n{self.log()}")

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
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

    def create_database(self) -> str:
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return name

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
