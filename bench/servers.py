"""Load a corpus into each server, and start/stop the servers on loopback (free ports)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from corpus import Dist

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
PEER_VENV = WORK / "venv"
PEER_PACKAGES = ["pypiserver==2.4.2", "gunicorn==23.0.0", "devpi-server==6.20.3"]
DEVPI_PASSWORD = "bench"  # root's password on the throwaway devpi server (loopback only)
UPLOAD_TIME = "2024-01-01 00:00:00.000000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_peer_venv() -> Path:
    """pypiserver, gunicorn and devpi-server in their own venv (bench/.work/venv), never in Packhouse's."""
    stamp = PEER_VENV / ".bench-installed"
    if stamp.exists() and stamp.read_text() == " ".join(PEER_PACKAGES):
        return PEER_VENV / "bin"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    subprocess.run([PEER_VENV / "bin" / "pip", "install", "-q", *PEER_PACKAGES], check=True)
    stamp.write_text(" ".join(PEER_PACKAGES))
    return PEER_VENV / "bin"


# --- loading -------------------------------------------------------------------------------------


def load_pypiserver(dists: list[Dist], corpus: Path, root: Path) -> None:
    """pypiserver's store is a flat folder of files: hard-link them in."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for d in dists:
        os.link(corpus / d.filename, root / d.filename)


def load_packhouse(dists: list[Dist], corpus: Path, data_dir: Path) -> None:
    """Bulk import: the same rows and stored objects an upload produces, written directly
    (uploading 30,000 files one by one would take most of the benchmark's time)."""
    if data_dir.exists():
        shutil.rmtree(data_dir)
    files_dir = data_dir / "files"
    files_dir.mkdir(parents=True)
    db = data_dir / "packhouse.db"
    from app.db.engine import build_engine
    from app.db.migrate import upgrade_to_head

    async def migrate() -> None:
        engine = build_engine(f"sqlite+aiosqlite:///{db}", immediate=True)
        await upgrade_to_head(engine)
        await engine.dispose()

    asyncio.run(migrate())
    conn = sqlite3.connect(db)
    projects: dict[str, int] = {}
    file_rows, event_rows, serials = [], [], {}
    for d in dists:
        pid = projects.setdefault(d.normalized, len(projects) + 1)
        key = f"{d.sha256[:2]}/{d.sha256[2:4]}/{d.sha256[4:]}/{d.filename}"
        target = files_dir / key
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(corpus / d.filename, target)
        if d.metadata_sha256:
            (files_dir / (key + ".metadata")).write_bytes(d.metadata.encode())
        file_rows.append(
            (
                pid,
                d.version,
                d.filename,
                d.filetype,
                d.pyversion,
                d.size,
                d.sha256,
                d.md5,
                d.blake2_256,
                key,
                "2.1",
                d.summary,
                d.requires_python,
                json.dumps(d.requires_dist),
                "",
                "text/markdown",
                d.metadata_sha256,
                UPLOAD_TIME,
            )
        )
        event_rows.append((UPLOAD_TIME, "upload", d.normalized, d.version, d.filename, d.sha256))
        serials[pid] = len(event_rows)
    names = {d.normalized: d.project for d in dists}
    with conn:
        conn.executemany(
            "INSERT INTO projects (id, name, normalized_name, created, serial) VALUES (?, ?, ?, ?, ?)",
            [(pid, names[n], n, UPLOAD_TIME, serials[pid]) for n, pid in projects.items()],
        )
        conn.executemany(
            "INSERT INTO files (project_id, version, filename, filetype, pyversion, size, sha256, md5, "
            "blake2_256, storage_key, metadata_version, summary, requires_python, requires_dist, "
            "description, description_content_type, metadata_sha256, upload_time, yanked) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            file_rows,
        )
        conn.executemany(
            "INSERT INTO events (time, action, project, version, filename, sha256) VALUES (?, ?, ?, ?, ?, ?)",
            event_rows,
        )
    conn.close()


# --- running -------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    probe: str  # path that answers 200 once ready
    env: dict[str, str] = field(default_factory=dict)
    simple: str = "/simple/"  # the simple index's root
    upload_path: str = "/"  # the legacy upload API
    authorization: str | None = None  # Authorization header for uploads (devpi requires a login)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready_after: float = 0.0
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Server:
        # Write out what earlier phases left dirty (and, on a filesystem mounted with `discard`,
        # trim what they deleted) now, not at this server's first fsync: loading a corpus deletes
        # the previous data folder, hundreds of MB after the upload rows.
        os.sync()
        self.log = WORK / f"{self.name}.log"
        env = {**os.environ, **self.env}
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = self.started_at + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.log}")
            try:
                with urllib.request.urlopen(self.url + self.probe, timeout=30) as resp:
                    if resp.status == 200:
                        self.ready_after = time.perf_counter() - self.started_at
                        return self
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"{self.name} did not become ready: see {self.log}")

    def pids(self) -> list[int]:
        """The server process and its children (uvicorn/gunicorn workers)."""
        assert self.proc is not None
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [self.proc.pid, *(int(p) for p in out.stdout.split())]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (a start-up figure that a busy machine does not
    inflate the way it inflates wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def packhouse(data_dir: Path, workers: int, probe: str, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "packhouse"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--authenticate",
        ".",
    ]
    return Server(f"packhouse-w{workers}", argv, port, probe, env=extra_env or {})


def packhouse_folder(folder: Path, workers: int, probe: str) -> Server:
    """``packhouse run FOLDER``: pypiserver's command line, the folder served (and indexed) in place."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "packhouse"),
        "run",
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-P",
        ".",
        "-a",
        ".",
        "--workers",
        str(workers),
        "--no-access-log",
        str(folder),
    ]
    return Server(f"packhouse-w{workers}", argv, port, probe)


def upload_floor() -> Server:
    """bench/floor_app.py under the uvicorn Packhouse runs on (uvloop, httptools, 1 worker)."""
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "uvicorn"),
        "floor_app:app",
        "--app-dir",
        str(Path(__file__).parent),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
    ]
    return Server("upload-floor", argv, port, "/")


def pypiserver_default(bin_dir: Path, root: Path, probe: str) -> Server:
    port = free_port()
    argv = [
        str(bin_dir / "pypi-server"),
        "run",
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-a",
        ".",
        "-P",
        ".",
        "--disable-fallback",
        "--log-stream",
        "none",
        str(root),
    ]
    return Server("pypiserver", argv, port, probe)


def pypiserver_gunicorn(bin_dir: Path, root: Path, probe: str, workers: int = 2) -> Server:
    port = free_port()
    factory = f'pypiserver:app(roots=["{root}"], authenticate=[], password_file=".", disable_fallback=True)'
    argv = [
        str(bin_dir / "gunicorn"),
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        factory,
    ]
    return Server(f"pypiserver-gunicorn-w{workers}", argv, port, probe)


NGINX_CONF = """
daemon off;
master_process on;
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
user root;
events {{ worker_connections 256; }}
http {{
    access_log off;
    types {{ text/html html; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {work}/nginx-tmp;
    proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp;
    uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}; }}
    }}
}}
"""


def nginx(root: Path, probe: str, name: str = "nginx") -> Server | None:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        return None
    port = free_port()
    work = WORK / name.replace(" ", "-")
    (work / "nginx-tmp").mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, port=port, root=root))
    return Server(name, [binary, "-c", str(conf), "-p", str(work)], port, probe)


def devpi(bin_dir: Path, serverdir: Path) -> Server:
    """devpi-server on an initialised ``serverdir`` (``devpi_init``), offline (no PyPI mirror), its
    default 50 threads. The index is ``root/dev``, with no bases, created by ``devpi_create_index``."""
    port = free_port()
    argv = [str(bin_dir / "devpi-server"), "--serverdir", str(serverdir), "--host", "127.0.0.1",
            "--port", str(port), "--offline-mode"]  # fmt: skip
    token = base64.b64encode(f"root:{DEVPI_PASSWORD}".encode()).decode()
    return Server("devpi", argv, port, "/+api", simple="/root/dev/+simple/", upload_path="/root/dev/",
                  authorization=f"Basic {token}")  # fmt: skip


def devpi_init(bin_dir: Path, serverdir: Path) -> None:
    if serverdir.exists():
        shutil.rmtree(serverdir)
    subprocess.run(
        [bin_dir / "devpi-init", "--serverdir", serverdir, "--root-passwd", DEVPI_PASSWORD, "--no-root-pypi"],
        check=True,
        capture_output=True,
    )


def devpi_create_index(srv: Server) -> None:
    """Log in as root and create ``root/dev``, a plain index with no bases (nothing mirrored)."""

    def call(method: str, path: str, body: object, headers: dict[str, str]) -> dict:
        req = urllib.request.Request(
            srv.url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)

    login = call("POST", "/+login", {"user": "root", "password": DEVPI_PASSWORD}, {})
    auth = base64.b64encode(f"root:{login['result']['password']}".encode()).decode()
    call("PUT", "/root/dev", {"bases": [], "volatile": True}, {"X-Devpi-Auth": auth})
