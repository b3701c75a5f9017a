"""``packhouse backup DEST`` while the server runs: DEST is a data folder that a second server serves
as the index was (pip installs from it, `packhouse check` finds nothing wrong); run again, it copies
only what is new and drops what was deleted; uploads during the backup never leave a row without its
file; a damaged file is reported, and the rest backed up; and every refusal says why."""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import run, tool
from tests.support.builders import make_sdist, make_wheel
from tests.support.cli import packhouse
from tests.support.forms import upload_form

# The command copies SQLite's file (and refuses PostgreSQL, tested below without a server).
pytestmark = [pytest.mark.e2e, pytest.mark.sqlite_only]

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def upload(server, path: Path) -> None:
    data, files = upload_form(path)
    r = httpx.post(f"{server.url}/legacy/", data=data, files=files, timeout=60)
    assert r.status_code == 200, r.text


def page(server, project: str) -> list[dict]:
    r = httpx.get(f"{server.url}/simple/{project}/", headers=JSON)
    assert r.status_code == 200, r.text
    return r.json()["files"]


def backup(data: Path, dest: Path, *extra: str, env: dict[str, str] | None = None):  # noqa: ANN201 - CompletedProcess
    return packhouse(["backup", str(dest), "--data-dir", str(data), *extra], env=env)


def check(data: Path):  # noqa: ANN201
    return packhouse(["check", "--data-dir", str(data)])


def stored(data: Path, filename: str) -> Path:
    """Where the local store keeps ``filename`` (under a key made of its hash and its name)."""
    (found,) = (data / "files").rglob(f"*{filename}")
    return found


@pytest.fixture
def dists(tmp_path: Path) -> dict[str, Path]:
    out = tmp_path / "dists"
    out.mkdir()
    return {
        "1.0": make_wheel(out, "team-lib", "1.0"),
        "1.1": make_wheel(out, "team-lib", "1.1"),
        "1.1-sdist": make_sdist(out, "team-lib", "1.1"),
        "1.2": make_wheel(out, "team-lib", "1.2"),
        "other": make_wheel(out, "other-tool", "0.1"),
    }


def test_a_backup_taken_while_the_server_runs_is_an_index_of_its_own(live_server, tmp_path, dists, client_env):
    data, dest = tmp_path / "data", tmp_path / "backups" / "index"
    server = live_server()
    for name in ("1.0", "1.1", "1.1-sdist", "other"):
        upload(server, dists[name])
    assert packhouse(["yank", "team-lib", "1.0", "--reason", "broken", "--data-dir", str(data)]).returncode == 0
    done = backup(data, dest)
    assert done.returncode == 0, done.stderr
    assert "backed up 2 project(s), 4 file(s)" in done.stdout and "4 copied" in done.stdout, done.stdout
    assert "0 already there, 0 removed" in done.stdout
    assert sorted(p.name for p in dest.iterdir()) == [".backup.lock", "files", "packhouse.db"]

    restored = live_server(data_dir=dest)
    assert page(restored, "team-lib") == page(server, "team-lib")  # names, hashes, yank, metadata, times
    assert page(restored, "other-tool") == page(server, "other-tool")
    target = tmp_path / "installed"
    run([tool("pip"), "download", "--no-deps", "-d", str(target), "--index-url", restored.url + "/simple/",
         "team-lib"], client_env)  # fmt: skip
    (got,) = target.iterdir()
    assert got.name == dists["1.1"].name and got.read_bytes() == dists["1.1"].read_bytes()
    metadata = httpx.get(f"{restored.url}/files/team-lib/{dists['1.1'].name}.metadata")
    assert metadata.status_code == 200 and b"Name: team-lib" in metadata.content
    assert check(dest).returncode == 0


def test_a_second_backup_copies_only_what_is_new_and_drops_what_was_deleted(live_server, tmp_path, dists):
    data, dest = tmp_path / "data", tmp_path / "backup"
    server = live_server()
    upload(server, dists["1.0"])
    upload(server, dists["1.1"])
    assert backup(data, dest).returncode == 0
    kept = stored(dest, dists["1.0"].name)
    kept_inode = kept.stat().st_ino

    upload(server, dists["1.2"])
    assert packhouse(["delete", "team-lib", "1.1", "--data-dir", str(data)]).returncode == 0
    again = backup(data, dest)
    assert again.returncode == 0, again.stderr
    assert "2 file(s)" in again.stdout and "1 copied" in again.stdout, again.stdout
    assert "1 already there, 1 removed" in again.stdout, again.stdout
    assert kept.stat().st_ino == kept_inode  # not copied again
    assert not list((dest / "files").rglob(f"*{dists['1.1'].name}*"))  # nor its metadata file
    restored = live_server(data_dir=dest)
    assert [f["filename"] for f in page(restored, "team-lib")] == [dists["1.0"].name, dists["1.2"].name]
    assert check(dest).returncode == 0


def test_uploads_during_the_backup_never_leave_a_row_without_its_file(live_server, tmp_path):
    """The database is copied first, then the files its rows name: whatever the uploads did
    meanwhile, every row of each backup has its file, and nothing else is there."""
    data, dest = tmp_path / "data", tmp_path / "backup"
    server = live_server()
    out = tmp_path / "many"
    out.mkdir()
    wheels = [make_wheel(out, "busy-lib", f"1.{i}", module_code="x = '" + "y" * 20_000 + f"{i}'\n") for i in range(40)]
    uploading = threading.Thread(target=lambda: [upload(server, w) for w in wheels])
    uploading.start()
    counts = []
    try:
        while uploading.is_alive() or not counts:
            done = backup(data, dest)
            assert done.returncode == 0, done.stdout + done.stderr
            counts.append(int(done.stdout.split(" file(s)")[0].rsplit(" ", 1)[1]))
            checked = check(dest)
            assert checked.returncode == 0, checked.stdout
    finally:
        uploading.join()
    assert backup(data, dest).returncode == 0
    assert "checked 40 file(s)" in check(dest).stdout
    assert counts == sorted(counts)


def test_a_damaged_file_is_reported_and_the_rest_backed_up(live_server, tmp_path, dists):
    data, dest = tmp_path / "data", tmp_path / "backup"
    server = live_server()
    upload(server, dists["1.0"])
    upload(server, dists["1.1"])
    damaged = stored(data, dists["1.0"].name)
    damaged.write_bytes(b"\0" * damaged.stat().st_size)  # bit rot: same size, other bytes
    done = backup(data, dest)
    assert done.returncode == 1
    assert f"PROBLEM {dists['1.0'].name}: its stored bytes do not have the sha256 of its row" in done.stdout
    assert "1 copied" in done.stdout and "1 file(s) could not be backed up" in done.stderr
    assert not list((dest / "files").rglob(f"*{dists['1.0'].name}*"))  # nothing damaged is placed
    assert stored(dest, dists["1.1"].name).read_bytes() == dists["1.1"].read_bytes()


def test_verify_reads_the_backup_back_and_mends_it(live_server, tmp_path, dists):
    data, dest = tmp_path / "data", tmp_path / "backup"
    server = live_server()
    upload(server, dists["1.1"])
    assert backup(data, dest).returncode == 0
    copy = stored(dest, dists["1.1"].name)
    copy.write_bytes(b"\0" * copy.stat().st_size)
    plain = backup(data, dest)
    assert "0 copied" in plain.stdout and "1 already there" in plain.stdout  # same size: trusted
    verified = backup(data, dest, "--verify")
    assert verified.returncode == 0 and "1 copied" in verified.stdout, verified.stdout
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == hashlib.sha256(dists["1.1"].read_bytes()).hexdigest()


def test_a_wal_left_by_a_server_that_ran_on_the_backup_is_not_replayed_into_the_next(live_server, tmp_path, dists):
    data, dest = tmp_path / "data", tmp_path / "backup"
    server = live_server()
    upload(server, dists["1.0"])
    assert backup(data, dest).returncode == 0
    (dest / "packhouse.db-wal").write_bytes(os.urandom(4096))  # some other database's log
    upload(server, dists["1.1"])
    assert backup(data, dest).returncode == 0
    assert not (dest / "packhouse.db-wal").exists()
    assert check(dest).returncode == 0
    restored = live_server(data_dir=dest)
    assert len(page(restored, "team-lib")) == 2


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("inside", "overlaps the server's own folder"),
        ("parent", "overlaps the server's own folder"),
        ("foreign", "holds other things (notes.txt): give a new or empty folder, or a previous backup"),
        ("file", "is not a folder"),
        ("no-index", "no index at"),
        ("postgresql", "back up PostgreSQL with pg_dump"),
        ("extra-folders", "'packhouse backup' copies one package folder"),
        ("data-into-package-backup", "holds other things (.packhouse, team_lib-1.0-py3-none-any.whl)"),
        ("busy", "another 'packhouse backup' into"),
    ],
)
def test_refusals_say_why_and_touch_nothing(live_server, tmp_path, dists, case, expected):
    data = tmp_path / "data"
    server = live_server()
    upload(server, dists["1.0"])
    dest, extra, env = tmp_path / "backup", [], None
    if case == "inside":
        dest = data / "backup"
    elif case == "parent":
        dest = tmp_path
    elif case == "foreign":
        dest.mkdir()
        (dest / "notes.txt").write_text("mine")
    elif case == "file":
        dest.write_text("a file")
    elif case == "no-index":
        data = tmp_path / "elsewhere"
    elif case == "postgresql":
        extra = ["--database-url", "postgresql+asyncpg://packhouse@127.0.0.1:1/packhouse"]
    elif case == "extra-folders":  # `packhouse run DIR1 DIR2` sets it
        extra, env = ["--packages-dir", str(tmp_path / "packages")], {"PACKHOUSE_EXTRA_PACKAGES_DIRS": str(tmp_path)}
    elif case == "data-into-package-backup":  # a package folder's backup is not a data folder's
        (dest / ".packhouse").mkdir(parents=True)
        (dest / ".packhouse" / "packhouse.db").write_bytes(b"")
        (dest / dists["1.0"].name).write_bytes(dists["1.0"].read_bytes())
    before = sorted(str(p) for p in tmp_path.rglob("*") if "server-home" not in p.parts)
    if case == "busy":
        dest.mkdir()
        fd = os.open(dest / ".backup.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        before = sorted(str(p) for p in tmp_path.rglob("*") if "server-home" not in p.parts)
        try:
            done = backup(data, dest, *extra)
        finally:
            os.close(fd)
    else:
        done = backup(data, dest, *extra, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("packhouse: error: ")
    after = sorted(str(p) for p in tmp_path.rglob("*") if "server-home" not in p.parts)
    assert after == before


def test_a_row_whose_key_would_leave_the_backup_is_reported_not_followed(live_server, tmp_path, dists):
    """The storage keys come from the database; one that climbs out of DEST (a tampered row) is
    named as a problem, and nothing is written outside DEST."""
    from sqlalchemy import text

    from tests.support.dbaccess import transaction

    data, dest = tmp_path / "data", tmp_path / "backup"
    server = live_server()
    upload(server, dists["1.0"])
    upload(server, dists["1.1"])
    name = dists["1.0"].name
    transaction(
        data, lambda c: c.execute(text(f"UPDATE files SET storage_key = '../../{name}' WHERE filename = '{name}'"))
    )
    done = backup(data, dest)
    assert done.returncode == 1
    assert f"PROBLEM {name}: invalid storage key '../../{name}'" in done.stdout, done.stdout
    assert not list(tmp_path.glob(f"*{name}*")) and not (tmp_path.parent / name).exists()
    assert stored(dest, dists["1.1"].name).read_bytes() == dists["1.1"].read_bytes()


def test_files_in_s3_are_backed_up_into_a_data_folder(live_server, tmp_path, dists, s3):
    """SQLite with the files in a bucket: the backup reads them through the server's storage (with
    the wheel's metadata object S3 gets at upload), and DEST serves them from a local folder."""
    data, dest = tmp_path / "data", tmp_path / "backup"
    server = live_server(env=s3.env)
    upload(server, dists["1.1"])
    upload(server, dists["1.1-sdist"])
    done = backup(data, dest, env=s3.env)
    assert done.returncode == 0 and "2 copied" in done.stdout, done.stdout + done.stderr
    assert stored(dest, dists["1.1"].name).read_bytes() == dists["1.1"].read_bytes()
    assert list((dest / "files").rglob(f"*{dists['1.1'].name}.metadata"))  # stored with the upload
    restored = live_server(data_dir=dest)
    assert page(restored, "team-lib") == page(server, "team-lib")
    wheel = httpx.get(f"{restored.url}/files/team-lib/{dists['1.1'].name}")
    assert wheel.content == dists["1.1"].read_bytes()
