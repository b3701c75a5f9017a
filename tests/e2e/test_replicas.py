"""Two ``packhouse serve`` replicas sharing one PostgreSQL database and one S3 bucket are one index.

- an upload through replica A is listed by replica B on the very next request (no stale page:
  caches are keyed by the database's serial, not by process memory);
- concurrent uploads of one filename with different bytes through both replicas: one wins, the
  others get 409, and both replicas serve the winner's bytes;
- a replica SIGKILLed in the middle of an upload loses nothing and shows nothing half-done;
- wrong passwords count once for all replicas (the failed-login limit is not one per replica).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import subprocess
import threading
import time
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.conftest import basic, run, tool
from tests.support.builders import make_wheel
from tests.support.forms import upload_form

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)]

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture
def replicas(live_server, database_url_for, s3, tmp_path):
    """Start replicas on one database and one bucket, each with its own local data folder."""
    shared = {**s3.env, "PACKHOUSE_DATABASE_URL": database_url_for(tmp_path / "shared")}

    def start(name: str, **env: str):
        return live_server(data_dir=tmp_path / name, env={**shared, **env})

    return start


def _files(server, project: str) -> dict[str, str]:
    r = httpx.get(f"{server.url}/simple/{project}/", headers=JSON)
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, r.text
    return {f["filename"]: f["hashes"]["sha256"] for f in r.json()["files"]}


def _post(server, path: Path, content: bytes | None = None) -> httpx.Response:
    data, files = upload_form(path, content=content)
    return httpx.post(f"{server.url}/legacy/", data=data, files=files, timeout=60)


def test_upload_through_a_is_listed_by_b_on_the_next_request(replicas, client_env, tmp_path):
    a, b = replicas("a"), replicas("b")
    # B renders (and caches) its pages before the upload.
    assert httpx.get(f"{b.url}/simple/shared-pkg/", headers=JSON).status_code == 404
    before = httpx.get(f"{b.url}/simple/", headers=JSON)
    assert "shared-pkg" not in before.text

    wheel = make_wheel(tmp_path, "shared-pkg", "1.0")
    run([tool("twine"), "upload", "--non-interactive", "--repository-url", f"{a.url}/legacy/",
         "-u", "anyone", "-p", "x", str(wheel)], client_env)  # fmt: skip

    listing = httpx.get(f"{b.url}/simple/", headers=JSON)
    assert listing.status_code == 200 and "shared-pkg" in listing.text
    assert listing.headers["etag"] != before.headers["etag"]
    assert _files(b, "shared-pkg") == {wheel.name: hashlib.sha256(wheel.read_bytes()).hexdigest()}

    # A second version through A: B's cached page (revalidated with its old ETag) is replaced.
    page = httpx.get(f"{b.url}/simple/shared-pkg/", headers=JSON)
    second = make_wheel(tmp_path, "shared-pkg", "2.0")
    assert _post(a, second).status_code == 200
    again = httpx.get(f"{b.url}/simple/shared-pkg/", headers={**JSON, "If-None-Match": page.headers["etag"]})
    assert again.status_code == 200 and second.name in again.text

    # A real client installs from B what was uploaded through A.
    dest = tmp_path / "downloaded"
    run([tool("pip"), "download", "--no-deps", "--index-url", f"{b.url}/simple/", "-d", str(dest),
         "shared-pkg==2.0"], client_env)  # fmt: skip
    assert (dest / second.name).read_bytes() == second.read_bytes()


def test_concurrent_same_filename_through_two_replicas_one_wins(replicas, s3, tmp_path):
    a, b = replicas("a"), replicas("b")
    variants = []
    for i in range(8):
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        variants.append(make_wheel(folder, "contested", "1.0", module_code=f"variant = {i}\n"))
    assert len({hashlib.sha256(v.read_bytes()).hexdigest() for v in variants}) == len(variants)

    barrier = threading.Barrier(len(variants))
    results: dict[int, httpx.Response] = {}

    def upload(i: int) -> None:
        server = (a, b)[i % 2]
        barrier.wait()
        results[i] = _post(server, variants[i])

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(variants))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [200] + [409] * (len(variants) - 1), [(i, r.status_code, r.text) for i, r in results.items()]
    (winner,) = [i for i, r in results.items() if r.status_code == 200]
    assert all(r.text.lstrip().startswith("File already exists") or "already exists" in r.text
               for r in results.values() if r.status_code == 409)  # fmt: skip
    won = variants[winner].read_bytes()
    for server in (a, b):
        assert _files(server, "contested") == {variants[winner].name: hashlib.sha256(won).hexdigest()}
        r = httpx.get(f"{server.url}/files/contested/{variants[winner].name}")
        assert r.status_code == 200 and r.content == won


def _start_partial_upload(server, path: Path, fraction: float = 0.5) -> socket.socket:
    """Send the headers and part of a multipart upload, then stall (the socket stays open)."""
    data, files = upload_form(path)
    request = httpx.Request("POST", f"{server.url}/legacy/", data=data, files=files)
    body = request.read()
    head = ["POST /legacy/ HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    head += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "host"]
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[: int(len(body) * fraction)])
    return sock


def test_replica_killed_mid_upload_loses_nothing(replicas, s3, tmp_path):
    a, b = replicas("a"), replicas("b")
    kept = make_wheel(tmp_path, "survivor", "1.0")
    assert _post(a, kept).status_code == 200
    kept_sha = hashlib.sha256(kept.read_bytes()).hexdigest()
    keys_before = sorted(s3.keys())

    big = make_wheel(tmp_path, "survivor", "2.0", extra_files={"survivor/blob.bin": os.urandom(6 * 1024 * 1024)})
    sock = _start_partial_upload(a, big)
    staging = tmp_path / "a" / "staging"
    deadline = time.monotonic() + 20
    while not any(p.stat().st_size > 1024 * 1024 for p in staging.glob("upload-*.part")):
        assert time.monotonic() < deadline, "the upload never reached A's staging folder"
        time.sleep(0.05)
    a.kill()
    sock.close()

    # B: the finished upload is intact, the interrupted one is nowhere.
    assert _files(b, "survivor") == {kept.name: kept_sha}
    assert httpx.get(f"{b.url}/files/survivor/{kept.name}").content == kept.read_bytes()
    assert httpx.get(f"{b.url}/files/survivor/{big.name}").status_code == 404
    assert sorted(s3.keys()) == keys_before

    # A restarts on the same folder: the staged leftovers are swept; the upload can be redone.
    a2 = replicas("a")
    assert not list(staging.glob("upload-*.part"))
    assert _post(b, big).status_code == 200
    expected = {kept.name: kept_sha, big.name: hashlib.sha256(big.read_bytes()).hexdigest()}
    assert _files(a2, "survivor") == expected == _files(b, "survivor")
    assert httpx.get(f"{a2.url}/files/survivor/{big.name}").content == big.read_bytes()


def test_concurrent_twine_uploads_of_one_filename_through_both_replicas(replicas, client_env, tmp_path):
    """The same race with the real client: one twine succeeds, the others report the conflict."""
    a, b = replicas("a"), replicas("b")
    variants = []
    for i in range(4):
        folder = tmp_path / f"t{i}"
        folder.mkdir()
        variants.append(make_wheel(folder, "raced", "1.0", module_code=f"variant = {i}\n"))
    procs = [
        subprocess.Popen(
            [
                tool("twine"),
                "upload",
                "--non-interactive",
                "--disable-progress-bar",
                "--repository-url",
                f"{(a, b)[i % 2].url}/legacy/",
                "-u",
                "anyone",
                "-p",
                "x",
                str(path),
            ],
            env=client_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i, path in enumerate(variants)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1, 1, 1], outputs
    winner = codes.index(0)
    assert all("409" in out or "already exists" in out for i, out in enumerate(outputs) if i != winner), outputs
    want = hashlib.sha256(variants[winner].read_bytes()).hexdigest()
    assert _files(a, "raced") == {variants[winner].name: want} == _files(b, "raced")


def test_a_change_that_commits_late_is_seen_by_every_replica(replicas, database_url_for, tmp_path):
    """A delete through A waits on a row lock (a slow transaction) while an upload through B goes
    on. Once both commit, both replicas list what is there now. (Was: the journal's ids came from
    a sequence, so the delete's id was older than the upload's though it committed later; the
    project list, keyed by the newest id, stayed as cached in between, listing the deleted
    project under an ETag that kept answering 304.)"""
    a, b = replicas("a"), replicas("b")
    gone = make_wheel(tmp_path, "gone", "1.0")
    assert _post(a, gone).status_code == 200
    url = database_url_for(tmp_path / "shared").replace("postgresql+asyncpg://", "postgresql://")
    pages: dict[str, httpx.Response] = {}

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        import asyncpg

        loop = asyncio.get_running_loop()
        holder = await asyncpg.connect(url)
        try:
            async with holder.transaction():
                await holder.execute("SELECT 1 FROM projects WHERE normalized_name = 'gone' FOR UPDATE")
                remove = partial(httpx.delete, f"{a.url}/api/projects/gone/files/{gone.name}", timeout=60)
                delete = loop.run_in_executor(None, remove)
                await _lock_waiters(holder, 1)
                upload = loop.run_in_executor(None, lambda: _post(b, make_wheel(tmp_path, "new", "1.0")))
                await _lock_waiters(holder, 2, unless=upload)
                for server in (a, b):  # each replica renders and caches its list now
                    get = partial(httpx.get, f"{server.url}/simple/", headers=JSON)
                    pages[server.url] = await loop.run_in_executor(None, get)
            return await delete, await upload
        finally:
            await holder.close()

    deleted, uploaded = asyncio.run(scenario())
    assert deleted.status_code == 200 and uploaded.status_code == 200, (deleted.text, uploaded.text)
    for server in (a, b):
        held = pages[server.url]
        r = httpx.get(f"{server.url}/simple/", headers={**JSON, "If-None-Match": held.headers["etag"]})
        assert r.status_code == 200, (held.text, r.headers)
        assert [p["name"] for p in r.json()["projects"]] == ["new"]
        assert httpx.get(f"{server.url}/simple/gone/", headers=JSON).status_code == 404


async def _lock_waiters(conn, count: int, unless=None, timeout: float = 20.0) -> None:
    """Until ``count`` backends of this database wait for a lock (or ``unless`` is done)."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    while await conn.fetchval(query) < count and not (unless is not None and unless.done()):
        assert time.monotonic() < deadline, "the requests never reached the lock"
        await asyncio.sleep(0.05)


def test_wrong_passwords_count_once_for_all_replicas(replicas, tmp_path):
    """A guesser spreading guesses over the load balancer's replicas gets the limit once, not once
    per replica (and per worker): the failures are rows in the shared database."""
    passwords = tmp_path / "htpasswd"
    passwords.write_text("alice:{SHA}" + base64.b64encode(hashlib.sha1(b"alices").digest()).decode() + "\n")
    env = {"PACKHOUSE_PASSWORDS": str(passwords), "PACKHOUSE_LOGIN_FAILURES": "4"}
    a, b = replicas("a", **env), replicas("b", **env)
    for i, server in enumerate([a, b, a, b]):
        assert httpx.post(f"{server.url}/legacy/", headers=basic("alice", f"guess{i}")).status_code == 401
    for server in (a, b):
        r = httpx.post(f"{server.url}/legacy/", headers=basic("alice", "alices"))
        assert r.status_code == 429, r.text
        assert "4 wrong passwords in the last 5 minutes" in r.json()["detail"]
