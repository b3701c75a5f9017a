"""Managing what is published: yank / un-yank / delete (API, CLI, remove_pkg), --overwrite, the
deleted-filename rule, the audit journal, and ``packhouse check``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from functools import partial
from pathlib import Path
from urllib.parse import urljoin

import bcrypt
import pytest
from sqlalchemy.exc import IntegrityError

from app.services.upload import RACED_OVERWRITE_TRIES
from tests.conftest import basic
from tests.support.builders import make_sdist, make_wheel
from tests.support.cli import packhouse
from tests.support.forms import post_upload as post
from tests.support.integrity import db_rows, fingerprint
from tests.support.readonly import immutable

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
W1, W2, S2 = "demo-1.0-py3-none-any.whl", "demo-2.0-py3-none-any.whl", "demo-2.0.tar.gz"


@pytest.fixture
def dists(tmp_path: Path) -> Path:
    out = tmp_path / "dists"
    out.mkdir()
    make_wheel(out, "demo", "1.0")
    make_wheel(out, "demo", "2.0")
    make_sdist(out, "demo", "2.0")
    return out


@pytest.fixture
def loaded(client, dists):
    for name in (W1, W2, S2):
        assert post(client, dists / name).status_code == 200
    return client


def page(client) -> dict:
    return client.get("/simple/demo/", headers=JSON).json()


def yanked(client) -> dict[str, object]:
    return {f["filename"]: f.get("yanked", False) for f in page(client)["files"]}


def test_yank_and_unyank_a_release_with_reason_shows_on_both_simple_pages(loaded):
    r = loaded.post("/api/projects/Demo/releases/2.0/yank", json={"reason": "broken <b>build</b> & more"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["action"] == "yank" and {f["filename"] for f in body["files"]} == {W2, S2}
    assert yanked(loaded) == {W1: False, W2: "broken <b>build</b> & more", S2: "broken <b>build</b> & more"}
    html = loaded.get("/simple/demo/").text
    assert 'data-yanked="broken &lt;b&gt;build&lt;/b&gt; &amp; more"' in html
    assert loaded.post("/api/projects/demo/releases/2.0/unyank").status_code == 200
    assert yanked(loaded) == {W1: False, W2: False, S2: False}


def test_yank_one_file_without_reason(loaded):
    r = loaded.post(f"/api/projects/demo/files/{W2}/yank")
    assert r.status_code == 200
    assert yanked(loaded) == {W1: False, W2: True, S2: False}
    assert 'data-yanked=""' in loaded.get("/simple/demo/").text
    assert loaded.post(f"/api/projects/demo/files/{W2}/unyank").json()["files"][0]["yanked"] is False


def test_yanked_file_is_still_downloadable(loaded):
    loaded.post("/api/projects/demo/releases/1.0/yank")
    assert loaded.get(f"/files/demo/{W1}").status_code == 200


def test_delete_a_file_removes_row_bytes_and_listing(loaded, tmp_path):
    r = loaded.delete(f"/api/projects/demo/files/{W2}")
    assert r.status_code == 200 and r.json()["files"][0]["filename"] == W2
    assert {f["filename"] for f in page(loaded)["files"]} == {W1, S2}
    assert loaded.get(f"/files/demo/{W2}").status_code == 404
    stored = [p.name for p in (tmp_path / "data" / "files").rglob("*") if p.is_file()]
    assert W2 not in stored and W2 + ".metadata" not in stored


class _DeleteLandsFirst:
    """The server's own store, except that its first write waits for ``delete`` to finish: a
    reader that read the row and the wheel just before a delete committed and removed them."""

    def __init__(self, store, delete) -> None:
        self._store, self._delete, self.writes = store, delete, []

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    async def put_bytes(self, key: str, data: bytes) -> None:
        if not self.writes:
            await self._delete()
        self.writes.append(key)
        await self._store.put_bytes(key, data)


def test_a_metadata_file_written_as_its_wheel_is_deleted_does_not_outlive_it(loaded, tmp_path):
    """The local store writes a wheel's PEP 658 metadata file on the first request for it. A
    delete that lands between that request's read of the wheel and its write must not leave the
    metadata file behind: the write is undone once the row turns out to be gone."""
    from app.services.files import FileService

    state = loaded.app.state
    files = tmp_path / "data" / "files"
    assert not list(files.rglob("*.metadata"))  # not written yet

    async def delete() -> None:
        await state.manage.delete("demo", filename=W2, actor="ops")

    store = _DeleteLandsFirst(state.files.storage, delete)
    reader = FileService(state.files.sessions, store)
    served = loaded.portal.call(reader.find, "demo", W2 + ".metadata")
    assert served.data is not None and served.data.startswith(b"Metadata-Version")  # read before the delete
    assert len(store.writes) == 1 and store.writes[0].endswith(W2 + ".metadata")  # written after it
    assert not [p.name for p in files.rglob(f"*{W2}*")]  # neither the wheel nor its metadata is left
    assert {f["filename"] for f in page(loaded)["files"]} == {W1, S2}
    # A file that is still there keeps the metadata file written for it.
    assert loaded.portal.call(reader.find, "demo", W1 + ".metadata").data is not None
    (kept,) = files.rglob("*.metadata")
    assert kept.name.endswith(W1 + ".metadata")


def test_delete_a_release_then_the_project_disappears_from_the_index(loaded):
    assert loaded.delete("/api/projects/demo/releases/2.0").status_code == 200
    assert loaded.delete("/api/projects/demo/releases/1.0").status_code == 200
    assert loaded.get("/simple/demo/").status_code == 404
    assert "demo" not in loaded.get("/simple/", headers=JSON).text


def test_deleted_filename_cannot_come_back_with_other_bytes(loaded, dists, tmp_path):
    loaded.delete(f"/api/projects/demo/files/{W2}")
    (dists / "new").mkdir()
    other = make_wheel(dists / "new", "demo", "2.0", module_code="changed = True\n")
    before = fingerprint(tmp_path)
    r = post(loaded, other)
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert detail.startswith("File already exists") and "deleted" in detail
    assert hashlib.sha256((dists / W2).read_bytes()).hexdigest() in detail  # the journal kept it
    assert fingerprint(tmp_path) == before


def test_deleted_filename_can_come_back_with_identical_bytes(loaded, dists):
    """Documented choice: restoring exactly the deleted bytes cannot mislead anyone (same sha256)."""
    loaded.delete(f"/api/projects/demo/files/{W2}")
    r = post(loaded, dists / W2)
    assert r.status_code == 200 and r.text.startswith("Stored")
    assert loaded.get(f"/files/demo/{W2}").content == (dists / W2).read_bytes()


def test_overwrite_replaces_bytes_and_journals_the_old_sha256(make_client, dists, tmp_path):
    client = make_client(overwrite=True)
    assert post(client, dists / W1).status_code == 200
    old = (dists / W1).read_bytes()
    (dists / "new").mkdir()
    new = make_wheel(dists / "new", "demo", "1.0", module_code="changed = True\n")
    r = post(client, new)
    assert r.status_code == 200
    assert client.get(f"/files/demo/{W1}").content == new.read_bytes()
    assert page(client)["files"][0]["hashes"]["sha256"] == hashlib.sha256(new.read_bytes()).hexdigest()
    events = client.get("/api/projects/demo/events").json()
    assert [e["action"] for e in events] == ["upload", "overwrite", "upload"]
    assert events[1]["sha256"] == hashlib.sha256(old).hexdigest()
    stored = [p for p in (tmp_path / "data" / "files").rglob(f"*{W1}")]
    assert [p.read_bytes() for p in stored] == [new.read_bytes()]  # the old blob is gone


def test_overwrite_also_allows_reusing_a_deleted_filename(make_client, dists):
    client = make_client(overwrite=True)
    assert post(client, dists / W1).status_code == 200
    client.delete(f"/api/projects/demo/files/{W1}")
    (dists / "new").mkdir()
    assert post(client, make_wheel(dists / "new", "demo", "1.0", module_code="y = 1\n")).status_code == 200


def test_without_overwrite_other_bytes_never_replace(loaded, dists):
    (dists / "new").mkdir()
    r = post(loaded, make_wheel(dists / "new", "demo", "1.0", module_code="y = 1\n"))
    assert r.status_code == 409
    assert loaded.get(f"/files/demo/{W1}").content == (dists / W1).read_bytes()


def test_pypiserver_remove_pkg_multipart_and_urlencoded(loaded):
    r = loaded.post("/", files={":action": (None, "remove_pkg"), "name": (None, "Demo"), "version": (None, "2.0")})
    assert r.status_code == 200, r.text
    assert set(r.text.split()) == {"Deleted:", W2, S2}
    assert {f["filename"] for f in page(loaded)["files"]} == {W1}
    r = loaded.post("/", data={":action": "remove_pkg", "name": "demo", "version": "1.0"})
    assert r.status_code == 200 and W1 in r.text
    r = loaded.post("/", data={":action": "remove_pkg", "name": "demo", "version": "1.0"})
    assert r.status_code == 404 and "no release '1.0'" in r.json()["detail"]
    r = loaded.post("/", data={":action": "remove_pkg", "name": "demo"})
    assert r.status_code == 400 and "version" in r.json()["detail"]


def test_audit_journal_records_who_and_when(make_client, dists, tmp_path):
    pw = tmp_path / "htpasswd"
    pw.write_text(f"alice:{bcrypt.hashpw(b'secret', bcrypt.gensalt(4)).decode()}\n")
    client = make_client(passwords=str(pw))
    alice = basic("alice", "secret")
    assert post(client, dists / W1, headers=alice).status_code == 200
    assert client.post("/api/projects/demo/releases/1.0/yank", json={"reason": "r"}, headers=alice).status_code == 200
    assert client.delete(f"/api/projects/demo/files/{W1}", headers=alice).status_code == 200
    events = client.get("/api/projects/demo/events", headers=alice).json()
    assert [(e["action"], e["actor"], e["filename"]) for e in events] == [
        ("delete", "alice", W1),
        ("yank", "alice", W1),
        ("upload", "alice", W1),
    ]
    assert events[1]["detail"] == "r" and all(e["time"].endswith("Z") for e in events)
    # A name the journal never saw is a 404, as its project would be (not an empty journal).
    r = client.get("/api/projects/never-uploaded/events", headers=alice)
    assert r.status_code == 404 and "No project named 'never-uploaded'" in r.json()["detail"], r.text


def test_management_needs_the_update_permission(make_client, dists, tmp_path):
    pw = tmp_path / "htpasswd"
    pw.write_text(f"alice:{bcrypt.hashpw(b'secret', bcrypt.gensalt(4)).decode()}\n")
    client = make_client(passwords=str(pw))
    assert post(client, dists / W1, headers=basic("alice", "secret")).status_code == 200
    before = fingerprint(tmp_path)
    for method, url in (
        ("POST", "/api/projects/demo/releases/1.0/yank"),
        ("POST", f"/api/projects/demo/files/{W1}/unyank"),
        ("DELETE", "/api/projects/demo/releases/1.0"),
        ("DELETE", f"/api/projects/demo/files/{W1}"),
        ("GET", "/api/projects/demo/events"),
    ):
        for headers in ({}, basic("alice", "wrong"), basic("mallory", "secret")):
            r = client.request(method, url, headers=headers)
            assert r.status_code == 401, (method, url, r.text)
            assert r.headers["www-authenticate"] == 'Basic realm="packhouse"'
    r = client.post("/", data={":action": "remove_pkg", "name": "demo", "version": "1.0"})
    assert r.status_code == 401
    assert fingerprint(tmp_path) == before


def test_management_anonymous_refused_beyond_loopback(make_client, dists, tmp_path):
    client = make_client(host="0.0.0.0")
    r = client.post("/api/projects/demo/releases/1.0/yank")
    assert r.status_code == 403 and "--passwords" in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "url", "status", "text"),
    [
        ("POST", "/api/projects/nope/releases/1.0/yank", 404, "No project named 'nope'"),
        ("POST", "/api/projects/demo/releases/9.9/yank", 404, "no release '9.9'"),
        ("POST", "/api/projects/demo/releases/not-a-version!/yank", 400, "PEP 440"),
        ("POST", "/api/projects/demo/files/nope.whl/yank", 404, "No file 'nope.whl'"),
        ("DELETE", "/api/projects/demo/files/nope.whl", 404, "No file"),
        ("DELETE", "/api/projects/demo/releases/3", 404, "no release"),
        ("GET", "/api/projects/nope", 404, "No project"),
    ],
)
def test_management_errors_are_problems_and_change_nothing(loaded, tmp_path, method, url, status, text):
    before = fingerprint(tmp_path)
    r = loaded.request(method, url)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    assert text in r.json()["detail"]
    assert fingerprint(tmp_path) == before


@pytest.mark.sqlite_only  # a SQLite file made read-only
def test_a_database_that_became_read_only_answers_503_and_changes_nothing(make_client, dists, tmp_path, monkeypatch):
    """The database file became read-only after the server started (the start refuses one: see
    tests/e2e/test_operator_errors.py). Every change then answers 503 saying so, not 500."""
    client = make_client()
    assert post(client, dists / W1).status_code == 200
    client.__exit__(None, None, None)
    # As if it became read-only after the start's check: the server's connections open it read-only.
    monkeypatch.setattr("app.main.sqlite_write_problem", lambda engine: _no_problem(), raising=False)
    with immutable(tmp_path / "data" / "packhouse.db"):
        client = make_client()
        before = fingerprint(tmp_path)
        answers = [
            post(client, dists / W2),
            client.post("/api/projects/demo/releases/1.0/yank", json={"reason": "broken"}),
            client.delete(f"/api/projects/demo/files/{W1}"),
            client.post("/", data={":action": "remove_pkg", "name": "demo", "version": "1.0"}),
        ]
        for r in answers:
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json" and r.headers["retry-after"]
            assert "The server's database is read-only: nothing was changed" in r.json()["detail"], r.text
        assert fingerprint(tmp_path) == before
        assert [f["filename"] for f in page(client)["files"]] == [W1] and not yanked(client)[W1]


async def _no_problem() -> None:
    return None


def test_yank_reason_too_long_is_rejected(loaded, tmp_path):
    before = fingerprint(tmp_path)
    r = loaded.post("/api/projects/demo/releases/1.0/yank", json={"reason": "x" * 1001})
    assert r.status_code == 422
    assert fingerprint(tmp_path) == before


def test_yank_reason_with_a_nul_character_is_rejected(loaded, tmp_path):
    """PostgreSQL refuses NUL in text: the reason is refused before it gets there (422, not 500)."""
    before = fingerprint(tmp_path)
    r = loaded.post("/api/projects/demo/releases/1.0/yank", json={"reason": "bad\x00reason"})
    assert r.status_code == 422
    assert fingerprint(tmp_path) == before


def test_changes_bump_the_serial_so_cached_pages_are_fresh(loaded):
    first = loaded.get("/simple/demo/", headers=JSON)
    etag = first.headers["etag"]
    loaded.post("/api/projects/demo/releases/1.0/yank")
    second = loaded.get("/simple/demo/", headers={**JSON, "If-None-Match": etag})
    assert second.status_code == 200 and second.headers["etag"] != etag


def test_project_view_lists_yanked_files(loaded):
    loaded.post("/api/projects/demo/releases/1.0/yank", json={"reason": "old"})
    files = {f["filename"]: f for f in loaded.get("/api/projects/DEMO").json()["files"]}
    assert files[W1]["yanked"] and files[W1]["yanked_reason"] == "old" and not files[W2]["yanked"]


def test_management_api_is_documented(client):
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/projects/{project}",
        "/api/projects/{project}/events",
        "/api/projects/{project}/releases/{version}/yank",
        "/api/projects/{project}/files/{filename}",
    ):
        assert path in spec["paths"]
    assert "YankIn" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


# The CLI acts on the data directory directly -------------------------------------------------


def cli(
    *args: str, data_dir: Path, env: dict[str, str] | None = None, timeout: float | None = None, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """``packhouse ARGS --data-dir DATA``, in this process unless ``process`` or a ``timeout``
    (tests/support/cli.py)."""
    return packhouse([*args, "--data-dir", str(data_dir)], env=env, timeout=timeout, process=process)


def test_cli_yank_unyank_delete(loaded, tmp_path):
    data = tmp_path / "data"
    r = cli("yank", "Demo", "2.0", "--reason", "use 1.0", "--actor", "ops", data_dir=data)
    assert r.returncode == 0, r.stderr
    assert yanked(loaded) == {W1: False, W2: "use 1.0", S2: "use 1.0"}  # the server sees it at once
    assert cli("unyank", "demo", "--file", S2, data_dir=data).returncode == 0
    assert yanked(loaded)[S2] is False
    assert cli("delete", "demo", "--file", W2, data_dir=data).returncode == 0
    assert W2 not in yanked(loaded)
    r = cli("delete", "demo", "7.0", data_dir=data)
    assert r.returncode == 1 and "no release '7.0'" in r.stderr
    actors = [e["actor"] for e in loaded.get("/api/projects/demo/events").json()[:3]]
    assert actors[2] == "ops" and actors[0].startswith("cli:")


def test_cli_refuses_an_actor_the_journal_cannot_record(loaded, tmp_path):
    data = tmp_path / "data"
    before = fingerprint(tmp_path)
    for command in (["yank", "demo", "2.0"], ["delete", "demo", "--file", W2]):
        r = cli(*command, "--actor", "o" * 201, data_dir=data)
        assert r.returncode == 1, r.stderr
        assert "is 201 characters long, and the journal records at most 200" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    for command in (["yank", "demo", "2.0"], ["check", "--repair"]):  # the default actor: cli:<login>
        r = cli(*command, data_dir=data, env={"LOGNAME": "o" * 197})
        assert r.returncode == 1, r.stderr
        assert "is 201 characters long, and the journal records at most 200" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert fingerprint(tmp_path) == before


def test_cli_refuses_arguments_that_are_not_utf8(loaded, tmp_path):
    """Bytes that are not UTF-8 reach Python as lone surrogates (os.fsdecode), which the database
    cannot store: one line naming the argument, exit status 2, nothing changed."""
    data = tmp_path / "data"
    bad = os.fsdecode(b"x\xffy")
    hint = "(check the encoding of the terminal or script)"
    before = fingerprint(tmp_path)
    for command, what in (
        (["yank", bad], "project name"),
        (["yank", "demo", "2.0", "--reason", bad], "--reason"),
        (["unyank", "demo", bad], "version"),
        (["delete", "demo", "--file", bad], "--file"),
        (["yank", "demo", "2.0", "--actor", bad], "--actor"),
    ):
        r = cli(*command, data_dir=data, process=True)  # argv as bytes, decoded by Python itself
        assert r.returncode == 2, (command, r.stderr)
        assert r.stderr == f"packhouse: error: the {what} 'x\\xffy' is not valid UTF-8 {hint}\n"
    assert fingerprint(tmp_path) == before


def test_check_finds_and_repairs_every_kind_of_problem(loaded, tmp_path):
    data = tmp_path / "data"
    files = data / "files"
    # The local store writes a wheel's PEP 658 metadata file on the first request for it: none
    # yet, and that is no problem (the wheels give the bytes their rows record).
    assert not list(files.rglob("*.metadata"))
    r = cli("check", data_dir=data)
    assert r.returncode == 0 and "0 problem(s)" in r.stdout
    url = next(f["url"] for f in page(loaded)["files"] if f["filename"] == W2)
    served = loaded.get(urljoin("http://testserver/simple/demo/", url) + ".metadata")
    assert served.status_code == 200 and served.content.startswith(b"Metadata-Version")
    (w2_meta,) = [p for p in files.rglob(f"*{W2}.metadata")]
    assert w2_meta.read_bytes() == served.content
    (w1,) = [p for p in files.rglob(f"*{W1}")]
    w1.write_bytes(w1.read_bytes() + b"tampered")
    (s2,) = [p for p in files.rglob(f"*{S2}")]
    s2.unlink()
    w2_meta.write_bytes(b"Metadata-Version: 2.1\nName: damaged\n")
    orphan = files / "ab" / "cd" / "orphan.whl"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    r = cli("check", data_dir=data)
    assert r.returncode == 1
    for text in (f"corrupt: {W1}", f"missing: {S2}", f"corrupt-metadata: {W2}", "orphan: ab/cd/orphan.whl"):
        assert text in r.stdout
    assert "--repair" in r.stderr
    # A young orphan may be an upload about to commit its row: --repair keeps it, and says so.
    r = cli("check", "--repair", data_dir=data)
    assert r.returncode == 1 and orphan.exists()
    assert "PROBLEM orphan: ab/cd/orphan.whl" in r.stdout and "kept for now" in r.stdout, r.stdout
    assert "REPAIRED corrupt" in r.stdout
    assert f"REPAIRED corrupt-metadata: {W2}: PEP 658 metadata has sha256 " in r.stdout
    assert "; rebuilt from the wheel" in r.stdout
    old = time.time() - 3600
    os.utime(orphan, (old, old))  # older than the default --grace of 15 minutes
    r = cli("check", "--repair", data_dir=data)
    assert r.returncode == 0, r.stdout
    assert not orphan.exists()
    state = yanked(loaded)
    assert str(state[W1]).startswith("packhouse check:") and str(state[S2]).startswith("packhouse check:")
    # The metadata file is the wheel's own METADATA: rebuilt from it, still advertised.
    w2 = next(f for f in page(loaded)["files"] if f["filename"] == W2)
    assert w2_meta.read_bytes() == served.content
    assert w2["core-metadata"] == {"sha256": hashlib.sha256(served.content).hexdigest()} and not state[W2]
    r = cli("check", data_dir=data)
    assert r.returncode == 0 and "0 unrepaired" in r.stdout
    assert [e[2] for e in db_rows(data / "packhouse.db", "events") if e[2] == "check-broken"]


def test_check_grace_must_be_a_finite_number_of_seconds(loaded, tmp_path):
    """'nan' compares false with every age: a young orphan (maybe an upload about to commit its
    row) would be removed at once."""
    data = tmp_path / "data"
    orphan = data / "files" / "ab" / "cd" / "orphan.whl"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"an upload in flight")
    for grace in ("nan", "-5", "inf", "soon"):
        r = cli("check", "--repair", "--grace", grace, data_dir=data)
        assert r.returncode == 2, r.stdout
        assert f"argument --grace: '{grace}' is not a number of seconds, 0 or more" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and orphan.exists()
    r = cli("check", "--repair", "--grace", "0", data_dir=data)
    assert r.returncode == 0 and not orphan.exists()


def test_check_stops_advertising_metadata_that_nothing_can_rebuild(loaded, tmp_path):
    """The wheel and its metadata file both gone: the row is yanked and its metadata no longer
    advertised (pip and uv would otherwise fetch a 404 on every resolve)."""
    data = tmp_path / "data"
    for path in (data / "files").rglob(f"*{W2}*"):
        path.unlink()
    r = cli("check", "--repair", data_dir=data)
    assert r.returncode == 0, r.stdout
    assert (
        f"REPAIRED missing-metadata: {W2}: PEP 658 metadata is missing, and the wheel does not give it; "
        "stopped advertising" in r.stdout
    )
    w2 = next(f for f in page(loaded)["files"] if f["filename"] == W2)
    assert not w2.get("core-metadata") and str(w2["yanked"]).startswith("packhouse check:")


def test_cli_acts_on_the_s3_storage_the_server_uses(make_client, s3, dists, tmp_path):
    """With PACKHOUSE_STORAGE (or --storage) the commands open the bucket, not a local folder."""
    client = make_client(storage=s3.storage_url, s3_endpoint_url=s3.server.endpoint)
    for name in (W1, W2, S2):
        assert post(client, dists / name).status_code == 200
    data = tmp_path / "data"
    r = cli("check", data_dir=data, env=s3.env)
    assert r.returncode == 0 and "3 file(s) and 5 stored blob(s): 0 problem(s)" in r.stdout, r.stdout + r.stderr
    bucket = s3.server.client()
    (s2_key,) = [k for k in s3.keys() if k.endswith(S2)]
    bucket.delete_object(Bucket=s3.bucket, Key=s2_key)
    bucket.put_object(Bucket=s3.bucket, Key=f"{s3.prefix}/ab/cd/orphan.whl", Body=b"left by a crash")
    r = cli("check", "--storage", s3.storage_url, data_dir=data, env={"PACKHOUSE_S3_ENDPOINT_URL": s3.server.endpoint})
    assert r.returncode == 1
    assert f"missing: {S2}" in r.stdout and "orphan: ab/cd/orphan.whl" in r.stdout, r.stdout
    assert cli("check", "--repair", data_dir=data, env=s3.env).returncode == 1  # the orphan is young
    assert f"{s3.prefix}/ab/cd/orphan.whl" in s3.keys()
    assert cli("check", "--repair", "--grace", "0", data_dir=data, env=s3.env).returncode == 0
    assert f"{s3.prefix}/ab/cd/orphan.whl" not in s3.keys()
    assert cli("delete", "demo", "--file", W2, data_dir=data, env=s3.env).returncode == 0
    assert not [k for k in s3.keys() if W2 in k]  # the wheel and its PEP 658 metadata left the bucket
    assert W2 not in yanked(client)


def test_cli_in_pypiserver_mode_keeps_the_package_folder(make_client, dists, tmp_path):
    """--packages-dir: the commands use the package folder as 'packhouse run' does. A file there
    without a row (dropped in by hand, or not a distribution) is the owner's, never an orphan."""
    packages = tmp_path / "packages"
    packages.mkdir()
    client = make_client(packages_dir=packages)
    for name in (W1, W2):
        assert post(client, dists / name).status_code == 200
    (packages / "README.txt").write_text("our wheels\n")
    (packages / "later-1.0.tar.gz").write_bytes(b"not indexed yet")
    flags = ("--packages-dir", str(packages))
    r = cli("check", "--repair", "--grace", "0", *flags, data_dir=tmp_path / "data")  # however old they are
    assert r.returncode == 0 and "0 problem(s)" in r.stdout, r.stdout + r.stderr
    assert (packages / "README.txt").exists() and (packages / "later-1.0.tar.gz").exists()
    assert (packages / ".packhouse" / "metadata" / f"{W2}.metadata").exists()
    r = cli("delete", "demo", "--file", W2, *flags, data_dir=tmp_path / "data")
    assert r.returncode == 0, r.stderr
    assert not (packages / W2).exists() and (packages / W1).exists()
    assert not list(packages.rglob(f"{W2}.metadata"))
    assert W2 not in yanked(client)
    (packages / W1).write_bytes(b"damaged")
    r = cli("check", *flags, data_dir=tmp_path / "data")
    assert r.returncode == 1 and f"corrupt: {W1}" in r.stdout


def test_check_in_pypiserver_mode_removes_orphan_metadata_files_only(make_client, dists, tmp_path):
    """--packages-dir: the PEP 658 metadata files in .packhouse/metadata/ are Packhouse's own. One
    whose file has no row (left by a crash, or by a version whose rescan did not remove it) is an
    orphan that --repair removes once older than --grace; those of live files stay, and so do the
    owner's visible *.metadata files, which no key names."""
    packages = tmp_path / "packages"
    (packages / "sub").mkdir(parents=True)
    client = make_client(packages_dir=packages)
    for name in (W1, W2):
        assert post(client, dists / name).status_code == 200
    metadata = packages / ".packhouse" / "metadata"
    live = {name: (metadata / f"{name}.metadata").read_bytes() for name in (W1, W2)}
    orphans = [metadata / "gone-1.0-py3-none-any.whl.metadata", metadata / "sub" / "old-1.0-py3-none-any.whl.metadata"]
    for orphan in orphans:
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"Metadata-Version: 2.1\nName: gone\n")
    strays = [packages / f"{W1}.metadata", packages / "sub" / "stray-1.0-py3-none-any.whl.metadata"]
    for stray in strays:
        stray.write_bytes(b"the owner's\n")
    flags = ("--packages-dir", str(packages))

    r = cli("check", *flags, data_dir=tmp_path / "data")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "PROBLEM orphan: gone-1.0-py3-none-any.whl.metadata: stored blob" in r.stdout
    assert "PROBLEM orphan: sub/old-1.0-py3-none-any.whl.metadata: stored blob" in r.stdout
    # The wheels and the metadata files (W1's, W2's and the two orphans), not the visible strays.
    assert "checked 2 file(s) and 6 stored blob(s): 2 problem(s), 2 unrepaired" in r.stdout, r.stdout
    r = cli("check", "--repair", *flags, data_dir=tmp_path / "data")  # young: kept for now
    assert r.returncode == 1 and r.stdout.count("kept for now") == 2, r.stdout
    assert all(orphan.exists() for orphan in orphans)
    old = time.time() - 3600
    for orphan in orphans:
        os.utime(orphan, (old, old))  # older than the default --grace of 15 minutes
    r = cli("check", "--repair", *flags, data_dir=tmp_path / "data")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "REPAIRED orphan: gone-1.0-py3-none-any.whl.metadata" in r.stdout and "; removed" in r.stdout
    assert not any(orphan.exists() for orphan in orphans)
    assert {name: (metadata / f"{name}.metadata").read_bytes() for name in (W1, W2)} == live
    assert all(stray.read_bytes() == b"the owner's\n" for stray in strays)
    assert (packages / W1).exists() and (packages / W2).exists()
    assert _metadata_served(client, W1) == live[W1]
    r = cli("check", *flags, data_dir=tmp_path / "data")
    assert r.returncode == 0 and "4 stored blob(s): 0 problem(s)" in r.stdout, r.stdout


def test_check_reports_what_is_not_a_regular_file_and_never_waits_on_it(make_client, tmp_path):
    """A package folder where files were replaced by hand with a directory, a symlink loop or a
    FIFO (opening one for reading waits for a writer, forever), and PEP 658 metadata files with a
    directory, a FIFO or a symlink to a file outside: each is reported as what it is, with no
    traceback and no wait; --repair yanks the files and rewrites the metadata files it can."""
    packages, dists = tmp_path / "packages", tmp_path / "dists"
    packages.mkdir()
    dists.mkdir()
    client = make_client(packages_dir=packages)
    names = {p: f"{p}-1.0-py3-none-any.whl" for p in ("adir", "aloop", "afifo", "mdir", "mfifo", "mlink", "mloop")}
    for project in names:
        assert post(client, make_wheel(dists, project, "1.0")).status_code == 200
    metadata = packages / ".packhouse" / "metadata"
    for project, how in (("adir", "dir"), ("aloop", "loop"), ("afifo", "fifo")):
        _replace(packages / names[project], how)
    for project, how in (("mdir", "dir"), ("mfifo", "fifo"), ("mlink", "link"), ("mloop", "loop")):
        _replace(metadata / f"{names[project]}.metadata", how)
    flags = ("--packages-dir", str(packages))

    r = cli("check", *flags, data_dir=tmp_path / "data", timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for line in (
        f"PROBLEM corrupt: {names['adir']}: the stored file cannot be read: it is a directory, not a regular file",
        f"PROBLEM corrupt: {names['aloop']}: the stored file cannot be read: it is a symbolic link loop",
        f"PROBLEM corrupt: {names['afifo']}: the stored file cannot be read: it is a FIFO (named pipe), not a "
        "regular file",
        f"PROBLEM corrupt-metadata: {names['mdir']}: the PEP 658 metadata file cannot be read: it is a directory",
        f"PROBLEM corrupt-metadata: {names['mfifo']}: the PEP 658 metadata file cannot be read: it is a FIFO",
        f"PROBLEM corrupt-metadata: {names['mlink']}: the PEP 658 metadata file cannot be read: it is a symbolic "
        "link that leads outside the storage folder",
        f"PROBLEM corrupt-metadata: {names['mloop']}: the PEP 658 metadata file cannot be read: it is a symbolic "
        "link loop",
    ):
        assert line in r.stdout, r.stdout

    r = cli("check", "--repair", *flags, data_dir=tmp_path / "data", timeout=30)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, r.stdout  # the directory is left for the operator to remove
    for project in ("adir", "aloop", "afifo"):
        assert f"REPAIRED corrupt: {names[project]}: " in r.stdout and "; yanked it" in r.stdout, r.stdout
        assert str(yanked_in(client, project)[names[project]]).startswith("packhouse check:")
    for project in ("mfifo", "mlink", "mloop"):  # replaced by the rebuilt file (the link, not its target)
        assert f"REPAIRED corrupt-metadata: {names[project]}: " in r.stdout, r.stdout
        sidecar = metadata / f"{names[project]}.metadata"
        assert not sidecar.is_symlink() and sidecar.read_bytes().startswith(b"Metadata-Version")
    assert f"PROBLEM corrupt-metadata: {names['mdir']}: " in r.stdout, r.stdout
    assert "could not be replaced with the wheel's: remove it by hand" in r.stdout, r.stdout
    assert Path("/etc/passwd").read_bytes() != b"" and b"Metadata-Version" not in Path("/etc/passwd").read_bytes()


def _replace(path: Path, how: str) -> None:
    path.unlink()
    if how == "dir":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "loop":
        path.symlink_to(path.name)
    else:
        path.symlink_to("/etc/passwd")


def yanked_in(client, project: str) -> dict[str, object]:
    r = client.get(f"/simple/{project}/", headers=JSON)
    return {f["filename"]: f.get("yanked", False) for f in r.json()["files"]}


def _metadata_served(client, filename: str) -> bytes:
    url = next(f["url"] for f in page(client)["files"] if f["filename"] == filename)
    served = client.get(urljoin("http://testserver/simple/demo/", url) + ".metadata")
    assert served.status_code == 200
    return served.content


def test_cli_refuses_bad_settings_with_a_clear_message(loaded, tmp_path):
    data = tmp_path / "data"
    r = cli("check", "--config", str(tmp_path / "missing.toml"), data_dir=data)
    assert r.returncode == 2 and "cannot read config file" in r.stderr, r.stderr
    r = cli("delete", "demo", "2.0", "--storage", "ftp://bucket/files", data_dir=data)
    assert r.returncode == 2 and "use s3://BUCKET/PREFIX" in r.stderr, r.stderr
    assert W2 in yanked(loaded)  # nothing was deleted


@pytest.mark.parametrize("meanwhile", ["nothing", "deleted", "always lost"])
def test_an_overwrite_that_raced_a_new_upload_replaces_it(make_client, dists, tmp_path, monkeypatch, meanwhile):
    """--overwrite: the filename looked free, then another upload's row went in first (the insert
    fails on the unique filename): this upload replaces that row and answers 200. ``deleted``: the
    first replacement fails as a racing one would, the row having been deleted meanwhile; the next
    try only inserts. ``always lost``: every replacement loses to yet another racer (other bytes):
    after RACED_OVERWRITE_TRIES tries, a 409 that says to upload again, the racer's file kept and
    this upload's copy removed."""
    client = make_client(overwrite=True)
    state = client.app.state
    units = state.uploads.units
    assert post(client, dists / W1).status_code == 200  # the racer's row, in first
    (dists / "ours").mkdir()
    ours = make_wheel(dists / "ours", "demo", "1.0", module_code="mine = 1\n")

    async def looked_free(filename):
        return None, None

    monkeypatch.setattr(units, "lookup", looked_free)  # as if checked just before the racer's row
    if meanwhile == "deleted":
        real_write, tries = units.write, []

        async def write(fn):
            if isinstance(fn, partial):  # a replacement of the raced row (UploadService._replace_raced)
                tries.append(fn)
                if len(tries) == 1:
                    await state.manage.delete("demo", filename=W1, actor="ops")
                    raise IntegrityError("INSERT INTO files", {}, Exception("UNIQUE constraint failed"))
            return await real_write(fn)

        monkeypatch.setattr(units, "write", write)
    if meanwhile == "always lost":
        racer, tries, real_write = (dists / W1).read_bytes(), [], units.write

        async def lose(fn):
            if not isinstance(fn, partial):  # the first insert (PostgreSQL's goes through write too)
                return await real_write(fn)
            tries.append(fn)
            raise IntegrityError("INSERT INTO files", {}, Exception("UNIQUE constraint failed"))

        monkeypatch.setattr(units, "write", lose)
        r = post(client, ours)
        assert r.status_code == 409 and "at the same moment" in r.text and "upload again" in r.text, r.text
        assert len(tries) == RACED_OVERWRITE_TRIES
        assert client.get(f"/files/demo/{W1}").content == racer
        stored = list((tmp_path / "data" / "files").rglob(f"*{W1}*"))
        assert [p.read_bytes() for p in stored] == [racer]  # this upload's copy is gone, none half-written
        return
    r = post(client, ours)
    assert r.status_code == 200 and r.text.startswith("Stored"), r.text
    if meanwhile == "deleted":
        assert len(tries) == 2
    assert client.get(f"/files/demo/{W1}").content == ours.read_bytes()
    actions = [e["action"] for e in client.get("/api/projects/demo/events").json()]
    assert actions == (
        ["upload", "overwrite", "upload"] if meanwhile == "nothing" else ["upload", "delete", "upload"]
    ), actions
    stored = list((tmp_path / "data" / "files").rglob(f"*{W1}"))
    assert [p.read_bytes() for p in stored] == [ours.read_bytes()]  # no blob of the replaced row
