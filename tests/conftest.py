"""Shared fixtures: per-test settings on tmp_path, an in-process app, and a real uvicorn server.

Databases: every test that uses ``make_settings``, ``make_client``, ``client`` or ``live_server``
(anything that depends on the ``db_backend`` fixture) runs twice, once on SQLite and once on
PostgreSQL: a session-wide throwaway cluster (tests/support/postgres.py) hands each test a fresh
database per data folder, exactly as SQLite gets a fresh file per data folder.
``PACKHOUSE_TEST_DATABASES=sqlite`` (or ``postgresql``) narrows the run; ``@pytest.mark.sqlite_only``
opts a test out (say why). S3: the ``s3`` fixture gives a fresh bucket on a moto server.

Client isolation: pip and uv are pointed only at the server under test. The machine's own pip
configuration (extra indexes, find-links, constraints) is switched off with PIP_CONFIG_FILE and
UV_NO_CONFIG, so no test can install from anywhere else.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.support import dbaccess
from tests.support.ports import free_port
from tests.support.postgres import PostgresCluster
from tests.support.runserver import ServerProcess
from tests.support.s3 import CREDENTIALS, MotoServer, S3Target

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a client installed in the test virtualenv (pip, uv, twine, flit, hatch)."""
    path = VENV_BIN / name
    assert path.exists(), f"{name} is not installed in the test virtualenv ({VENV_BIN})"
    return str(path)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


DB_BACKENDS = ("sqlite", "postgresql")


def _test_backends() -> list[str]:
    wanted = os.environ.get("PACKHOUSE_TEST_DATABASES", ",".join(DB_BACKENDS))
    backends = [b.strip() for b in wanted.split(",") if b.strip()]
    unknown = set(backends) - set(DB_BACKENDS)
    assert not unknown, f"PACKHOUSE_TEST_DATABASES: unknown {sorted(unknown)}; use {DB_BACKENDS}"
    return backends


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: run this database test on SQLite only (say why)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that reaches a database (through ``db_backend``) runs on each backend."""
    if "db_backend" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if "db_backend" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return  # the test chose its backends itself
    backends = _test_backends()
    if metafunc.definition.get_closest_marker("sqlite_only"):
        backends = ["sqlite"]
    metafunc.parametrize("db_backend", backends, indirect=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Started on first use, stopped (and its folder removed) at the end of the session."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url_for(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch):
    """``database_url_for(data_dir)``: None on SQLite (the default file in data_dir), else a fresh
    PostgreSQL database per data folder for this test. On PostgreSQL, PACKHOUSE_DATABASE_URL is also
    set for the test's process, so anything building ``Settings()`` from the environment follows."""
    if db_backend == "sqlite":
        dbaccess.register(None)
        yield lambda data_dir=None: None
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    databases: dict[Path, str] = {}

    def url_for(data_dir: Path | str | None = None) -> str:
        key = Path(data_dir or tmp_path / "data").resolve()
        if key not in databases:
            databases[key] = cluster.create_database()
        return cluster.url(databases[key])

    monkeypatch.setenv("PACKHOUSE_DATABASE_URL", url_for())
    dbaccess.register(url_for)
    yield url_for
    dbaccess.register(None)
    for name in databases.values():
        cluster.drop_database(name)


@pytest.fixture
def make_settings(tmp_path: Path, database_url_for):
    def factory(**overrides: object) -> Settings:
        values: dict[str, object] = {"data_dir": tmp_path / "data"}
        values.update(overrides)
        if "database_url" not in overrides and (url := database_url_for(values["data_dir"])):
            values["database_url"] = url
        return Settings(**values)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def db_query(tmp_path: Path, database_url_for):
    """``db_query("SELECT ...", data_dir=None) -> list[tuple]`` on whichever database the test
    variant uses (SQLite file in data_dir, or its PostgreSQL database): for tests that check rows."""

    def query(sql: str, data_dir: Path | None = None) -> list[tuple[object, ...]]:
        return dbaccess.query(sql, data_dir or tmp_path / "data")  # database_url_for registered the variant

    return query


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server: MotoServer, monkeypatch) -> S3Target:
    """A fresh bucket; the AWS credentials are set for this process (live servers: ``s3.env``)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return S3Target(moto_server, moto_server.create_bucket())


@pytest.fixture
def make_client(make_settings):
    """An in-process app (lifespan entered) over a real database (SQLite file, or PostgreSQL in the
    postgresql variant) and local storage (S3 with ``storage=s3.storage_url``)."""
    clients: list[TestClient] = []

    def factory(**overrides: object) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides)), base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def clean_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for client subprocesses: no PIP_/UV_/proxy settings from outside."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "PACKHOUSE_", "TWINE_", "FLIT_", "HATCH_", "POETRY_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_CACHE_DIR="1",
        PIP_NO_INPUT="1",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(home / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        XDG_CONFIG_HOME=str(home / ".config"),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    env.update(extra or {})
    return env


@dataclass
class LiveServer(ServerProcess):
    """A real ``packhouse serve`` process on 127.0.0.1 and an ephemeral port."""

    data_dir: Path
    args: list[str]
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: object = field(default=None, repr=False)
    ca: str | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), *self.args,
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> LiveServer:
        self.port = free_port()
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        return super().start(timeout)  # type: ignore[no-any-return]


@pytest.fixture
def live_server(tmp_path: Path, database_url_for) -> Iterator[object]:
    """Factory: ``live_server("--passwords", p, ...)`` starts a server; all are stopped at teardown.
    ``ca``: the CA of the server's certificate, when the arguments make it serve HTTPS."""
    servers: list[LiveServer] = []

    def factory(
        *args: str, data_dir: Path | None = None, env: dict[str, str] | None = None, ca: str | None = None
    ) -> LiveServer:
        env = dict(env or {})
        if "--database-url" not in args and "PACKHOUSE_DATABASE_URL" not in env:
            if url := database_url_for(data_dir or tmp_path / "data"):
                env["PACKHOUSE_DATABASE_URL"] = url
        server_env = clean_env(tmp_path / "server-home", env)
        server = LiveServer(data_dir or tmp_path / "data", list(args), server_env, ca=ca)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def client_env(tmp_path: Path, database_url_for) -> dict[str, str]:
    env = clean_env(tmp_path / "home")
    # `packhouse` subcommands run with this environment act on the test's database (PostgreSQL
    # variant); pip, uv and the upload clients ignore the variable.
    if url := database_url_for():
        env["PACKHOUSE_DATABASE_URL"] = url
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None, check: bool = True, timeout: float = 180):
    """Run a client command; on failure show its output in the assertion message."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc
