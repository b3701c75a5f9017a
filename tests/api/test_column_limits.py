"""Values longer than their column: the same answer on SQLite (which ignores VARCHAR lengths) and
PostgreSQL (which refuses them, a 500 before): a 400 or 403 that says what to change for an upload,
a skipped and reported file or a dropped informational value for a package folder or an import."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.auth.htpasswd import hash_password
from tests.conftest import ROOT, basic, clean_env
from tests.support.builders import make_sdist, make_wheel, metadata_text
from tests.support.forms import upload_form
from tests.support.integrity import fingerprint

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
LONG_VERSION = "1.0+" + "local" * 22  # 114 characters, a valid PEP 440 version; the column holds 100
LONG_NAME = "n" * 201  # the column holds 200; its wheel's filename (222 characters) is valid
LONG_DCT = "text/markdown; charset=UTF-8; variant=GFM; x-note=" + "y" * 220  # valid, 270 characters
LONG_REQUIRES_PYTHON = ">=3.8, " + ", ".join(f"!=3.8.{i}" for i in range(40))  # valid, 365 characters
LONG_TAG = ".".join(f"cp3{i}" for i in range(10, 30)) + ".py3"  # a valid compressed tag set, 103 characters


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, Path]:
    """(the server's data folder, a scratch folder for building distributions)."""
    (tmp_path / "data").mkdir(exist_ok=True)
    scratch = tmp_path / "build"
    scratch.mkdir()
    return tmp_path, scratch


def _rejected(client, root: Path, path: Path, status: int = 400, headers: dict | None = None, **form) -> str:
    before = fingerprint(root)
    data, files = upload_form(path, **form)
    r = client.post("/legacy/", data=data, files=files, headers=headers or {})
    assert r.status_code == status, r.text
    assert fingerprint(root) == before  # no file, no row
    return str(r.json()["detail"])


# Uploads ----------------------------------------------------------------------------------------


def test_an_upload_with_a_version_too_long_to_store_is_refused(client, folder):
    root, scratch = folder
    for path in (make_wheel(scratch, "demo", LONG_VERSION), make_sdist(scratch, "demo", LONG_VERSION)):
        detail = _rejected(client, root, path)
        assert "version" in detail and "114 characters" in detail and "100" in detail, detail
        assert "local" in detail  # what to shorten


def test_an_upload_to_a_package_folder_with_a_version_too_long_to_store_leaves_no_file(make_client, tmp_path):
    """pypiserver mode stores an upload under its own name in the folder: nothing is put there."""
    packages, scratch = tmp_path / "packages", tmp_path / "build"
    scratch.mkdir()
    client = make_client(packages_dir=packages, data_dir=packages / ".packhouse")
    data, files = upload_form(make_wheel(scratch, "demo", LONG_VERSION))
    r = client.post("/legacy/", data=data, files=files)
    assert r.status_code == 400 and "its version is 114 characters long" in r.json()["detail"], r.text
    assert [p.name for p in packages.iterdir() if not p.name.startswith(".")] == []
    assert client.get("/simple/demo/").status_code == 404


def test_an_upload_with_a_project_name_too_long_to_store_is_refused(client, folder):
    root, scratch = folder
    detail = _rejected(client, root, make_wheel(scratch, LONG_NAME, "1.0"))
    assert "its project name is 201 characters long, and this index stores at most 200" in detail, detail
    assert "choose a shorter project name" in detail


def test_an_upload_whose_metadata_spells_the_name_too_long_is_refused(client, folder):
    """Runs of separators normalise away: the filename says a-b, the metadata a.....b."""
    root, scratch = folder
    spelled = "a" + "." * 250 + "b"
    wheel = make_wheel(scratch, "a-b", "1.0", metadata=metadata_text(spelled, "1.0"))
    detail = _rejected(client, root, wheel)
    assert "Name spells it is 252 characters long, and this index stores at most 200" in detail, detail
    assert "without runs of '.', '-' or '_'" in detail


def test_an_upload_with_a_description_content_type_too_long_to_store_is_refused(client, folder):
    root, scratch = folder
    text = metadata_text("demo", "1.0").replace("text/markdown", LONG_DCT)
    wheel, sdist = make_wheel(scratch, "demo", "1.0", metadata=text), make_sdist(scratch, "demo", "1.0", metadata=text)
    for path in (wheel, sdist):
        detail = _rejected(client, root, path)
        assert "Description-Content-Type" in detail and f"{len(LONG_DCT)} characters" in detail, detail
        assert "255" in detail and "readme" in detail


def test_an_upload_with_a_requires_python_too_long_to_store_is_refused(client, folder):
    root, scratch = folder
    detail = _rejected(client, root, make_wheel(scratch, "demo", "1.0", requires_python=LONG_REQUIRES_PYTHON))
    assert "Requires-Python" in detail and f"{len(LONG_REQUIRES_PYTHON)} characters" in detail, detail
    assert "255" in detail and "requires-python" in detail


def test_an_over_long_pyversion_field_is_replaced_by_what_the_filename_says(client, folder, db_query):
    """pyversion is informational (nothing reads it back) and the uploading tool, not the author,
    writes it: an over-long one is replaced by the file's own Python tag (what twine sends)."""
    _root, scratch = folder
    wheel, sdist = make_wheel(scratch, "demo", "1.0"), make_sdist(scratch, "demo", "1.0")
    for path in (wheel, sdist):
        data, files = upload_form(path, pyversion="p" * 51)
        assert client.post("/legacy/", data=data, files=files).status_code == 200
    assert sorted(db_query("SELECT filename, pyversion FROM files")) == [(wheel.name, "py3"), (sdist.name, "source")]


def test_a_wheel_whose_python_tag_set_is_too_long_to_store_is_accepted_without_it(client, folder, db_query):
    _root, scratch = folder
    wheel = make_wheel(scratch, "demo", "1.0", tag=f"{LONG_TAG}-none-any")
    data, files = upload_form(wheel, pyversion=LONG_TAG)  # what twine sends: the filename's tag
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    assert db_query("SELECT filename, pyversion FROM files") == [(wheel.name, None)]
    assert client.get(f"/files/demo/{wheel.name}").content == wheel.read_bytes()


# User names, recorded as the uploader and as the journal's actor ---------------------------------

LONG_USER = "u" * 201


@pytest.fixture
def long_user(tmp_path: Path) -> Path:
    passwords = tmp_path / "htpasswd"
    passwords.write_text(f"{LONG_USER}:{hash_password('pw')}\nshort:{hash_password('pw')}\n")
    return passwords


def test_an_htpasswd_user_whose_name_is_too_long_to_record_cannot_upload(make_client, long_user, folder):
    root, scratch = folder
    client = make_client(passwords=str(long_user))
    wheel = make_wheel(scratch, "demo", "1.0")
    detail = _rejected(client, root, wheel, 403, basic(LONG_USER, "pw"))
    assert "201 characters" in detail and "200" in detail and "packhouse user add" in detail, detail
    data, files = upload_form(wheel)
    assert client.post("/legacy/", data=data, files=files, headers=basic("short", "pw")).status_code == 200
    assert client.get("/simple/demo/", headers=basic(LONG_USER, "pw")).status_code == 200  # reading is fine
    before = fingerprint(root)
    r = client.post("/api/projects/demo/releases/1.0/yank", headers=basic(LONG_USER, "pw"))
    assert r.status_code == 403 and "201 characters" in r.json()["detail"]
    r = client.delete("/api/projects/demo/releases/1.0", headers=basic(LONG_USER, "pw"))
    assert r.status_code == 403
    assert fingerprint(root) == before


def test_on_an_open_server_a_claimed_user_name_too_long_to_record_is_refused(make_client, folder):
    root, scratch = folder
    client = make_client(passwords=".", authenticate=".")
    detail = _rejected(client, root, make_wheel(scratch, "demo", "1.0"), 403, basic(LONG_USER, "x"))
    assert "201 characters" in detail, detail


def test_on_an_open_server_a_claimed_user_name_with_a_nul_is_refused(make_client, folder):
    root, scratch = folder
    client = make_client(passwords=".", authenticate=".")
    detail = _rejected(client, root, make_wheel(scratch, "demo", "1.0"), 403, basic("bad\x00name", "x"))
    assert "NUL" in detail, detail


# Package folders, imports -----------------------------------------------------------------------


def _folder_with_problems(packages: Path) -> dict[str, str]:
    """Files whose required values do not fit: filename -> what the report says about it."""
    packages.mkdir(exist_ok=True)
    return {
        make_wheel(packages, "demo", LONG_VERSION).name: "its version is 114 characters long",
        make_sdist(packages, LONG_NAME, "1.0").name: "its project name is 201 characters long",
    }


def _deep_wheel(packages: Path) -> Path:
    """A wheel whose path in the folder (548 characters) is longer than a storage key (512)."""
    deep = packages / ("d" * 200) / ("e" * 200) / ("f" * 120)
    deep.mkdir(parents=True)
    return make_wheel(deep, "deep", "1.0")


def _folder_with_long_informational_values(packages: Path) -> dict[str, Path]:
    packages.mkdir(exist_ok=True)
    mv = metadata_text("mv", "1.0").replace("Metadata-Version: 2.1", "Metadata-Version: 2.1-" + "x" * 20)
    dct = metadata_text("dct", "1.0").replace("text/markdown", LONG_DCT)
    return {
        "mv": make_wheel(packages, "mv", "1.0", metadata=mv),
        "dct": make_sdist(packages, "dct", "1.0", metadata=dct),
        "reqpy": make_wheel(packages, "reqpy", "1.0", requires_python=LONG_REQUIRES_PYTHON),
        "tags": make_wheel(packages, "tags", "1.0", tag=f"{LONG_TAG}-none-any"),
        "a-b": make_wheel(packages, "a-b", "1.0", metadata=metadata_text("a" + "." * 250 + "b", "1.0")),
    }


def _check_informational_values_dropped(client, db_query, files: dict[str, Path], data_dir: Path) -> None:
    for project, path in files.items():
        (entry,) = client.get(f"/simple/{project}/", headers=JSON).json()["files"]
        assert entry["filename"] == path.name and "requires-python" not in entry
        assert client.get(f"/files/{project}/{path.name}").content == path.read_bytes()
    rows = db_query(
        "SELECT filename, metadata_version, description_content_type, requires_python, pyversion FROM files",
        data_dir,
    )
    assert {r[0]: r[1:] for r in rows if r[0] in {p.name for p in files.values()}} == {
        files["mv"].name: (None, "text/markdown", None, "py3"),
        files["dct"].name: ("2.1", None, None, "source"),
        files["reqpy"].name: ("2.1", "text/markdown", None, "py3"),
        files["tags"].name: ("2.1", "text/markdown", None, None),
        files["a-b"].name: ("2.1", "text/markdown", None, "py3"),
    }
    assert client.get("/api/projects/a-b").json()["name"] == "a-b"  # the normalised name, which fits


def test_a_package_folder_skips_files_that_cannot_be_indexed_and_drops_values_too_long_to_keep(
    make_client, tmp_path, caplog, db_query
):
    packages = tmp_path / "packages"
    skipped = _folder_with_problems(packages)
    skipped[_deep_wheel(packages).name] = "its storage key (in a package folder: its path there) is 548 characters"
    kept = _folder_with_long_informational_values(packages)
    make_wheel(packages, "good", "1.0")
    caplog.set_level(logging.WARNING, logger="packhouse")
    state = packages / ".packhouse"  # the SQLite database's folder; on PostgreSQL, its database's key
    client = make_client(packages_dir=packages, data_dir=state, rescan_interval=0.2)  # the start-up scan
    assert client.get("/simple/good/").status_code == 200
    for filename, why in skipped.items():
        (line,) = [m for m in caplog.messages if m.startswith("skipped") and filename in m]
        assert why in line, line
    assert client.get("/simple/demo/").status_code == 404 and client.get(f"/simple/{LONG_NAME}/").status_code == 404
    _check_informational_values_dropped(client, db_query, kept, state)
    for what in ("Metadata-Version", "Description-Content-Type", "Requires-Python"):
        assert f"{what} is" in caplog.text and "not kept" in caplog.text

    # A rescan meets a new file that cannot be indexed: reported once, and the rescans go on.
    caplog.clear()
    late = make_wheel(packages, "late", LONG_VERSION)
    later = make_wheel(packages, "good", "2.0")
    for path in (late, later):  # older than the rescan's settling time
        os.utime(path, (time.time() - 10, time.time() - 10))
    deadline = time.monotonic() + 15
    while client.get("/simple/good/", headers=JSON).json()["versions"] != ["1.0", "2.0"]:
        assert time.monotonic() < deadline, "the rescan never indexed good 2.0"
        time.sleep(0.1)
    time.sleep(0.5)  # a few more rescans
    assert caplog.text.count(f"skipped {late.name}") == 1, caplog.text
    assert "rescan of" not in caplog.text and "Traceback" not in caplog.text


def test_import_skips_files_that_cannot_be_indexed_and_drops_values_too_long_to_keep(
    make_client, tmp_path, database_url_for, db_query
):
    source = tmp_path / "wheelhouse"
    skipped = _folder_with_problems(source)
    kept = _folder_with_long_informational_values(source)
    deep = _deep_wheel(source)  # copied into the store under a key of its own: imported
    data_dir = tmp_path / "data"
    url = database_url_for(data_dir)
    env = clean_env(tmp_path / "home", {"PACKHOUSE_DATABASE_URL": url} if url else None)
    proc = subprocess.run(
        [sys.executable, "-m", "app", "import", str(source), "--data-dir", str(data_dir), "-q"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"imported {len(kept) + 1} file(s)" in proc.stderr and f"{len(skipped)} broken" in proc.stderr, proc.stderr
    for filename, why in skipped.items():
        (line,) = [line for line in proc.stderr.splitlines() if line.startswith("  skipped") and filename in line]
        assert why in line, line
    client = make_client(data_dir=data_dir)
    _check_informational_values_dropped(client, db_query, kept, data_dir)
    assert client.get(f"/files/deep/{deep.name}").content == deep.read_bytes()
