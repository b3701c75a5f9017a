"""``packhouse transfer``: an embedded installation (SQLite + folder) into PostgreSQL + S3."""

from __future__ import annotations

import hashlib
import sqlite3
import sys

import httpx
import pytest

from tests.conftest import ROOT, clean_env, run
from tests.support.builders import make_sdist, make_wheel
from tests.support.forms import upload_form

# The source is the embedded default by definition; the destination is PostgreSQL + S3.
pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)]

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture
def embedded(make_client, tmp_path):
    """An embedded installation with a few files; the app is shut down before the transfer."""
    client = make_client()
    uploaded = []
    for path in (
        make_wheel(tmp_path, "moving-a", "1.0"),
        make_sdist(tmp_path, "moving-a", "1.0"),
        make_wheel(tmp_path, "moving-b", "0.1", requires_python=">=3.8"),
    ):
        data, files = upload_form(path)
        assert client.post("/legacy/", data=data, files=files).status_code == 200
        uploaded.append(path)
    # A PEP 792 status travels with its project (no other test here depends on it: deprecated
    # projects are served as usual).
    status = {"status": "deprecated", "reason": "use moving-b"}
    assert client.put("/api/projects/moving-a/status", json=status).status_code == 200
    client.__exit__(None, None, None)
    return uploaded


def _transfer(tmp_path, s3, dest_url, *extra):
    env = clean_env(tmp_path / "home", s3.env)
    cmd = [sys.executable, "-m", "app", "transfer", "--from-data-dir", str(tmp_path / "data"),
           "--to-database-url", dest_url, "--to-storage", s3.storage_url,
           "--s3-endpoint-url", s3.server.endpoint, *extra]  # fmt: skip
    return run(cmd, env, cwd=ROOT, check=False)


def test_transfer_to_postgresql_and_s3_then_serve_from_there(embedded, postgres_cluster, s3, live_server, tmp_path):
    # The local store writes a wheel's PEP 658 metadata file on the first request for it (derived
    # data: app/services/metadata.py), so the source has none: each is built from its wheel on the
    # way and stored beside it in the bucket; the source itself is only read.
    assert not list((tmp_path / "data" / "files").rglob("*.metadata"))
    dest_url = postgres_cluster.url(postgres_cluster.create_database())
    proc = _transfer(tmp_path, s3, dest_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list((tmp_path / "data" / "files").rglob("*.metadata"))
    wheels = [p.name for p in embedded if p.name.endswith(".whl")]
    metas = [k for k in s3.keys() if k.endswith(".metadata")]
    assert len(metas) == len(wheels) == 2 and all(any(m.endswith(f"{w}.metadata") for m in metas) for w in wheels)
    assert "copying files [" in proc.stderr and "3/3 files" in proc.stderr
    assert "3 files" in proc.stdout and "every sha256 verified" in proc.stdout

    server = live_server(data_dir=tmp_path / "scaled", env={**s3.env, "PACKHOUSE_DATABASE_URL": dest_url})
    names = {p["name"] for p in httpx.get(f"{server.url}/simple/", headers=JSON).json()["projects"]}
    assert names == {"moving-a", "moving-b"}
    for path in embedded:
        project = path.name.split("-")[0].replace("_", "-")
        page = httpx.get(f"{server.url}/simple/{project}/", headers=JSON).json()
        (entry,) = [f for f in page["files"] if f["filename"] == path.name]
        assert entry["hashes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert httpx.get(f"{server.url}/files/{project}/{path.name}").content == path.read_bytes()
        if path.name.endswith(".whl"):
            meta = httpx.get(f"{server.url}/files/{project}/{path.name}.metadata")
            assert meta.status_code == 200
            assert entry["core-metadata"] == {"sha256": hashlib.sha256(meta.content).hexdigest()}
    assert page["files"][0]["requires-python"] == ">=3.8"
    status = httpx.get(f"{server.url}/simple/moving-a/", headers=JSON).json()["project-status"]
    assert status == {"status": "deprecated", "reason": "use moving-b"}

    # New uploads work on the destination (its id sequences were moved past the copied rows).
    new = make_wheel(tmp_path, "moving-b", "0.2")
    data, files = upload_form(new)
    assert httpx.post(f"{server.url}/legacy/", data=data, files=files).status_code == 200
    assert postgres_cluster.psql("SELECT count(*) FROM files", database=dest_url.rsplit("/", 1)[1]).strip() == "4"

    # Transferring again into the now non-empty database is refused.
    again = _transfer(tmp_path, s3, dest_url)
    assert again.returncode == 1 and "not empty" in again.stderr


def test_transfer_refuses_a_file_whose_bytes_do_not_match_its_sha256(embedded, postgres_cluster, s3, tmp_path):
    (damaged,) = [p for p in (tmp_path / "data" / "files").rglob(f"*{embedded[1].name}")]
    original = damaged.read_bytes()
    damaged.write_bytes(bytes([original[0] ^ 0xFF]) + original[1:])
    database = postgres_cluster.create_database()
    proc = _transfer(tmp_path, s3, postgres_cluster.url(database))
    assert proc.returncode == 1
    assert embedded[1].name in proc.stderr and "sha256" in proc.stderr
    assert postgres_cluster.psql("SELECT count(*) FROM files", database=database).strip() == "0"


def test_transfer_refuses_metadata_that_neither_the_source_nor_its_wheel_can_give(
    embedded, postgres_cluster, s3, tmp_path
):
    """No metadata file (the local store writes it on the first request) and the row records a
    sha256 the wheel's METADATA does not have: nothing can supply the advertised bytes, so nothing
    is inserted."""
    assert not list((tmp_path / "data" / "files").rglob(f"*{embedded[0].name}.metadata"))
    with sqlite3.connect(tmp_path / "data" / "packhouse.db") as db:
        db.execute("UPDATE files SET metadata_sha256 = ? WHERE filename = ?", ("0" * 64, embedded[0].name))
    database = postgres_cluster.create_database()
    proc = _transfer(tmp_path, s3, postgres_cluster.url(database))
    assert proc.returncode == 1
    expected = f"{embedded[0].name}.metadata: missing from the source storage, and its wheel cannot rebuild it"
    assert expected in proc.stderr
    assert postgres_cluster.psql("SELECT count(*) FROM files", database=database).strip() == "0"


def test_transfer_leaves_out_what_the_destination_cannot_store(embedded, postgres_cluster, s3, tmp_path):
    """SQLite ignores VARCHAR lengths: an installation that ran before Packhouse measured values may
    hold some that PostgreSQL refuses. The transfer no longer fails on them once every file is
    copied: it drops an optional value (a journal entry keeps it in its detail), leaves out a file
    whose version does not fit, lists a project under its normalised name, and says so."""
    dct, version, actor = "text/markdown; x=" + "y" * 300, "1.0+" + "local" * 22, "u" * 201
    with sqlite3.connect(tmp_path / "data" / "packhouse.db") as db:
        db.execute("UPDATE files SET description_content_type = ? WHERE filename = ?", (dct, embedded[0].name))
        db.execute("UPDATE files SET version = ? WHERE filename = ?", (version, embedded[2].name))
        db.execute("UPDATE events SET actor = ? WHERE filename = ?", (actor, embedded[0].name))
        db.execute("UPDATE projects SET name = ? WHERE normalized_name = 'moving-a'", ("Moving" + "_" * 200 + "A",))
    database = postgres_cluster.create_database()
    proc = _transfer(tmp_path, s3, postgres_cluster.url(database))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"skipped file {embedded[2].name}: its version is 114 characters long" in proc.stderr
    assert f"file {embedded[0].name}: its Description-Content-Type is 317 characters long" in proc.stderr
    assert "its display name is longer than 200 characters; listed as moving-a" in proc.stderr
    assert "2 files" in proc.stdout and "left out (above)" in proc.stdout

    def psql(sql: str) -> str:
        return postgres_cluster.psql(sql, database=database).strip()

    assert psql("SELECT filename FROM files ORDER BY filename").split() == sorted(p.name for p in embedded[:2])
    assert psql(f"SELECT description_content_type IS NULL FROM files WHERE filename = '{embedded[0].name}'") == "t"
    assert psql("SELECT name FROM projects WHERE normalized_name = 'moving-a'") == "moving-a"
    entry = psql(f"SELECT coalesce(actor, '-') || ' ' || detail FROM events WHERE filename = '{embedded[0].name}'")
    assert entry == f"- user name (too long to keep): {actor}"
    assert not [k for k in s3.keys() if k.endswith(embedded[2].name)]  # its bytes were not copied
