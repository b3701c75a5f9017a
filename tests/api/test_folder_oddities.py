"""What else lies in a package folder (``packhouse run DIR``), found by fuzzing: entries named like
distributions that are not regular files (a FIFO, a symlink loop, a dangling symlink), a subfolder
whose name is not UTF-8, symlinked files, a package folder given before and not any more. Each
is skipped with a reason or answered 404/409; the server starts, rescans, and never deletes or
replaces a file it was not given."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, clean_env
from tests.support.builders import make_wheel
from tests.support.forms import upload_form

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
OLD = time.time() - 3600  # older than the rescan's settle time


def _old(path: Path) -> Path:
    os.utime(path, (OLD, OLD), follow_symlinks=False)
    return path


@pytest.mark.sqlite_only  # the folder's handling, not the database's
def test_entries_named_like_distributions_that_are_not_files_are_skipped_and_the_server_starts(live_server, tmp_path):
    packages, scratch = tmp_path / "packages", tmp_path / "scratch"
    packages.mkdir()
    scratch.mkdir()
    good = _old(make_wheel(packages, "good", "1.0"))
    os.mkfifo(packages / "fifo-1.0-py3-none-any.whl")  # reading it would block the scan for good
    (packages / "loop-1.0-py3-none-any.whl").symlink_to("loop-1.0-py3-none-any.whl")
    (packages / "dangling-1.0-py3-none-any.whl").symlink_to("missing-1.0-py3-none-any.whl")
    latin1 = os.fsencode(packages) + b"/caf\xe9"  # a folder named on a Latin-1 system
    os.mkdir(latin1)
    _old(make_wheel(Path(os.fsdecode(latin1)), "latin", "1.0"))
    server = live_server("--packages-dir", str(packages), "--rescan-interval", "0.2", "--authenticate", ".")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/simple/good/").status_code == 200
        for project in ("fifo", "loop", "dangling", "latin"):
            assert http.get(f"/simple/{project}/").status_code == 404, project
        log = server.log_path.read_text()
        for name, why in [
            ("fifo-1.0-py3-none-any.whl", "not a regular file"),
            ("loop-1.0-py3-none-any.whl", "a symlink loop"),
            ("dangling-1.0-py3-none-any.whl", "a symlink to a file that does not exist"),
            ("latin-1.0-py3-none-any.whl", "not valid UTF-8"),
        ]:
            assert any(name in line and why in line for line in log.splitlines()), (name, log)
        # An indexed file replaced by a symlink loop: a 404, and the rescans go on.
        url = http.get("/simple/good/", headers=JSON).json()["files"][0]["url"]
        good.unlink()
        good.symlink_to(good.name)
        assert http.get(httpx.URL(f"{server.url}/simple/good/").join(url)).status_code == 404
        data, files = upload_form(make_wheel(scratch, "later", "1.0"))
        assert http.post("/legacy/", data=data, files=files).status_code == 200
        _old(make_wheel(packages, "dropped", "1.0"))  # copied in by hand: found by a rescan
        deadline = time.monotonic() + 15
        while http.get("/simple/dropped/").status_code != 200:
            assert time.monotonic() < deadline, server.log_path.read_text()
            time.sleep(0.1)
    assert "Traceback" not in server.log_path.read_text()


def test_remove_pkg_of_a_symlinked_file_removes_the_link_not_its_target(make_client, tmp_path):
    packages = tmp_path / "packages"
    inside = packages / "sub"
    inside.mkdir(parents=True)
    real = make_wheel(inside, "insider", "1.0")
    (packages / real.name).symlink_to(f"sub/{real.name}")  # listed first: the link is the indexed file
    content = real.read_bytes()
    client = make_client(packages_dir=packages, rescan_interval=0)
    assert client.get("/simple/insider/").status_code == 200
    r = client.post("/", data={":action": "remove_pkg", "name": "insider", "version": "1.0"})
    assert r.status_code == 200, r.text
    assert not (packages / real.name).is_symlink() and not (packages / real.name).exists()
    assert real.read_bytes() == content  # the file the link pointed to is untouched


def test_import_into_a_package_folder_never_replaces_a_file_there(tmp_path, database_url_for):
    source, packages = tmp_path / "wheelhouse", tmp_path / "packages"
    source.mkdir()
    packages.mkdir()
    there = make_wheel(packages, "same", "1.0", summary="the folder's own")  # not indexed yet
    original = there.read_bytes()
    make_wheel(source, "same", "1.0", summary="another build")
    make_wheel(source, "other", "1.0")
    env = clean_env(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-m", "app", "import", str(source), "--packages-dir", str(packages), "-q"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert there.read_bytes() == original
    assert "imported 1 file(s); 1 already in the index" in proc.stderr, proc.stderr
    assert "a file of that name is already in the package folder" in proc.stderr, proc.stderr


def test_a_package_folder_no_longer_given_drops_its_files_and_the_server_starts(make_client, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    make_wheel(first, "one", "1.0")
    make_wheel(second, "two", "1.0")
    both = make_client(packages_dir=first, extra_packages_dirs=str(second), rescan_interval=0)
    assert both.get("/simple/two/").status_code == 200
    only = make_client(packages_dir=first, rescan_interval=0)  # pypiserver started with one folder
    assert only.get("/simple/one/").status_code == 200
    assert only.get("/simple/two/").status_code == 404
    assert (second / "two-1.0-py3-none-any.whl").exists()  # forgotten, not deleted


@pytest.mark.parametrize("target", ["/nonexistent/elsewhere.whl", "../outside-1.0-py3-none-any.whl"])
def test_an_upload_whose_name_a_symlink_holds_is_409(make_client, tmp_path, target):
    packages, scratch = tmp_path / "packages", tmp_path / "scratch"
    packages.mkdir()
    scratch.mkdir()
    (tmp_path / "outside-1.0-py3-none-any.whl").write_bytes(b"not ours")
    wheel = make_wheel(scratch, "held", "1.0")
    (packages / wheel.name).symlink_to(target)
    client = make_client(packages_dir=packages, rescan_interval=0)
    data, files = upload_form(wheel)
    r = client.post("/legacy/", data=data, files=files)
    assert r.status_code == 409, r.text
    assert "already" in r.json()["detail"]
    assert (packages / wheel.name).is_symlink() and os.readlink(packages / wheel.name) == target
    assert (tmp_path / "outside-1.0-py3-none-any.whl").read_bytes() == b"not ours"


def test_metadata_files_in_the_way_are_replaced_never_written_through(make_client, tmp_path):
    """What lies where the scan writes a wheel's PEP 658 metadata file (``.packhouse/metadata/``,
    left by an earlier install or put there by hand): a symlink out of the folder, a symlink to
    another file of the folder, a symlink loop, a FIFO. Each is replaced; no file they lead to
    changes, the scan does not block, and every wheel is indexed with its metadata served."""
    packages = tmp_path / "packages"
    metadata = packages / ".packhouse" / "metadata"
    metadata.mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not Packhouse's")
    other = make_wheel(packages, "other", "1.0")
    kept = other.read_bytes()
    wheels = {name: make_wheel(packages, name, "1.0") for name in ("out", "inside", "loop", "fifo")}
    (metadata / f"{wheels['out'].name}.metadata").symlink_to(outside)
    (metadata / f"{wheels['inside'].name}.metadata").symlink_to(other)
    (metadata / f"{wheels['loop'].name}.metadata").symlink_to(f"{wheels['loop'].name}.metadata")
    os.mkfifo(metadata / f"{wheels['fifo'].name}.metadata")
    client = make_client(packages_dir=packages, rescan_interval=0)
    for name, wheel in wheels.items():
        sidecar = metadata / f"{wheel.name}.metadata"
        assert not sidecar.is_symlink() and sidecar.is_file(), name
        assert sidecar.read_bytes().startswith(b"Metadata-Version") and f"Name: {name}".encode() in sidecar.read_bytes()
        r = client.get(f"/files/{name}/{wheel.name}.metadata")
        assert r.status_code == 200 and r.content == sidecar.read_bytes(), name
    assert outside.read_bytes() == b"not Packhouse's"
    assert other.read_bytes() == kept
    assert client.get("/simple/other/").status_code == 200


def test_a_metadata_file_rebuilt_over_a_symlink_replaces_the_link_not_its_target(make_client, tmp_path):
    """A wheel's metadata file replaced by hand with a symlink to another wheel of the folder: the
    first GET finds bytes that are not the row's, rebuilds them from the wheel and stores them
    back, replacing the link. The other wheel is left as it was (it was overwritten before)."""
    packages = tmp_path / "packages"
    packages.mkdir()
    wheel, other = make_wheel(packages, "linked", "1.0"), make_wheel(packages, "victim", "1.0")
    kept = other.read_bytes()
    client = make_client(packages_dir=packages, rescan_interval=0)
    sidecar = packages / ".packhouse" / "metadata" / f"{wheel.name}.metadata"
    served = sidecar.read_bytes()
    sidecar.unlink()
    sidecar.symlink_to(other)
    r = client.get(f"/files/linked/{wheel.name}.metadata")
    assert r.status_code == 200 and r.content == served
    assert other.read_bytes() == kept
    assert not sidecar.is_symlink() and sidecar.read_bytes() == served
