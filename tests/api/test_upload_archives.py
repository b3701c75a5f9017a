"""Archives no reader can make sense of, and metadata the index cannot store.

Uploaded, each is a 400 with a clear message that changes nothing (no file, no row). Found in a
package folder (``packhouse run DIR``: at start and on every rescan; ``packhouse import``), each is
reported and skipped, and every other file is indexed. Also: version numbers too long for an int,
on every endpoint that takes a version, and a file part sent with only ``filename*=``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env
from tests.support import damage
from tests.support.builders import make_sdist, make_wheel, metadata_text, zip_bytes
from tests.support.forms import upload_form
from tests.support.integrity import fingerprint, multipart

PROBLEM = "application/problem+json"
BIG = "1." + "0" * 5000  # a release number longer than Python's 4300-digit int conversion limit
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def _wheel(folder: Path, name: str, version: str, **kw: object) -> tuple[Path, bytes]:
    path = make_wheel(folder, name, version, description="README line\n" * 300, **kw)  # type: ignore[arg-type]
    return path, path.read_bytes()


def _metadata_member(path: Path) -> str:
    return f"{path.name.split('-')[0]}-{path.name.split('-')[1]}.dist-info/METADATA"


def _zip_damage(how: Callable[[bytes, str], bytes]) -> Callable[[Path, str], tuple[str, bytes]]:
    def build(folder: Path, name: str) -> tuple[str, bytes]:
        path, data = _wheel(folder, name, "2.0")
        return path.name, how(data, _metadata_member(path))

    return build


def _tar_damage(how: Callable[[bytes], bytes]) -> Callable[[Path, str], tuple[str, bytes]]:
    def build(folder: Path, name: str) -> tuple[str, bytes]:
        path = make_sdist(folder, name, "2.0")
        return path.name, how(damage.targz_pkg_info_last(path.read_bytes()))

    return build


def _wrong_dist_info(folder: Path, name: str) -> tuple[str, bytes]:
    path, _ = _wheel(folder, name, "2.0")
    return path.name, zip_bytes({"zzz-9.dist-info/METADATA": metadata_text(name, "2.0").encode()})


def _metadata(text: str) -> Callable[[Path, str], tuple[str, bytes]]:
    def build(folder: Path, name: str) -> tuple[str, bytes]:
        path, _ = _wheel(folder, name, "2.0", metadata=text.format(name=name))
        return path.name, path.read_bytes()

    return build


def _long_filename(folder: Path, name: str) -> tuple[str, bytes]:
    """250 characters: a file system cannot hold its PEP 658 file, "<filename>.metadata" (found by
    fuzzing: a 500 that left the wheel stored; in a package folder, no rescan or start got past it)."""
    filename = f"{name}-2.0-py3-none-{'p' * (250 - len(name) - len('-2.0-py3-none-.whl'))}.whl"
    path, _ = _wheel(folder, name, "2.0", filename=filename)
    assert len(path.name) == 250
    return path.name, path.read_bytes()


HEAD = "Metadata-Version: 2.1\nName: {name}\nVersion: 2.0\n"
#: how -> (builder(folder, project) -> (filename, bytes), what the 400's detail says)
BROKEN: dict[str, tuple[Callable[[Path, str], tuple[str, bytes]], str]] = {
    "wheel-unsupported-method": (_zip_damage(damage.zip_member_method), "could not be read as a zip archive"),
    "wheel-encrypted": (_zip_damage(damage.zip_member_encrypted), "could not be read as a zip archive"),
    "wheel-corrupt-deflate": (_zip_damage(damage.zip_member_corrupt), "could not be read as a zip archive"),
    "sdist-damaged-header": (_tar_damage(damage.targz_damaged_header), "could not be read as a gzip-compressed tar"),
    "sdist-corrupt-deflate": (_tar_damage(damage.targz_corrupt_deflate), "could not be read as a gzip-compressed"),
    "sdist-truncated": (_tar_damage(damage.targz_truncated), "could not be read as a gzip-compressed tar"),
    "wheel-wrong-dist-info": (_wrong_dist_info, "does not contain the required METADATA file"),
    "metadata-nul-summary": (_metadata(HEAD + "Summary: a\x00b\n"), "NUL character in its 'Summary' field"),
    "metadata-nul-requires-python": (
        _metadata(HEAD + "Requires-Python: >=3\x00\n"),
        "NUL character in its 'Requires-Python' field",
    ),
    "metadata-nul-description": (_metadata(HEAD + "\nREADME\x00\n"), "NUL character in its description"),
    "filename-too-long": (_long_filename, "longer than 246 characters"),
    "metadata-huge-version": (
        _metadata(HEAD.replace("2.0", BIG) + "Summary: x\n"),
        "too long to be a number",
    ),
}


@pytest.fixture
def seeded(client, tmp_path: Path):
    """A server holding demo 1.0 (a wheel); returns (client, folder, scratch folder)."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    data, files = upload_form(make_wheel(scratch, "demo", "1.0"))
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    return client, tmp_path, scratch


def _refused(client, folder: Path, method: str, url: str, status: int, message: str, **kw: object) -> None:
    before = fingerprint(folder)
    r = client.request(method, url, **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert message in r.json()["detail"], r.json()["detail"]
    assert fingerprint(folder) == before


@pytest.mark.parametrize("how", BROKEN)
def test_an_unreadable_or_unstorable_upload_is_400_and_changes_nothing(seeded, how):
    client, folder, scratch = seeded
    build, message = BROKEN[how]
    filename, content = build(scratch, "demo")
    data, files = upload_form(scratch / filename, content=content)
    _refused(client, folder, "POST", "/legacy/", 400, message, data=data, files=files)
    assert client.get("/simple/demo/", headers=JSON).json()["versions"] == ["1.0"]


def test_a_version_too_long_for_an_int_is_400_or_404_everywhere(seeded):
    client, folder, scratch = seeded
    path = make_wheel(scratch, "demo", "2.0")
    data, files = upload_form(path, version="2." + "0" * 5000)
    _refused(client, folder, "POST", "/legacy/", 400, "too long to be a number", data=data, files=files)
    remove = {":action": "remove_pkg", "name": "demo", "version": BIG}
    _refused(client, folder, "POST", "/", 400, "too long to be a number", data=remove)  # urlencoded
    multipart_remove = {k: (None, v) for k, v in remove.items()}
    _refused(client, folder, "POST", "/", 400, "too long to be a number", files=multipart_remove)
    release = f"/api/projects/demo/releases/{BIG}"
    for method, url in (("POST", f"{release}/yank"), ("POST", f"{release}/unyank"), ("DELETE", release)):
        _refused(client, folder, method, url, 400, "too long to be a number")
        _refused(client, folder, method, url.replace(BIG, "not.a.version"), 400, "Invalid version")  # the same
    # a release page for it simply does not exist, as for any other string that is not a version
    _refused(client, folder, "GET", f"/ui/project/demo/{BIG}/", 404, "is not a version on this index")
    _refused(client, folder, "GET", "/ui/project/demo/not.a.version/", 404, "is not a version on this index")
    assert client.post("/api/projects/demo/releases/1.0/yank").status_code == 200  # the rest still works


@pytest.mark.parametrize(
    ("disposition", "message"),
    [
        pytest.param(
            b"form-data; name=\"content\"; filename*=UTF-8''demo-2.0-py3-none-any.whl",
            "(only filename*=, which multipart/form-data does not use",
            id="filename-star-only",
        ),
        pytest.param(b'form-data; name="content"', "has no filename", id="no-filename"),
    ],
)
def test_a_file_part_without_a_filename_says_so(seeded, disposition, message):
    client, folder, scratch = seeded
    path = make_wheel(scratch, "demo", "2.0")
    content = path.read_bytes()  # not UTF-8: the message used to say the field was not valid UTF-8
    data, _ = upload_form(path)
    body, ctype = multipart(data, path.name.encode(), content)
    body = body.replace(b'form-data; name="content"; filename="' + path.name.encode() + b'"', disposition)
    _refused(client, folder, "POST", "/legacy/", 400, message, content=body, headers={"Content-Type": ctype})
    assert "filename=" in client.post("/legacy/", content=body, headers={"Content-Type": ctype}).json()["detail"]


#: Damage after PKG-INFO (first in the tar): the metadata reads, the compressed stream does not.
TAIL_DAMAGE = {
    "corrupt": damage.targz_tail_corrupt,
    "wrong-crc": damage.targz_wrong_crc,
    "truncated": damage.targz_tail_truncated,
}


@pytest.mark.parametrize("how", TAIL_DAMAGE)
def test_an_sdist_damaged_after_its_pkg_info_is_400_on_upload(seeded, how):
    """PyPI reads an uploaded sdist to its end; an sdist whose stream fails its CRC, or ends early,
    would be stored for every pip install to fail on."""
    client, folder, scratch = seeded
    sdist = make_sdist(scratch, "demo", "2.0")
    content = TAIL_DAMAGE[how](sdist.read_bytes())
    data, files = upload_form(sdist, content=content)
    _refused(
        client, folder, "POST", "/legacy/", 400, "could not be read as a gzip-compressed tar", data=data, files=files
    )
    assert client.get("/simple/demo/", headers=JSON).json()["versions"] == ["1.0"]
    data, files = upload_form(sdist)  # the intact sdist is accepted
    assert client.post("/legacy/", data=data, files=files).status_code == 200


# A package folder (packhouse run DIR) ----------------------------------------------------------

OLD = time.time() - 3600  # older than the rescan's settle time


def _drop_broken(folder: Path, scratch: Path, prefix: str) -> dict[str, str]:
    """One file per kind of breakage, each its own project; returns filename -> project."""
    out = {}
    for i, how in enumerate(BROKEN):
        project = f"{prefix}{i}"
        filename, content = BROKEN[how][0](scratch, project)
        (folder / filename).write_bytes(content)
        os.utime(folder / filename, (OLD, OLD))
        out[filename] = project
    return out


def _listed(client, project: str) -> bool:
    return client.get(f"/simple/{project}/", headers=JSON).status_code == 200


def test_broken_archives_in_the_package_folder_are_reported_and_skipped_at_start_and_on_rescan(
    make_client, tmp_path, caplog
):
    packages, scratch = tmp_path / "packages", tmp_path / "scratch"
    packages.mkdir()
    scratch.mkdir()
    at_start = _drop_broken(packages, scratch, "early")
    make_wheel(packages, "good", "1.0")
    caplog.set_level(logging.WARNING, logger="packhouse")
    client = make_client(packages_dir=packages, rescan_interval=0.2)  # the server starts
    assert _listed(client, "good")
    for filename, project in at_start.items():
        assert not _listed(client, project)
        assert f"skipped {filename}: " in caplog.text
    later = _drop_broken(packages, scratch, "broken")  # sorted before good-2.0: scanned first
    os.utime(make_wheel(packages, "good", "2.0"), (OLD, OLD))
    deadline = time.monotonic() + 15
    while client.get("/simple/good/", headers=JSON).json()["versions"] != ["1.0", "2.0"]:
        assert time.monotonic() < deadline, "the rescan never indexed good 2.0"
        time.sleep(0.1)
    for filename, project in later.items():
        assert not _listed(client, project)
        assert caplog.text.count(f"skipped {filename}: ") == 1  # reported once, not on every rescan
    assert "rescan of" not in caplog.text and "Traceback" not in caplog.text


def test_import_reports_and_skips_broken_archives(tmp_path, make_client, database_url_for):
    source, scratch = tmp_path / "wheelhouse", tmp_path / "scratch"
    source.mkdir()
    scratch.mkdir()
    broken = _drop_broken(source, scratch, "bad")
    make_wheel(source, "good", "1.0")
    data_dir = tmp_path / "data"
    url = database_url_for(data_dir)
    env = clean_env(tmp_path / "home", {"PACKHOUSE_DATABASE_URL": url} if url else None)
    proc = subprocess.run(
        [sys.executable, "-m", "app", "import", str(source), "--data-dir", str(data_dir), "-q"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "imported 1 file(s)" in proc.stderr and f"{len(broken)} broken" in proc.stderr, proc.stderr
    for filename in broken:
        assert f"skipped {filename}" in proc.stderr
    client = make_client(data_dir=data_dir)
    assert _listed(client, "good")
    assert not any(_listed(client, project) for project in broken.values())


@pytest.mark.parametrize("value", [">=3.8, <4,,,", "3.8+", ">= three"])
def test_an_invalid_requires_python_is_refused_at_upload(client, tmp_path, value):
    wheel = make_wheel(tmp_path, "reqpy", "1.0", requires_python=value)
    data, files = upload_form(wheel)
    r = client.post("/legacy/", data=data, files=files)
    assert r.status_code == 400, r.text
    assert f"Requires-Python {value!r}" in r.json()["detail"] and "PEP 440" in r.json()["detail"]
    assert client.get("/simple/reqpy/").status_code == 404


def test_a_valid_requires_python_is_published(client, tmp_path):
    wheel = make_wheel(tmp_path, "reqpy", "1.0", requires_python=">=3.8, <4")
    data, files = upload_form(wheel)
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    (entry,) = client.get("/simple/reqpy/", headers=JSON).json()["files"]
    assert entry["requires-python"] == ">=3.8, <4"


def test_a_folder_file_with_an_invalid_requires_python_is_served_without_it(make_client, tmp_path, caplog):
    packages = tmp_path / "packages"
    packages.mkdir()
    make_wheel(packages, "reqpy", "1.0", requires_python=">=3.8, <4,,,")
    caplog.set_level(logging.WARNING, logger="packhouse")
    client = make_client(packages_dir=packages)
    (entry,) = client.get("/simple/reqpy/", headers=JSON).json()["files"]
    assert entry["filename"] == "reqpy-1.0-py3-none-any.whl" and entry.get("requires-python") is None
    assert "Requires-Python '>=3.8, <4,,,' is not a version specifier" in caplog.text


def test_folder_files_whose_metadata_an_upload_would_refuse_are_indexed(make_client, tmp_path):
    """The upload rules on Metadata-Version and Summary (PyPI's) are not applied to files found in a
    package folder: pypiserver served them, so Packhouse does. Uploading the very same bytes again
    answers 200, as for any file already in the index."""
    packages = tmp_path / "packages"
    packages.mkdir()
    odd = {
        "mvbanana": metadata_text("mvbanana", "1.0").replace("Metadata-Version: 2.1", "Metadata-Version: banana"),
        "mvnone": metadata_text("mvnone", "1.0").replace("Metadata-Version: 2.1\n", ""),
        "longsum": metadata_text("longsum", "1.0", summary="x" * 600),
        "twolines": metadata_text("twolines", "1.0", summary="first\n second"),
    }
    paths = [make_wheel(packages, name, "1.0", metadata=text) for name, text in odd.items()]
    paths.append(make_sdist(packages, "mvthree", "1.0", metadata=metadata_text("mvthree", "1.0").replace(
        "Metadata-Version: 2.1", "Metadata-Version: 3.0")))  # fmt: skip
    client = make_client(packages_dir=packages)
    for path in paths:
        project = path.name.split("-")[0]
        assert client.get(f"/simple/{project}/", headers=JSON).json()["files"][0]["filename"] == path.name
        data, files = upload_form(path)
        r = client.post("/legacy/", data=data, files=files)
        assert r.status_code == 200 and r.text.startswith("Already stored, identical"), r.text
    (hit,) = client.get("/api/search", params={"q": "longsum"}).json()["results"]
    assert hit["summary"] == "x" * 600
