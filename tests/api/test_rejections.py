"""Every bad upload gets a clear RFC 9457 error and changes nothing.

Each case asserts the status, a message a person can act on, and that the fingerprint of the test's
whole folder (sha256 of every stored byte, temporary files included, and every database row) is
identical before and after.
"""

from __future__ import annotations

import struct
import tarfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.builders import make_sdist, make_wheel, metadata_text, zip_bytes
from tests.support.forms import upload_form
from tests.support.integrity import digest_fields, fingerprint, multipart

PROBLEM = "application/problem+json"
WHEEL = "demo-1.0-py3-none-any.whl"


@pytest.fixture
def seeded(client, tmp_path: Path):
    """A server holding demo 1.0 (wheel + sdist); returns (client, folder, dists folder)."""
    dists = tmp_path / "dists"
    dists.mkdir()
    for path in (make_wheel(dists, "demo", "1.0"), make_sdist(dists, "demo", "1.0")):
        data, files = upload_form(path)
        assert client.post("/legacy/", data=data, files=files).status_code == 200
    return client, tmp_path, dists


def form(name: str, version: str, content: bytes, **extra: str | None) -> dict[str, str]:
    fields: dict[str, str | None] = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": name,
        "version": version,
        **digest_fields(content),
    }
    fields.update(extra)
    return {k: v for k, v in fields.items() if v is not None}


def wheel_bytes(dists: Path, name: str = "demo", version: str = "2.0", **kw: object) -> bytes:
    return make_wheel(dists / "tmp", name, version, **kw).read_bytes()  # type: ignore[arg-type]


def zip_bomb() -> bytes:
    """A wheel whose member claims ~4 GiB uncompressed from a few bytes (sizes forged in the headers)."""
    data = bytearray(
        zip_bytes({"demo-2.0.dist-info/METADATA": metadata_text("demo", "2.0").encode(), "demo/big": b"0" * 100})
    )
    pos = data.find(b"PK\x01\x02", 0)
    while pos != -1:  # central directory entries: uncompressed size at offset 24
        if data[pos + 46 : pos + 46 + 8] == b"demo/big":
            struct.pack_into("<I", data, pos + 24, 0xFFFFFFF0)
        pos = data.find(b"PK\x01\x02", pos + 4)
    return bytes(data)


def pax_bomb(claimed: int = 64 * 1024 * 1024) -> bytes:
    """An sdist whose first tar member is a pax header claiming ``claimed`` bytes: ~64 KB of gzip.
    tarfile reads such a header's payload in one read (found by fuzzing: 1.3 GB of memory for one
    408 KB upload)."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, claimed
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    out = packer.compress(info.tobuf(format=tarfile.USTAR_FORMAT) + b"%d path=" % claimed)
    block = b"a" * (1024 * 1024)
    for _ in range(claimed // len(block)):
        out += packer.compress(block)
    return out + packer.compress(b"\0" * 1024) + packer.flush()


Case = Callable[[Path], tuple[bytes, str]]


def upload(filename: bytes, content: bytes, name: str = "demo", version: str = "2.0", **extra: str | None):
    return lambda dists: multipart(form(name, version, content, **extra), filename, content)


def with_wheel(build: Callable[[Path], bytes], filename: bytes = b"demo-2.0-py3-none-any.whl", **extra):
    def case(dists: Path) -> tuple[bytes, str]:
        content = build(dists)
        return multipart(form("demo", "2.0", content, **extra), filename, content)

    return case


def raw(body: bytes, content_type: str) -> Case:
    return lambda dists: (body, content_type)


SDIST = b"demo-2.0.tar.gz"


def metadata(version: str | None = "2.1", summary: str = "A test package") -> str:
    """demo 2.0's METADATA / PKG-INFO with this Metadata-Version (None: no such header) and Summary."""
    line = "" if version is None else f"Metadata-Version: {version}\n"
    return metadata_text("demo", "2.0", summary=summary).replace("Metadata-Version: 2.1\n", line)


def with_sdist(text: str, **extra: str | None) -> Case:
    def case(dists: Path) -> tuple[bytes, str]:
        content = make_sdist(dists / "tmp", "demo", "2.0", metadata=text).read_bytes()
        return multipart(form("demo", "2.0", content, **extra), SDIST, content)

    return case


CASES = [
    # digests
    pytest.param(with_wheel(wheel_bytes, sha256_digest="0" * 64), 400, "does not match", id="sha256-mismatch"),
    pytest.param(
        with_wheel(wheel_bytes, md5_digest="0" * 32, sha256_digest=None), 400, "does not match", id="md5-mismatch"
    ),
    pytest.param(
        with_wheel(wheel_bytes, blake2_256_digest="0" * 64, sha256_digest=None),
        400,
        "does not match",
        id="blake2-mismatch",
    ),
    pytest.param(with_wheel(wheel_bytes, sha256_digest="é" * 64), 400, "does not match", id="sha256-not-hex"),
    pytest.param(
        with_wheel(wheel_bytes, md5_digest=None, sha256_digest=None, blake2_256_digest=None),
        400,
        "no digest",
        id="no-digest",
    ),
    # filenames that could name a path or hide a character
    pytest.param(upload(b"../demo-2.0.tar.gz", b"x"), 400, "Invalid filename", id="dotdot"),
    pytest.param(upload(b"../../../../tmp/demo-2.0.tar.gz", b"x"), 400, "Invalid filename", id="dotdot-deep"),
    pytest.param(upload(b"sub/demo-2.0.tar.gz", b"x"), 400, "path separator", id="slash"),
    pytest.param(upload(b"sub\\demo-2.0.tar.gz", b"x"), 400, "Invalid filename", id="backslash"),
    pytest.param(upload(b"/etc/demo-2.0.tar.gz", b"x"), 400, "path separator", id="absolute"),
    pytest.param(upload(b"C:\\demo-2.0.tar.gz", b"x"), 400, "Invalid filename", id="drive"),
    pytest.param(upload(b"demo-2.0.tar.gz\x00.whl", b"x"), 400, "Invalid filename", id="nul"),
    pytest.param(upload(b"demo\x07-2.0.tar.gz", b"x"), 400, "control character", id="bell"),
    pytest.param(upload(b"demo\x1b[2J-2.0.tar.gz", b"x"), 400, "control character", id="escape"),
    pytest.param(upload("d\u0435mo-2.0.tar.gz".encode(), b"x"), 400, "non-ASCII", id="cyrillic-e"),
    pytest.param(upload("\uff44emo-2.0.tar.gz".encode(), b"x"), 400, "non-ASCII", id="fullwidth"),
    pytest.param(upload("demo-2.0.tar.gz\u200b".encode(), b"x"), 400, "non-ASCII", id="zero-width"),
    pytest.param(upload(b".demo-2.0.tar.gz", b"x"), 400, "Invalid filename", id="hidden"),
    # not a wheel or an sdist
    pytest.param(upload(b"demo-2.0.exe", b"MZ"), 400, "only wheels", id="exe"),
    pytest.param(upload(b"demo-2.0.html", b"<html>"), 400, "only wheels", id="html"),
    pytest.param(upload(b"demo-2.0-py3.11.egg", b"x"), 400, "only wheels", id="egg"),
    pytest.param(upload(b"demo-2.0.tar.bz2", b"BZh"), 400, "only wheels", id="tar-bz2"),
    pytest.param(upload(b"demo-2.0.tar", b"x"), 400, "only wheels", id="tar"),
    pytest.param(upload(b"demo-2.0.whl", b"x"), 400, "Invalid distribution filename", id="wheel-no-tags"),
    # name / version disagreements and invalid values
    pytest.param(
        with_wheel(wheel_bytes, filename=b"other-2.0-py3-none-any.whl"),
        400,
        "for project",
        id="fn-vs-form-name",
    ),
    pytest.param(upload(SDIST, b"x", name="other"), 400, "the form says 'other'", id="form-name"),
    pytest.param(upload(SDIST, b"x", version="3.0"), 400, "the form says '3.0'", id="form-version"),
    pytest.param(upload(b"demo-2.x.y.tar.gz", b"x", version="2.x.y"), 400, "Invalid", id="bad-version"),
    pytest.param(upload(b"-demo-2.0.tar.gz", b"x", name="-demo"), 400, "Invalid", id="bad-name"),
    pytest.param(
        with_wheel(lambda d: wheel_bytes(d, metadata=metadata_text("other", "2.0"))),
        400,
        "does not match the filename",
        id="metadata-name",
    ),
    pytest.param(
        with_wheel(lambda d: wheel_bytes(d, metadata=metadata_text("demo", "2.1"))),
        400,
        "does not match the filename",
        id="metadata-version",
    ),
    pytest.param(
        lambda d: (lambda c: multipart(form("demo", "2.0", c), SDIST, c))(
            make_sdist(d / "tmp", "demo", "2.0", metadata=metadata_text("demo", "9.9")).read_bytes()
        ),
        400,
        "does not match the filename",
        id="pkg-info-version",
    ),
    # core metadata PyPI refuses too (warehouse/forklift/metadata.py): no or an unknown
    # Metadata-Version, a Summary longer than 512 characters or on more than one line
    pytest.param(
        with_wheel(lambda d: wheel_bytes(d, metadata=metadata("banana"))),
        400,
        "Metadata-Version 'banana' is not a core metadata version",
        id="metadata-version-nonsense",
    ),
    pytest.param(
        with_wheel(lambda d: wheel_bytes(d, metadata=metadata("3.0"))),
        400,
        "Metadata-Version '3.0' is not a core metadata version",
        id="metadata-version-major-3",
    ),
    pytest.param(with_sdist(metadata("1.3")), 400, "Metadata-Version '1.3' is not", id="metadata-version-1.3"),
    pytest.param(
        with_wheel(lambda d: wheel_bytes(d, metadata=metadata("2." + "1" * 40))),
        400,
        "Metadata-Version '2.1111111111111111111111111111...' is not",
        id="metadata-version-too-long",
    ),
    pytest.param(with_sdist(metadata(None)), 400, "does not declare its Metadata-Version", id="metadata-version-none"),
    pytest.param(
        with_wheel(lambda d: wheel_bytes(d, metadata="Metadata-Version: 2.1\n" + metadata("2.2"))),
        400,
        "does not declare its Metadata-Version (exactly one",
        id="metadata-version-twice",
    ),
    pytest.param(
        with_wheel(lambda d: wheel_bytes(d, metadata=metadata(summary="x" * 513))),
        400,
        "Summary is 513 characters long, over the limit of 512",
        id="summary-too-long",
    ),
    pytest.param(
        with_sdist(metadata(summary="first line\n  second line")),  # a folded header
        400,
        "Summary spans more than one line",
        id="summary-two-lines",
    ),
    pytest.param(
        with_wheel(lambda d: wheel_bytes(d, metadata=metadata(summary="first\u2028second"))),
        400,
        "Summary spans more than one line",
        id="summary-line-separator",
    ),
    # a filetype that contradicts the file (PyPI: "Invalid file extension")
    pytest.param(
        with_wheel(wheel_bytes, filetype="sdist"),
        400,
        "filetype 'sdist', but demo-2.0-py3-none-any.whl is a wheel: send filetype=bdist_wheel",
        id="filetype-sdist-for-wheel",
    ),
    pytest.param(
        with_sdist(metadata(), filetype="bdist_wheel"),
        400,
        "demo-2.0.tar.gz is a source distribution: send filetype=sdist",
        id="filetype-wheel-for-sdist",
    ),
    pytest.param(with_wheel(wheel_bytes, filetype="bdist_egg"), 400, "filetype 'bdist_egg'", id="filetype-egg"),
    # broken archives
    pytest.param(upload(b"demo-2.0-py3-none-any.whl", b"not a zip at all"), 400, "could not be read", id="not-zip"),
    pytest.param(upload(SDIST, b"\x1f\x8b not really gzip"), 400, "could not be read", id="not-targz"),
    pytest.param(upload(SDIST, b"plain text"), 400, "could not be read", id="text-as-targz"),
    pytest.param(
        with_wheel(lambda d: zip_bytes({"demo/__init__.py": b""})),
        400,
        "dist-info/METADATA",
        id="no-metadata",
    ),
    pytest.param(
        with_wheel(lambda d: zip_bytes({"demo-2.0.dist-info/METADATA": b"this is not metadata"})),
        400,
        "does not parse",
        id="metadata-garbage",
    ),
    pytest.param(
        with_wheel(lambda d: zip_bytes({"demo-2.0.dist-info/METADATA": b"\xff\xfe\x00bad"})),
        400,
        "UTF-8",
        id="metadata-not-utf8",
    ),
    pytest.param(with_wheel(lambda d: zip_bomb()), 400, "zip bomb", id="zip-bomb"),
    pytest.param(upload(SDIST, b""), 400, "empty", id="empty-file"),
    # the form itself
    pytest.param(lambda d: multipart({"name": "demo"}, SDIST, b"x"), 400, "no ':action'", id="no-action"),
    pytest.param(lambda d: multipart({":action": "frobnicate"}), 400, "Unknown :action", id="unknown-action"),
    pytest.param(lambda d: multipart({":action": "submit_pkg_info"}), 410, "not supported", id="submit-pkg-info"),
    pytest.param(lambda d: multipart({":action": "doc_upload", "name": "demo"}), 410, "not supported", id="doc"),
    pytest.param(lambda d: multipart(form("demo", "2.0", b"")), 400, "no file", id="no-file"),
    pytest.param(
        raw(b"garbage without boundaries", "multipart/form-data; boundary=xyz"),
        400,
        "malformed",
        id="garbage",
    ),
    pytest.param(
        lambda d: (multipart(form("demo", "2.0", b"x"), SDIST, b"x")[0][:-40], multipart({})[1]),
        400,
        "truncated",
        id="truncated",
    ),
    pytest.param(
        raw(b"--x\r\nbad header line\r\n\r\n", "multipart/form-data; boundary=x"),
        400,
        "malformed",
        id="bad-part",
    ),
    pytest.param(raw(b"{}", "application/json"), 415, "multipart/form-data", id="json"),
    pytest.param(raw(b"x", "text/plain"), 415, "multipart/form-data", id="text"),
    pytest.param(raw(b"x", ""), 415, "multipart/form-data", id="no-content-type"),
    pytest.param(raw(b"x", "multipart/form-data"), 400, "boundary", id="no-boundary"),
    # python-multipart refuses a boundary over 256 characters with an error of its own (was a 500)
    pytest.param(
        raw(b"x", "multipart/form-data; boundary=" + "b" * 257), 400, "boundary is 257 characters", id="long-boundary"
    ),
    # its PEP 658 file, <filename>.metadata, would not fit a 255-byte file name (was a 500, and the
    # wheel was left in storage with no row)
    pytest.param(
        with_wheel(wheel_bytes, filename=f"demo-2.0-{'p' * 225}-none-any.whl".encode()),
        400,
        "longer than 246 characters",
        id="filename-too-long-for-its-metadata-file",
    ),
    pytest.param(upload(SDIST, pax_bomb()), 400, "header entry of", id="tar-header-bomb"),
    pytest.param(raw(b"\xff%%%", "application/x-www-form-urlencoded"), 400, "malformed", id="urlencoded-garbage"),
    # NUL in a form field (PostgreSQL refuses it in text: found by the fuzz test as a 500)
    pytest.param(with_wheel(wheel_bytes, pyversion="py3\x00"), 400, "contains a NUL character", id="nul-in-field"),
    pytest.param(
        raw(b":action=remove_pkg&name=%00&version=1.0", "application/x-www-form-urlencoded"),
        400,
        "contains a NUL character",
        id="nul-in-urlencoded-field",
    ),
]


@pytest.mark.parametrize(("case", "status", "message"), CASES)
def test_bad_upload_is_rejected_clearly_and_changes_nothing(seeded, case: Case, status: int, message: str):
    client, folder, dists = seeded
    (dists / "tmp").mkdir()
    body, content_type = case(dists)
    before = fingerprint(folder)
    started = time.monotonic()
    r = client.post("/legacy/", content=body, headers={"Content-Type": content_type})
    assert time.monotonic() - started < 10
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["status"] == status and problem["title"] and len(problem["detail"]) > 20
    assert message in problem["detail"]
    assert fingerprint(folder) == before
    assert not list(folder.parent.glob("demo-2.0*")) and not Path("/tmp/demo-2.0.tar.gz").exists()


def test_other_bytes_under_an_existing_filename_is_409_file_already_exists(seeded):
    client, folder, dists = seeded
    (dists / "other").mkdir()
    other = make_wheel(dists / "other", "demo", "1.0", module_code="x = 2\n")
    before = fingerprint(folder)
    data, files = upload_form(other)
    r = client.post("/legacy/", data=data, files=files)
    assert r.status_code == 409
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["detail"].startswith("File already exists")
    assert "Uploading the same bytes again succeeds" in r.json()["detail"]
    assert fingerprint(folder) == before


def test_identical_reupload_is_200_and_changes_nothing(seeded):
    client, folder, dists = seeded
    before = fingerprint(folder)
    data, files = upload_form(dists / WHEEL)
    r = client.post("/legacy/", data=data, files=files)
    assert r.status_code == 200 and "identical" in r.text
    assert fingerprint(folder) == before


def test_oversized_upload_is_413_before_reading_when_announced(make_client, tmp_path):
    client = make_client(max_upload_size=1000)
    path = make_wheel(tmp_path, "demo", "1.0", extra_files={"demo/blob.bin": bytes(range(256)) * 64})
    data, files = upload_form(path)
    (tmp_path / "data" / "files").mkdir(parents=True, exist_ok=True)
    before = fingerprint(tmp_path)
    r = client.post("/legacy/", data=data, files=files)
    assert r.status_code == 413
    assert "--max-upload-size" in r.json()["detail"]
    assert fingerprint(tmp_path) == before


def test_oversized_upload_is_413_while_streaming(make_client, tmp_path):
    """No Content-Length to trust: the limit is enforced on the bytes as they are staged."""
    client = make_client(max_upload_size=50_000)
    content = bytes(range(256)) * 400  # 100 KiB
    body, ctype = multipart(form("demo", "1.0", content), b"demo-1.0.tar.gz", content)
    before = fingerprint(tmp_path)

    def chunks():
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    r = client.post("/legacy/", content=chunks(), headers={"Content-Type": ctype})
    assert r.status_code == 413
    assert "50000 bytes" in r.json()["detail"]
    assert fingerprint(tmp_path) == before


def test_too_many_form_fields_is_400(seeded):
    client, folder, _ = seeded
    fields = {f"field{i}": "x" for i in range(1100)}
    body, ctype = multipart(fields)
    before = fingerprint(folder)
    r = client.post("/legacy/", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 400 and "Too many form fields" in r.json()["detail"]
    assert fingerprint(folder) == before


def test_oversized_form_field_is_413(seeded):
    client, folder, _ = seeded
    body, ctype = multipart({":action": "file_upload", "description": "x" * (9 * 1024 * 1024)})
    before = fingerprint(folder)
    r = client.post("/legacy/", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 413 and "'description'" in r.json()["detail"]
    assert fingerprint(folder) == before


def test_name_differing_only_in_case_and_punctuation_maps_to_the_project(seeded):
    client, _, dists = seeded
    path = make_wheel(dists, "DEMO", "1.1")
    data, files = upload_form(path, name="DeMo")
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    project = client.get("/api/projects/Demo").json()
    assert project["name"] == "demo" and project["normalized_name"] == "demo"  # display name kept
    assert {f["version"] for f in project["files"]} == {"1.0", "1.1"}
    page = client.get("/simple/demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    assert page["versions"] == ["1.0", "1.1"]
