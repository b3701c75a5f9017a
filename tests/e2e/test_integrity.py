"""Races, crashes, slow clients and yanking, against a real ``packhouse serve`` on 127.0.0.1."""

from __future__ import annotations

import hashlib
import select
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.storage.local import is_spare_part
from tests.conftest import run, tool
from tests.support import dbaccess
from tests.support.builders import make_wheel
from tests.support.forms import upload_form
from tests.support.integrity import db_rows, digest_fields, multipart

pytestmark = pytest.mark.e2e

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def concurrent_posts(url: str, paths: list[Path]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(paths))

    def one(path: Path) -> httpx.Response:
        data, files = upload_form(path)
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            return http.post(url + "/legacy/", data=data, files=files)

    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(one, paths))


def stored(data_dir: Path) -> dict[str, bytes]:
    files = data_dir / "files"
    return {
        p.relative_to(files).as_posix(): p.read_bytes()
        for p in files.rglob("*")
        if p.is_file() and ".tmp" not in p.parts and not is_spare_part(p.name)
    }


# "2": two worker processes race for the database's write lock (on SQLite, a new upload's rows are
# inserted on sqlite3 directly, BEGIN IMMEDIATE waiting its turn; app/db/units.py).
WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


@WORKERS
def test_twenty_concurrent_distinct_uploads_all_land(live_server, tmp_path, workers):
    server = live_server("--workers", workers)
    out = tmp_path / "dists"
    out.mkdir()
    paths = [make_wheel(out, f"pkg{i % 4}", f"1.{i}") for i in range(20)]
    responses = concurrent_posts(server.url, paths)
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses if r.status_code != 200]
    for i, path in enumerate(paths):
        r = httpx.get(f"{server.url}/files/pkg{i % 4}/{path.name}")
        assert r.status_code == 200 and r.content == path.read_bytes()
    listed = httpx.get(server.url + "/simple/", headers=JSON).json()["projects"]
    assert sorted(p["name"] for p in listed) == ["pkg0", "pkg1", "pkg2", "pkg3"]
    assert len(db_rows(server.data_dir / "packhouse.db", "files")) == 20


@WORKERS
def test_ten_concurrent_uploads_of_one_filename_exactly_one_wins(live_server, tmp_path, workers):
    server = live_server("--workers", workers)
    paths = []
    for i in range(10):
        (tmp_path / f"v{i}").mkdir()
        paths.append(make_wheel(tmp_path / f"v{i}", "race", "1.0", module_code=f"variant = {i}\n"))
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}) == 10
    responses = concurrent_posts(server.url, paths)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 9, [r.text for r in responses]
    for r in responses:
        if r.status_code == 409:
            assert r.json()["detail"].startswith("File already exists")
    winner = paths[[r.status_code for r in responses].index(200)]
    name = winner.name
    assert httpx.get(f"{server.url}/files/race/{name}").content == winner.read_bytes()
    page = httpx.get(server.url + "/simple/race/", headers=JSON).json()
    assert [f["hashes"]["sha256"] for f in page["files"]] == [hashlib.sha256(winner.read_bytes()).hexdigest()]
    # the losers' bytes were staged and even stored, but none is left behind
    blobs = stored(server.data_dir)
    (key,) = [k for k in blobs if k.endswith(name)]
    # The local store writes the PEP 658 metadata file on the first request for it, not at upload.
    assert sorted(blobs) == [key]
    assert blobs[key] == winner.read_bytes()
    assert not list((server.data_dir / "files" / ".tmp").iterdir())
    meta = httpx.get(f"{server.url}/files/race/{name}.metadata")
    assert meta.status_code == 200 and meta.content.startswith(b"Metadata-Version: ")
    assert page["files"][0]["core-metadata"] == {"sha256": hashlib.sha256(meta.content).hexdigest()}
    assert stored(server.data_dir) == {key: winner.read_bytes(), key + ".metadata": meta.content}


@WORKERS
def test_ten_concurrent_uploads_of_one_filename_under_overwrite_leave_one_file(live_server, tmp_path, workers):
    """--overwrite: each upload that finds the file replaces it, and so does one that raced
    another's first row (it is the later one): every client gets its 200. One file is left, whole,
    one of the ten, with no blob of a replaced upload behind it, and the journal has one upload
    and nine overwrites."""
    server = live_server("--workers", workers, "--overwrite")
    paths = []
    for i in range(10):
        (tmp_path / f"v{i}").mkdir()
        paths.append(make_wheel(tmp_path / f"v{i}", "race", "1.0", module_code=f"variant = {i}\n"))
    responses = concurrent_posts(server.url, paths)
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    actions = dbaccess.query("SELECT action FROM events", server.data_dir)
    assert sorted(action for (action,) in actions) == ["overwrite"] * 9 + ["upload"] * 10
    name = paths[0].name
    body = httpx.get(f"{server.url}/files/race/{name}").content
    assert body in {p.read_bytes() for p in paths}
    page = httpx.get(server.url + "/simple/race/", headers=JSON).json()
    assert [f["hashes"]["sha256"] for f in page["files"]] == [hashlib.sha256(body).hexdigest()]
    blobs = stored(server.data_dir)
    assert list(blobs.values()) == [body], sorted(blobs)
    assert not list((server.data_dir / "files" / ".tmp").iterdir())


def test_ten_concurrent_identical_uploads_all_succeed_and_one_copy_is_kept(live_server, tmp_path):
    """Identical bytes racing: every client gets 200 (twine retries must not fail), one row, and
    the losers' copies (each upload is staged under a key of its own) are all removed."""
    server = live_server()
    path = make_wheel(tmp_path, "twin", "1.0")
    responses = concurrent_posts(server.url, [path] * 10)
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert sum(r.text.startswith("Stored") for r in responses) == 1
    assert len(db_rows(server.data_dir / "packhouse.db", "files")) == 1
    blobs = stored(server.data_dir)
    (key,) = [k for k in blobs if k.endswith(path.name)]
    assert sorted(blobs) == [key] and blobs[key] == path.read_bytes()
    assert httpx.get(f"{server.url}/files/twin/{path.name}").content == path.read_bytes()


def _start_upload(url: str, body: bytes, content_type: str, declared: int) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST /legacy/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def read_response(sock: socket.socket, timeout: float = 10) -> str:
    """Status line, headers and body of one response (until Content-Length is met or EOF)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
    return data.decode("latin-1")


def test_sigkill_mid_upload_leaves_nothing_and_temp_is_swept(live_server, tmp_path):
    server = live_server()
    content = bytes(range(256)) * 8192  # 2 MiB, of which only half is sent
    fields = {":action": "file_upload", "protocol_version": "1", "name": "crash", "version": "1.0"}
    body, ctype = multipart({**fields, **digest_fields(content)}, b"crash-1.0.tar.gz", content)
    sock = _start_upload(server.url, body[: len(body) // 2], ctype, len(body))
    files = server.data_dir / "files"
    # Staged in place: "<2 hex>/<14 hex>-crash-1.0.tar.gz.upload-<pid>.part" (app/storage/local.py).
    deadline = time.monotonic() + 10
    while not list(files.glob("*/*.upload-*.part")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(files.glob("*/*-crash-1.0.tar.gz.upload-*.part")), "the upload never started staging"
    server.kill()
    sock.close()
    assert list(files.glob("*/*.upload-*.part"))  # the crash left its temporary file

    restarted = live_server(data_dir=server.data_dir)
    deadline = time.monotonic() + 10  # swept once the server is up (app/main.py)
    while (list(files.rglob("*.part")) or "removed 1 temporary file" not in restarted.log()) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert not list(files.rglob("*.part"))
    assert "removed 1 temporary file" in restarted.log()
    assert httpx.get(restarted.url + "/simple/crash/").status_code == 404
    assert "crash" not in httpx.get(restarted.url + "/simple/").text
    assert db_rows(server.data_dir / "packhouse.db", "files") == []
    assert stored(server.data_dir) == {}
    check = run([tool("packhouse"), "check", "--data-dir", str(server.data_dir)], env=restarted.env)
    assert "0 problem(s)" in check.stdout


def test_stalled_upload_times_out_with_408_and_leaves_nothing(live_server):
    server = live_server(env={"PACKHOUSE_BODY_TIMEOUT": "1"})
    content = b"x" * 100_000
    body, ctype = multipart({":action": "file_upload"}, b"slow-1.0.tar.gz", content)
    sock = _start_upload(server.url, body[:50_000], ctype, len(body))
    started = time.monotonic()
    answer = read_response(sock)
    sock.close()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "sent no data for 1 seconds" in answer
    assert time.monotonic() - started < 5
    assert not [p for p in (server.data_dir / "files").rglob("*") if p.is_file() and not is_spare_part(p.name)]


def test_oversized_stream_is_refused_before_it_is_all_sent(live_server):
    """Chunked body (no Content-Length): the 413 arrives while the client is still sending."""
    server = live_server("--max-upload-size", "1M")
    host, port = server.url.removeprefix("http://").split(":")
    body, ctype = multipart({":action": "file_upload"}, b"big-1.0.tar.gz", b"")
    head, tail = body.split(b"\r\n\r\n\r\n", 1)  # split right where the file's bytes would go
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST /legacy/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    sock.sendall(chunk(head + b"\r\n\r\n"))
    sent, total, block = 0, 256 * 1024 * 1024, b"z" * 65536
    try:
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(chunk(block))
            sent += len(block)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = read_response(sock)
    sock.close()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "--max-upload-size" in answer
    assert sent < 48 * 1024 * 1024, f"{sent} bytes were sent before the refusal"  # socket buffers at most
    del tail


@pytest.fixture
def yanked_index(live_server, tmp_path):
    """demo 1.0 and 2.0 (2.0 yanked through the management API)."""
    server = live_server()
    out = tmp_path / "dists"
    out.mkdir()
    for version in ("1.0", "2.0"):
        data, files = upload_form(make_wheel(out, "demo", version))
        assert httpx.post(server.url + "/legacy/", data=data, files=files).status_code == 200
    r = httpx.post(server.url + "/api/projects/demo/releases/2.0/yank", json={"reason": "broken"})
    assert r.status_code == 200
    return server


def test_pip_skips_a_yanked_release_unless_pinned(yanked_index, client_env, tmp_path):
    index = yanked_index.url + "/simple/"
    pip = [tool("pip"), "download", "--no-deps", "--index-url", index]
    run([*pip, "-d", str(tmp_path / "a"), "demo"], client_env)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["demo-1.0-py3-none-any.whl"]
    proc = run([*pip, "-d", str(tmp_path / "b"), "demo==2.0"], client_env)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["demo-2.0-py3-none-any.whl"]
    assert "yanked" in (proc.stdout + proc.stderr).lower() and "broken" in proc.stdout + proc.stderr


def feed(cmd: list[str], env: dict[str, str], cwd: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)


def test_uv_skips_a_yanked_release_unless_pinned(yanked_index, client_env, tmp_path):
    index = yanked_index.url + "/simple/"
    uv = [tool("uv"), "pip", "compile", "-", "--no-header", "--index-url", index, "--python-version", "3.11"]
    loose = feed([*uv, "--no-annotate"], client_env, tmp_path, "demo\n")
    assert loose.returncode == 0, loose.stderr
    assert "demo==1.0" in loose.stdout
    pinned = feed(uv, client_env, tmp_path, "demo==2.0\n")
    assert pinned.returncode == 0, pinned.stderr
    assert "demo==2.0" in pinned.stdout


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


def test_oversized_request_head_is_431_and_the_server_lives_on(live_server):
    server = live_server("--max-upload-size", "1G", env={"PACKHOUSE_MAX_HEADER_SIZE": "16K"})
    assert httpx.get(server.url + "/health", headers={"X-Ok": "a" * 8000}).status_code == 200
    whole = httpx.get(server.url + "/health", headers={"X-Big": "a" * 20000})  # one write, one read
    assert whole.status_code == 431 and "--max-header-size" in whole.json()["detail"]
    sock = _raw(server.url)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    sent = 0
    try:
        for _ in range(4096):  # up to 256 MiB of header: refused long before
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(b"X-Pad: " + b"a" * 65000 + b"\r\n")
            sent += 65009
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = read_response(sock)
    sock.close()
    assert answer.startswith("HTTP/1.1 431 The request line and headers exceed"), answer  # app/http_reason.py
    assert "--max-header-size" in answer
    assert sent < 48 * 1024 * 1024  # what the kernel's socket buffers took, at most
    assert httpx.get(server.url + "/health").status_code == 200


def test_slow_request_head_times_out_with_408(live_server):
    server = live_server("--header-timeout", "1")
    sock = _raw(server.url)
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    try:
        for _ in range(30):  # slowloris: a byte now and then, never the end of the head
            sock.sendall(b"X")
            if select.select([sock], [], [], 0.2)[0]:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = read_response(sock)
    sock.close()
    assert answer.startswith("HTTP/1.1 408 The request head was not received within 1 seconds"), answer
    assert "--header-timeout" in answer
    assert time.monotonic() - started < 4
    idle = _raw(server.url)  # connected and silent: hung up without a word
    idle.settimeout(5)
    assert idle.recv(10) == b""
    idle.close()
    assert httpx.get(server.url + "/health").status_code == 200


def twine_upload(server_url: str, env: dict[str, str], *paths: Path, extra: tuple[str, ...] = ()):
    cmd = [tool("twine"), "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
           server_url + "/legacy/", "-u", "ci", "-p", "ci", *extra, *map(str, paths)]  # fmt: skip
    return run(cmd, env, check=False)


def test_twine_other_bytes_refused_and_overwrite_replaces(live_server, client_env, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    original = make_wheel(first, "demo", "1.0")
    changed = make_wheel(second, "demo", "1.0", module_code="changed = True\n")
    server = live_server()
    assert twine_upload(server.url, client_env, original).returncode == 0
    refused = twine_upload(server.url, client_env, changed, extra=("--verbose",))
    assert refused.returncode != 0 and "File already exists" in refused.stdout + refused.stderr
    # (twine 7 refuses --skip-existing for any repository but PyPI's, so it is not exercised here)
    assert httpx.get(f"{server.url}/files/demo/{original.name}").content == original.read_bytes()
    server.stop()

    overwriting = live_server("--overwrite", data_dir=server.data_dir)
    assert twine_upload(overwriting.url, client_env, changed).returncode == 0
    assert httpx.get(f"{overwriting.url}/files/demo/{changed.name}").content == changed.read_bytes()
    actions = [e["action"] for e in httpx.get(f"{overwriting.url}/api/projects/demo/events").json()]
    assert actions == ["upload", "overwrite", "upload"]
