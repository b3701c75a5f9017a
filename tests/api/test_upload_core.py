"""The legacy upload API: what twine, flit, uv and hatch send, and what must be refused."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat

import pytest

from app.storage.local import is_spare_part
from tests.support import dbaccess
from tests.support.builders import make_sdist, make_wheel, metadata_text, zip_bytes
from tests.support.forms import upload_form
from tests.support.integrity import BOUNDARY, multipart


def stored_files(settings_dir) -> dict[str, str]:
    root = settings_dir / "files"
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and ".tmp" not in p.parts and not is_spare_part(p.name)
    }


def rows(data_dir) -> list[tuple]:
    return dbaccess.query("SELECT filename, sha256, size, version FROM files ORDER BY id", data_dir)


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def post(client, path, url="/legacy/", **overrides):
    data, files = upload_form(path, **overrides)
    return client.post(url, data=data, files=files)


def test_upload_records_metadata(client, tmp_path, data_dir):
    whl = make_wheel(
        tmp_path, "Rich-Pkg", "1.0.0", summary="Sum", requires_dist=("a>=1", 'b; python_version<"3.12"'),
        requires_python=">=3.9", description="# Title\n\nBody\n",
    )  # fmt: skip
    r = post(client, whl, url="/")
    assert r.status_code == 200, r.text
    assert r.text == "Stored: rich_pkg-1.0.0-py3-none-any.whl\n"
    names = ("name", "normalized_name")
    project = dict(zip(names, dbaccess.query("SELECT name, normalized_name FROM projects", data_dir)[0], strict=True))
    columns = ("sha256", "md5", "blake2_256", "size", "summary", "requires_python", "requires_dist", "description",
               "description_content_type", "filetype", "upload_time", "storage_key", "metadata_sha256")  # fmt: skip
    row = dict(zip(columns, dbaccess.query(f"SELECT {', '.join(columns)} FROM files", data_dir)[0], strict=True))
    assert (project["name"], project["normalized_name"]) == ("Rich-Pkg", "rich-pkg")
    raw = whl.read_bytes()
    assert row["sha256"] == hashlib.sha256(raw).hexdigest()
    # The form sent sha256_digest first (as twine does): md5 and blake2b were not computed.
    assert (row["md5"], row["blake2_256"]) == (None, None)
    assert row["size"] == len(raw)
    assert (row["summary"], row["requires_python"]) == ("Sum", ">=9" if False else ">=3.9")
    assert json.loads(row["requires_dist"]) == ["a>=1", 'b; python_version<"3.12"']
    assert row["description"] == "# Title\n\nBody\n"
    assert row["description_content_type"] == "text/markdown"
    assert row["filetype"] == "bdist_wheel" and row["upload_time"]
    # PEP 658: the wheel's METADATA, byte for byte, at the file's URL + ".metadata". The local store
    # writes the metadata file on the first request for it, not at upload.
    meta = data_dir / "files" / (row["storage_key"] + ".metadata")
    assert not meta.exists()
    served = client.get(f"/files/rich-pkg/{whl.name}.metadata")
    assert served.status_code == 200 and served.content.startswith(b"Metadata-Version: ")
    assert hashlib.sha256(served.content).hexdigest() == row["metadata_sha256"]
    assert meta.read_bytes() == served.content


def test_identical_reupload_is_200_and_other_bytes_409(client, tmp_path, data_dir):
    whl = make_wheel(tmp_path, "dup", "1.0")
    assert post(client, whl).status_code == 200
    before = stored_files(data_dir), rows(data_dir)
    again = post(client, whl)
    assert again.status_code == 200
    assert again.text.startswith("Already stored, identical")
    other = make_wheel(tmp_path / ".." / tmp_path.name, "dup", "1.0", module_code="changed = True\n")
    r = post(client, other)
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["title"] == "File already exists"
    assert body["detail"].startswith("File already exists")
    assert "bump the version" in body["detail"] and "the same bytes again succeeds" in body["detail"]
    assert (stored_files(data_dir), rows(data_dir)) == before


@pytest.mark.parametrize("keep", ["md5_digest", "sha256_digest", "blake2_256_digest"])
def test_any_single_digest_is_enough(client, tmp_path, keep):
    whl = make_wheel(tmp_path, "digests", "1.0")
    drop = {k: None for k in ("md5_digest", "sha256_digest", "blake2_256_digest") if k != keep}
    assert post(client, whl, **drop).status_code == 200


def test_md5_only_form_is_verified_and_recorded(client, tmp_path, data_dir):
    """Old clients (distutils' upload) send only md5_digest: md5 and blake2b are computed to verify it."""
    whl = make_wheel(tmp_path, "old-client", "1.0")
    assert post(client, whl, sha256_digest=None, blake2_256_digest=None).status_code == 200
    raw = whl.read_bytes()
    [(sha, md5, blake2)] = dbaccess.query("SELECT sha256, md5, blake2_256 FROM files", data_dir)
    assert sha == hashlib.sha256(raw).hexdigest()
    assert md5 == hashlib.md5(raw).hexdigest()
    assert blake2 == hashlib.blake2b(raw, digest_size=32).hexdigest()


def test_digests_after_the_file_are_all_verified(client, tmp_path, data_dir):
    """A form that sends its fields after the file: nothing is known when the bytes arrive, so every
    digest is computed, and a wrong md5 is refused even though the sha256 is right."""
    whl = make_wheel(tmp_path, "late-fields", "1.0")
    data, files = upload_form(whl, md5_digest="0" * 32)
    content = files["content"][1]
    body, ctype = multipart({}, whl.name.encode(), content)
    tail = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in data.items()
    )
    body = body.replace(f"--{BOUNDARY}--".encode(), tail + f"--{BOUNDARY}--".encode())
    r = client.post("/", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400 and "md5_digest sent" in r.json()["detail"]
    assert stored_files(data_dir) == {} and rows(data_dir) == []


def test_md5_next_to_a_verified_sha256_is_not_recomputed(client, tmp_path, data_dir):
    """The documented rule (app/services/form.py): when sha256_digest comes before the file, only
    SHA-256 is computed and checked; md5/blake2b of the same bytes would add nothing."""
    whl = make_wheel(tmp_path, "sha-first", "1.0")
    r = post(client, whl, md5_digest="0" * 32)
    assert r.status_code == 200, r.text
    assert dbaccess.query("SELECT md5, blake2_256 FROM files", data_dir) == [(None, None)]


def test_flit_style_sdist_without_pyversion(client, tmp_path):
    sdist = make_sdist(tmp_path, "flitty", "0.1")
    r = post(client, sdist, pyversion=None, metadata_version="2.3", filetype="sdist")
    assert r.status_code == 200, r.text


def test_pep_740_attestations_are_accepted_and_dropped(client, tmp_path):
    """twine upload --attestations sends them as a JSON form field; Packhouse verifies none, so it
    serves none (no ``provenance`` on the JSON page): the upload itself goes through."""
    wheel = make_wheel(tmp_path, "attested", "1.0")
    attestation = '[{"version": 1, "verification_material": {}, "envelope": {}}]'
    r = post(client, wheel, attestations=attestation)
    assert r.status_code == 200, r.text
    page = client.get("/simple/attested/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    (entry,) = page.json()["files"]
    assert entry["filename"] == wheel.name and "provenance" not in entry


@pytest.mark.parametrize("metadata_version", ["1.0", "1.1", "1.2", "2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6"])
def test_every_core_metadata_version_is_accepted(client, tmp_path, data_dir, metadata_version):
    """1.0 to 2.4 and every 2.x after them: a backend newer than this server writes a higher minor
    version, which the core metadata spec says to accept (only a higher major must fail). 2.0 is
    what old bdist_wheel wrote. The form's own metadata_version (2.1 here) is not compared with the
    file's: flit sends 2.3 whatever flit_core wrote."""
    text = metadata_text("mv", "1.0").replace("Metadata-Version: 2.1", f"Metadata-Version: {metadata_version}")
    r = post(client, make_wheel(tmp_path, "mv", "1.0", metadata=text))
    assert r.status_code == 200, r.text
    assert dbaccess.query("SELECT metadata_version FROM files", data_dir) == [(metadata_version,)]


@pytest.mark.parametrize(
    ("kind", "filetype"),
    [("wheel", "bdist_wheel"), ("wheel", None), ("wheel", ""), ("sdist", "sdist"), ("sdist", None), ("zip", "sdist")],
)
def test_a_filetype_that_matches_the_file_or_none_is_accepted(client, tmp_path, data_dir, kind, filetype):
    """What twine, uv, flit, hatch and poetry send (bdist_wheel for .whl, sdist for .tar.gz and
    .zip); a form without the field (curl, pypiserver's clients) too. None: the field is left out."""
    if kind == "wheel":
        path = make_wheel(tmp_path, "ft", "1.0")
    elif kind == "sdist":
        path = make_sdist(tmp_path, "ft", "1.0")
    else:
        path = tmp_path / "ft-1.0.zip"
        path.write_bytes(zip_bytes({"ft-1.0/PKG-INFO": metadata_text("ft", "1.0").encode()}))
    r = post(client, path, filetype=filetype)
    assert r.status_code == 200, r.text
    assert dbaccess.query("SELECT filetype FROM files", data_dir) == [("bdist_wheel" if kind == "wheel" else "sdist",)]


@pytest.mark.parametrize("summary", ["", "x" * 512, "é" * 512])  # characters, not bytes
def test_a_one_line_summary_of_up_to_512_characters_is_accepted(client, tmp_path, data_dir, summary):
    r = post(client, make_sdist(tmp_path, "sum", "1.0", summary=summary))
    assert r.status_code == 200, r.text
    assert dbaccess.query("SELECT summary FROM files", data_dir) == [(summary,)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "someone-else"}, "is for project 'flat', but the form says 'someone-else'"),
        ({"version": "2.0"}, "is for version 1.0, but the form says '2.0'"),
        ({"sha256_digest": "0" * 64}, "sha256_digest sent"),
        ({"md5_digest": "0" * 32, "sha256_digest": None}, "md5_digest sent"),
        ({"blake2_256_digest": "0" * 64, "sha256_digest": None}, "blake2_256_digest sent"),
        ({"md5_digest": None, "sha256_digest": None, "blake2_256_digest": None}, "no digest"),
        ({":action": None}, "no ':action' field"),
        ({":action": "frobnicate"}, "Unknown :action"),
        ({"name": None}, "needs 'name' and 'version'"),
    ],
)
def test_form_rejections(client, tmp_path, data_dir, overrides, message):
    whl = make_wheel(tmp_path, "flat", "1.0")
    r = post(client, whl, **overrides)
    assert r.status_code == 400
    assert message in r.json()["detail"]
    assert stored_files(data_dir) == {} and rows(data_dir) == []
    assert list((data_dir / "files" / ".tmp").iterdir()) == []  # the staged file is gone too


def test_metadata_inside_must_match_filename(client, tmp_path, data_dir):
    whl = make_wheel(tmp_path, "outer", "1.0", metadata=metadata_text("inner", "1.0"))
    r = post(client, whl)
    assert r.status_code == 400
    assert "says inner 1.0, which does not match the filename" in r.json()["detail"]
    assert rows(data_dir) == []


@pytest.mark.parametrize("action", ["submit", "verify"])
def test_register_is_accepted_and_ignored_as_pypiserver_does(client, data_dir, action):
    """``twine register`` / ``setup.py register`` before an upload: pypiserver answers 200 and
    stores nothing; scripts that register first keep working."""
    r = client.post("/legacy/", data={":action": action, "name": "x", "version": "1"}, files={"x": ("", b"")})
    assert r.status_code == 200, r.text
    assert "Nothing to register" in r.text
    assert rows(data_dir) == []
    assert client.get("/simple/x/").status_code == 404


def test_not_multipart_is_415(client):
    r = client.post("/legacy/", content=b'{"name": "x"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    assert "multipart/form-data" in r.json()["detail"]


def test_oversized_upload_is_413_before_reading(make_client, tmp_path, data_dir):
    client = make_client(max_upload_size="4K")
    whl = make_wheel(tmp_path, "big", "1.0", extra_files={"big/blob.bin": os.urandom(20_000)})
    data, files = upload_form(whl)
    r = client.post("/legacy/", data=data, files=files)
    assert r.status_code == 413
    assert "limit of 4096 bytes" in r.json()["detail"]
    # Streamed without Content-Length (chunked): refused while streaming.
    body = client.build_request("POST", "/legacy/", data=data, files=files)
    raw = body.read()

    def chunks():
        for i in range(0, len(raw), 512):
            yield raw[i : i + 512]

    r = client.post("/legacy/", content=chunks(), headers={"Content-Type": body.headers["content-type"]})
    assert r.status_code == 413
    assert "--max-upload-size" in r.json()["detail"]
    assert rows(data_dir) == [] and list((data_dir / "files" / ".tmp").iterdir()) == []
    assert stored_files(data_dir) == {}  # nor anything staged in place


def test_upload_url_never_redirects(client, tmp_path):
    whl = make_wheel(tmp_path, "noredirect", "1.0")
    data, files = upload_form(whl)
    r = client.post("/legacy", data=data, files=files, follow_redirects=False)
    assert r.status_code == 200


def test_announced_oversized_body_is_refused_before_reading(make_client):
    from app.errors import UploadTooLargeError
    from app.services.upload import UploadService

    service = UploadService(None, None, max_upload_size=1024)  # type: ignore[arg-type]
    service.check_content_length("1000")
    with pytest.raises(UploadTooLargeError, match="over this server's limit of 1024 bytes"):
        service.check_content_length(str(10**12))


def _client_answering_500(make_settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    return TestClient(create_app(make_settings()), base_url="http://127.0.0.1", raise_server_exceptions=False)


def _disk_fails(path):
    raise OSError(5, "Input/output error")


_real_fsync = os.fsync


def _file_fsync_fails(fd):
    """The upload's own file cannot be made durable (its directory still can)."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        raise OSError(5, "Input/output error")
    _real_fsync(fd)


def _insert_fails(session, **fields):
    raise RuntimeError("the database went away")


def _constraint_fails(session, **fields):
    from sqlalchemy.exc import IntegrityError

    raise IntegrityError("INSERT INTO files ...", {}, Exception("FOREIGN KEY constraint failed"))


_FOREIGN_KEY = sqlite3.IntegrityError("FOREIGN KEY constraint failed")


class _FailingRawInsert:
    """SqliteUnits' INSERT of the file row (a new upload's rows go to sqlite3 directly), failing."""

    sql = "INSERT INTO files ..."

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def params(self, values):
        raise self.exc


@pytest.mark.parametrize(
    ("where", "failing", "also"),
    [
        # The disk fails while the file is committed (on SQLite in the thread that inserts the row:
        # the row waits for the file's fsyncs, and is rolled back).
        ("app.storage.local.fsync_dir", _disk_fails, ()),
        # The file's own fsync fails: it is started while the upload is checked, and the commit
        # must not take a second fsync's success for durability.
        ("os.fsync", _file_fsync_fails, ()),
        # The insert fails after the store wrote the file and its metadata.
        (
            "app.db.repo.add_file",
            _insert_fails,
            [("app.db.units.SqliteUnits.ADD_FILE", _FailingRawInsert(RuntimeError("the database went away")))],
        ),
        # A constraint other than the filename's fails the insert: no other upload won a race.
        (
            "app.db.repo.add_file",
            _constraint_fails,
            [("app.db.units.SqliteUnits.ADD_FILE", _FailingRawInsert(_FOREIGN_KEY))],
        ),
    ],
    ids=["fsync", "file-fsync", "insert", "constraint"],
)
def test_a_failed_commit_or_insert_stores_nothing_and_a_retry_succeeds(
    make_settings, tmp_path, data_dir, monkeypatch, where, failing, also
):
    """A server error, and no file, no metadata, no row: nothing refers to what was written, so
    it is removed. The same upload then succeeds."""
    whl = make_wheel(tmp_path, "failing", "1.0")
    with _client_answering_500(make_settings) as client:
        with monkeypatch.context() as patch:
            patch.setattr(where, failing)
            for target, value in also:
                patch.setattr(target, value)
            r = post(client, whl)
            assert r.status_code == 500, r.text
            assert stored_files(data_dir) == {} and rows(data_dir) == []
        r = post(client, whl)
        assert r.status_code == 200, r.text
    assert len(rows(data_dir)) == 1
    assert len(stored_files(data_dir)) == 1  # the wheel (its PEP 658 metadata is written on first request)


ISO_TEXT = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"  # SQLAlchemy's DateTime on SQLite


@pytest.mark.sqlite_only
def test_new_uploads_and_overwrites_store_the_same_kinds_of_values(make_client, tmp_path, data_dir):
    """On SQLite a new file's rows are inserted on sqlite3 directly (SqliteUnits._add_upload), an
    overwrite's through the ORM: every column must hold what the ORM writes and reads back (times
    as SQLAlchemy's ISO text, yanked as 0), and the project's serial is the upload's journal entry."""
    client = make_client(overwrite=True)
    for out, code in (("a", "x = 1\n"), ("b", "x = 2\n")):  # the second replaces the first
        (tmp_path / out).mkdir()
        whl = make_wheel(tmp_path / out, "kinds", "1.0", module_code=code)
        assert post(client, whl).status_code == 200
    assert post(client, make_wheel(tmp_path, "kinds", "2.0")).status_code == 200
    columns = [r[1] for r in dbaccess.query("PRAGMA table_info(files)", data_dir)]
    typed = ", ".join(f"typeof({c})" for c in columns)
    (replaced, new) = dbaccess.query(f"SELECT {typed} FROM files ORDER BY version", data_dir)
    assert replaced == new
    for table, column in (("files", "upload_time"), ("events", "time"), ("projects", "created")):
        values = [r[0] for r in dbaccess.query(f"SELECT {column} FROM {table}", data_dir)]
        assert values and all(re.fullmatch(ISO_TEXT, v) for v in values), (table, values)
    assert dbaccess.query("SELECT yanked, yanked_reason FROM files", data_dir) == [(0, None), (0, None)]
    ((serial, last),) = dbaccess.query("SELECT serial, (SELECT max(id) FROM events) FROM projects", data_dir)
    assert serial == last
    page = client.get("/simple/kinds/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert len(page["files"]) == 2 and all(re.fullmatch(r"[\d-]+T[\d:.]+Z", f["upload-time"]) for f in page["files"])


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.sqlite_only  # the files' modes, not the database's
@pytest.mark.parametrize("where", ["files", "package-folder"])
def test_stored_files_are_readable_as_the_umask_allows(make_client, tmp_path, where):
    """0666 less the umask, as pypiserver's files and any program's: a front server sending them
    (X-Accel-Redirect) or pypiserver run by another user reads them. They were 0600."""
    folder = tmp_path / where
    folder.mkdir()
    client = make_client(**({"files_dir": folder} if where == "files" else {"packages_dir": folder}))
    dists = tmp_path / "dists"
    dists.mkdir()
    wheels = [
        make_wheel(dists, "modes", "1.0"),
        make_wheel(dists, "modes", "1.1", filename=f"modes-1.1-{'p' * 200}-none-any.whl"),
    ]
    for wheel in wheels:  # staged in place, and (a name over 200 characters) in the temporary folder
        assert post(client, wheel).status_code == 200
        assert client.get(f"/files/modes/{wheel.name}.metadata").status_code == 200  # written on demand
    expected = 0o666 & ~_umask()
    stored = [p for p in folder.rglob("*") if p.is_file() and ".packhouse/packhouse.db" not in p.as_posix()]
    stored = [p for p in stored if not is_spare_part(p.name) and not p.name.startswith("packhouse.db")]
    for suffix in [w.name for w in wheels] + [f"{w.name}.metadata" for w in wheels]:
        assert any(p.name.endswith(suffix) for p in stored), (suffix, stored)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in stored} == {p.name: oct(expected) for p in stored}
