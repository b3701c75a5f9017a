"""The `packhouse serve` command itself: environment variables, schema on start, streaming uploads."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.auth.htpasswd import edit_htpasswd, hash_password
from tests.conftest import ROOT, clean_env, free_port
from tests.support.builders import make_wheel
from tests.support.forms import upload_form

pytestmark = pytest.mark.e2e


def rss_peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_every_option_is_an_environment_variable(tmp_path):
    port = free_port()
    data = tmp_path / "envdata"
    env = clean_env(
        tmp_path / "home",
        {"PACKHOUSE_HOST": "127.0.0.1", "PACKHOUSE_PORT": str(port), "PACKHOUSE_DATA_DIR": str(data),
         "PACKHOUSE_PASSWORDS": ".", "PACKHOUSE_AUTHENTICATE": "."},
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise AssertionError("server did not start")
        # The schema was created by the server itself, at the latest Alembic revision.
        with sqlite3.connect(data / "packhouse.db") as db:
            assert db.execute("SELECT version_num FROM alembic_version").fetchone()
        assert (data / "files").is_dir()
    finally:
        proc.terminate()
        proc.wait(10)


def test_upload_streams_without_growing_memory(live_server, tmp_path):
    """A 96 MB upload: the server's peak RSS grows far less than the file (it is never held whole)."""
    server = live_server()
    whl = make_wheel(tmp_path, "huge", "1.0", extra_files={"huge/blob.bin": os.urandom(96 * 1024 * 1024)})
    data, files = upload_form(whl)
    # warm up (imports, first request) before measuring
    httpx.get(server.url + "/simple/")
    before = rss_peak_kb(server.proc.pid)
    request = httpx.Request("POST", server.url + "/legacy/", data=data, files=files)
    body = request.read()

    def chunks():
        for i in range(0, len(body), 1 << 20):
            yield body[i : i + (1 << 20)]

    r = httpx.post(
        server.url + "/legacy/",
        content=chunks(),
        headers={"Content-Type": request.headers["content-type"]},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    grown_mb = (rss_peak_kb(server.proc.pid) - before) / 1024
    assert grown_mb < 40, f"server peak RSS grew by {grown_mb:.0f} MB for a 96 MB upload"
    got = httpx.get(server.url + "/files/huge/" + whl.name, timeout=60)
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(whl.read_bytes()).hexdigest()


def _sample(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_metrics_of_a_private_index_need_a_login_unless_told(live_server, tmp_path):
    """Listing needs a login, so /metrics does too; --no-metrics-auth or PACKHOUSE_METRICS_AUTH=false
    leaves it open for scrapers without credentials; --metrics-auth asks for a login on an open
    index. httpx's auth=(user, password) sends the header Prometheus's basic_auth sends."""
    passwords = tmp_path / "htpasswd"
    edit_htpasswd(passwords, "prometheus", hash_password("scrape"))
    private = ("--passwords", str(passwords), "--authenticate", "update,download,list")
    server = live_server(*private)
    anonymous = httpx.get(server.url + "/metrics")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Basic realm="packhouse"'
    assert "/metrics needs a login" in anonymous.json()["detail"]
    assert httpx.get(server.url + "/metrics", auth=("prometheus", "wrong")).status_code == 401
    r = httpx.get(server.url + "/metrics", auth=("prometheus", "scrape"))
    assert r.status_code == 200 and "packhouse_projects 0.0" in r.text
    server.stop()
    for args, env in ((["--no-metrics-auth"], None), ([], {"PACKHOUSE_METRICS_AUTH": "false"})):
        server = live_server(*private, *args, env=env)
        assert httpx.get(server.url + "/metrics").status_code == 200, (args, env)
        assert httpx.get(server.url + "/simple/").status_code == 401  # the pages stay private
        server.stop()
    server = live_server("--passwords", str(passwords), "--metrics-auth")  # -a update: pages open
    assert httpx.get(server.url + "/simple/").status_code == 200
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.get(server.url + "/metrics", auth=("prometheus", "scrape")).status_code == 200


def test_metrics_add_up_across_workers(live_server, tmp_path):
    """--workers 2: every scrape reports the requests of both workers (whichever answers it), the
    index gauges once, and the shared metrics folder is removed when the server stops."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    server = live_server("--workers", "2", env={"TMPDIR": str(scratch)})
    folders = list(scratch.glob("packhouse-metrics-*"))
    assert len(folders) == 1, folders
    for _ in range(40):  # a new connection each time: the kernel hands them to either worker
        assert httpx.get(server.url + "/simple/", headers={"Connection": "close"}).status_code == 200
    writers = {path.stem.rsplit("_", 1)[1] for path in folders[0].glob("counter_*.db")}
    assert len(writers) == 2, f"expected both workers to keep their counters in the shared folder: {writers}"
    for _ in range(6):
        text = httpx.get(server.url + "/metrics", headers={"Connection": "close"}).text
        assert _sample(text, 'packhouse_http_requests_total{method="GET",route="/simple/",status="200"}') == [
            'packhouse_http_requests_total{method="GET",route="/simple/",status="200"} 40.0'
        ]
        assert _sample(text, "packhouse_projects") == ["packhouse_projects 0.0"]
        assert _sample(text, "packhouse_files ") == ["packhouse_files 0.0"]
    server.stop()
    assert not list(scratch.glob("packhouse-metrics-*"))
