"""A full disk under the files: an upload is answered 507 Insufficient Storage with a message the
uploader can pass on, nothing of it is kept, and the server goes on serving and storing once there
is room. The files folder is a small tmpfs (mounting one needs root, as on the CI machine)."""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.builders import make_wheel
from tests.support.forms import upload_form

SIZE = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _stored(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in path.rglob("*") if p.is_file() and p.stat().st_size}


@pytest.mark.sqlite_only  # the files, not the database, are on the small disk
def test_an_upload_that_fills_the_disk_is_507_and_leaves_nothing(small_disk: Path, live_server, tmp_path: Path):
    server = live_server("--files-dir", str(small_disk))
    dists = tmp_path / "dists"
    dists.mkdir()
    payload = random.Random(7).randbytes(SIZE + 512 * 1024)  # incompressible: more than the disk holds
    big = make_wheel(dists, "bulky", "1.0", extra_files={"bulky/blob.bin": payload})
    small = make_wheel(dists, "tiny", "1.0")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        before, used = _stored(small_disk), _used(small_disk)
        data, files = upload_form(big)
        r = http.post("/legacy/", data=data, files=files)
        assert r.status_code == 507, r.text
        assert r.headers["content-type"] == "application/problem+json"
        detail = r.json()["detail"]
        assert "disk is full" in detail and "free space" in detail, detail
        assert _stored(small_disk) == before  # no partial file
        assert _used(small_disk) <= used + 64 * 1024
        assert http.get("/simple/bulky/").status_code == 404
        # The server goes on: a file that fits is stored and served.
        data, files = upload_form(small)
        assert http.post("/legacy/", data=data, files=files).status_code == 200
        got = http.get(f"/files/tiny/{small.name}")
        assert got.status_code == 200 and got.content == small.read_bytes()
    assert "Traceback" not in server.log_path.read_text()


@pytest.mark.sqlite_only  # SQLite's own file on the small disk
def test_an_upload_the_full_database_cannot_record_is_507_and_leaves_nothing(
    small_disk: Path, live_server, tmp_path: Path
):
    files = tmp_path / "files"
    server = live_server("--files-dir", str(files), data_dir=small_disk / "data")
    dists = tmp_path / "dists"
    dists.mkdir()
    readme = "".join(f"line {i} {random.Random(i).randbytes(40).hex()}\n" for i in range(30_000))  # ~3 MB
    wordy = make_wheel(dists, "wordy", "1.0", description=readme)
    small = make_wheel(dists, "tiny", "1.0")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        before = _stored(files)
        data, form_files = upload_form(wordy)
        r = http.post("/legacy/", data=data, files=form_files)
        assert r.status_code == 507, r.text
        detail = r.json()["detail"]
        assert "database is full" in detail and "free space" in detail, detail
        assert _stored(files) == before  # the stored wheel was removed with its row
        assert http.get("/simple/wordy/").status_code == 404
        data, form_files = upload_form(small)
        assert http.post("/legacy/", data=data, files=form_files).status_code == 200
        assert http.get(f"/files/tiny/{small.name}").content == small.read_bytes()


@pytest.mark.sqlite_only  # the package folder, not the database, is on the small disk
def test_a_package_folder_upload_whose_metadata_file_does_not_fit_leaves_nothing(
    small_disk: Path, live_server, tmp_path: Path
):
    """pypiserver's folder: the wheel is linked under its own name, then its PEP 658 file is
    written beside it, under .packhouse/. When only the wheel fits, neither is kept."""
    server = live_server("--packages-dir", str(small_disk), "--rescan-interval", "0")
    dists = tmp_path / "dists"
    dists.mkdir()
    wheel = make_wheel(dists, "snug", "1.0", extra_files={"snug/blob.bin": random.Random(3).randbytes(256 * 1024)})
    page = os.statvfs(small_disk).f_frsize
    free = os.statvfs(small_disk).f_bavail * page
    (small_disk / ".filler").write_bytes(b"\0" * (free - -(-wheel.stat().st_size // page) * page))
    before = _stored(small_disk)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        data, files = upload_form(wheel)
        r = http.post("/legacy/", data=data, files=files)
        assert r.status_code == 507, r.text
        assert _stored(small_disk) == before
        assert not (small_disk / wheel.name).exists()
        (small_disk / ".filler").unlink()
        data, files = upload_form(wheel)
        assert http.post("/legacy/", data=data, files=files).status_code == 200
        assert http.get(f"/packages/{wheel.name}").content == wheel.read_bytes()


@pytest.mark.sqlite_only  # the package folder, not the database, is on the small disk
def test_a_file_the_full_disk_kept_a_rescan_from_indexing_is_indexed_once_there_is_room(
    small_disk: Path, live_server, tmp_path: Path
):
    server = live_server("--packages-dir", str(small_disk), "--rescan-interval", "0.2")
    (tmp_path / "dists").mkdir()
    built = make_wheel(tmp_path / "dists", "dropped", "1.0")
    incoming = small_disk / ".incoming"  # hidden: not scanned
    incoming.write_bytes(built.read_bytes())
    os.utime(incoming, (1, 1))  # long settled
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / ".filler").write_bytes(b"\0" * free)  # no room for its PEP 658 metadata file
    incoming.rename(small_disk / built.name)  # copied in by hand, once the disk is full
    with httpx.Client(base_url=server.url, timeout=30) as http:
        deadline = time.monotonic() + 15
        while "could not be stored" not in server.log_path.read_text():
            assert time.monotonic() < deadline, server.log_path.read_text()
            time.sleep(0.1)
        assert http.get("/simple/dropped/").status_code == 404
        (small_disk / ".filler").unlink()
        while http.get("/simple/dropped/").status_code != 200:  # the next rescans try it again
            assert time.monotonic() < deadline + 15, server.log_path.read_text()
            time.sleep(0.1)
