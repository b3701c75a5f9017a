"""Rendered-page caching, ETags and 304s, compression, and file delivery (DESIGN rule 9).

Every change to a project goes through ``repo.record_event``, which bumps the project's serial;
the cached page, its ETag and the 304 decision all key on that serial. These tests change the
index in each way (upload, yank, delete) and check that nothing stale is ever served.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import threading
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from app.db import repo
from app.db.models import File

JSON = "application/vnd.pypi.simple.v1+json"


def wheel(name: str, version: str, payload: bytes = b"") -> tuple[str, bytes]:
    under = name.replace("-", "_")
    info = f"{under}-{version}.dist-info"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{under}/__init__.py", payload or b"x = 1\n")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return f"{under}-{version}-py3-none-any.whl", buf.getvalue()


def upload(client, name: str, version: str, payload: bytes = b"") -> tuple[str, bytes]:
    filename, data = wheel(name, version, payload)
    r = client.post(
        "/",
        data={
            ":action": "file_upload",
            "protocol_version": "1",
            "name": name,
            "version": version,
            "filetype": "bdist_wheel",
            "pyversion": "py3",
            "sha256_digest": hashlib.sha256(data).hexdigest(),
        },
        files={"content": (filename, data, "application/octet-stream")},
    )
    assert r.status_code == 200, r.text
    return filename, data


def change(client, name: str, action: str) -> None:
    """Yank or delete every file of a project the way those commands do: a row change plus a
    journal event in one transaction (record_event bumps the project's serial)."""

    async def run() -> None:
        sessions = client.app.state.uploads.sessions
        async with sessions() as session, session.begin():
            project = await session.run_sync(repo.get_project, name)
            assert project is not None
            if action == "yank":
                stmt = update(File).where(File.project_id == project.id)
                await session.execute(stmt.values(yanked=True, yanked_reason="broken"))
            else:
                await session.execute(delete(File).where(File.project_id == project.id))
            await session.run_sync(repo.record_event, project.id, action=action, project=name)

    client.portal.call(run)


def get(client, path: str, **headers: str):
    return client.get(path, headers={"Accept-Encoding": "identity", **headers})


@pytest.mark.parametrize("accept", ["text/html", JSON])
def test_project_etag_304_and_invalidation_on_upload(client, accept):
    upload(client, "demo", "1.0")
    first = get(client, "/simple/demo/", accept=accept)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith('W/"')  # strong
    assert first.headers["cache-control"] == "max-age=0, must-revalidate"

    again = get(client, "/simple/demo/", accept=accept, **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag

    upload(client, "demo", "2.0")
    changed = get(client, "/simple/demo/", accept=accept, **{"If-None-Match": etag})
    assert changed.status_code == 200  # never a stale 304
    assert changed.headers["etag"] != etag
    assert "demo-2.0-py3-none-any.whl" in changed.text
    assert get(client, "/simple/demo/", accept=accept).text == changed.text  # the cache holds the new page


def test_html_and_json_have_distinct_etags(client):
    upload(client, "demo", "1.0")
    html = get(client, "/simple/demo/", accept="text/html")
    js = get(client, "/simple/demo/", accept=JSON)
    assert html.headers["etag"] != js.headers["etag"]
    r = get(client, "/simple/demo/", accept=JSON, **{"If-None-Match": html.headers["etag"]})
    assert r.status_code == 200 and r.headers["content-type"].startswith(JSON)


def test_index_etag_304_and_invalidation(client):
    upload(client, "alpha", "1.0")
    first = get(client, "/simple/")
    etag = first.headers["etag"]
    assert get(client, "/simple/", **{"If-None-Match": etag}).status_code == 304
    assert get(client, "/simple/", **{"If-None-Match": f'"other", {etag}'}).status_code == 304
    assert get(client, "/simple/", **{"If-None-Match": '"other"'}).status_code == 200

    upload(client, "beta", "1.0")
    r = get(client, "/simple/", **{"If-None-Match": etag})
    assert r.status_code == 200
    assert r.headers["etag"] != etag
    assert "beta" in r.text


def test_yank_invalidates_cached_page_and_etag(client):
    upload(client, "demo", "1.0")
    before = get(client, "/simple/demo/", accept=JSON)
    assert before.json()["files"][0]["yanked"] is False
    change(client, "demo", "yank")
    r = get(client, "/simple/demo/", accept=JSON, **{"If-None-Match": before.headers["etag"]})
    assert r.status_code == 200
    assert r.json()["files"][0]["yanked"] == "broken"
    assert r.headers["etag"] != before.headers["etag"]


def test_delete_invalidates_cached_pages(client):
    upload(client, "demo", "1.0")
    page = get(client, "/simple/demo/")
    index = get(client, "/simple/")
    assert "demo" in index.text
    change(client, "demo", "delete")
    assert get(client, "/simple/demo/", **{"If-None-Match": page.headers["etag"]}).status_code == 404
    r = get(client, "/simple/", **{"If-None-Match": index.headers["etag"]})
    assert r.status_code == 200 and "demo" not in r.text


def test_downloads_follow_uploads_overwrites_and_deletes_made_by_another_process(make_client):
    """Each process keeps a project's file rows keyed by the project's serial (FileService): a
    download after any change, made by this process or another one on the same database and
    storage, sees that change."""
    mine, other = make_client(overwrite=True), make_client(overwrite=True)
    name, first = upload(mine, "demo", "1.0", b"first = 1\n")
    meta = f"/files/demo/{name}.metadata"
    assert get(mine, f"/files/demo/{name}").content == first  # rows of "demo" now kept by `mine`
    assert get(mine, meta).status_code == 200

    newer, newer_bytes = upload(other, "demo", "2.0")
    assert get(mine, f"/files/demo/{newer}").content == newer_bytes  # a file added since

    _, second = upload(other, "demo", "1.0", b"second = 2\n")  # --overwrite: other bytes, same name
    r = get(mine, f"/files/demo/{name}")
    assert r.content == second and r.headers["etag"] == f'"{hashlib.sha256(second).hexdigest()}"'

    change(other, "demo", "delete")
    for path in (f"/files/demo/{name}", meta, f"/files/demo/{newer}"):
        assert get(mine, path).status_code == 404, path
        assert mine.head(path).status_code == 404, path


def test_gzip_only_when_asked(client):
    for minor in range(12):  # a page over the compression threshold
        upload(client, "demo", f"1.{minor}")
    plain = get(client, "/simple/demo/")
    assert "content-encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["vary"]
    zipped = client.get("/simple/demo/", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == plain.text  # httpx decodes it
    with client.stream("GET", "/simple/demo/", headers={"Accept-Encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
    assert len(raw) < len(plain.content)
    assert gzip.decompress(raw) == plain.content
    for accept_encoding, compressed in [
        ("gzip;q=0", False),  # refused
        ("br;q=1.0, gzip;q=0.5", True),
        ("*", True),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # the coding named outranks the wildcard
        ("*;q=0, gzip", True),
        ("GZIP", True),
        ("deflate, identity", False),
        ("gzip;q=oops", True),  # a malformed weight counts as none
    ]:
        r = client.get("/simple/demo/", headers={"Accept-Encoding": accept_encoding})
        assert ("content-encoding" in r.headers) is compressed, accept_encoding
        assert r.text == plain.text, accept_encoding


def test_the_gzip_form_has_its_own_strong_etag_and_both_revalidate(client):
    """A content coding is another representation (RFC 9110 8.8.3.3: "xyzzy" / "xyzzy-gzip"):
    caches must never take the gzip bytes for the plain ones. A client holding either form gets
    304 only for a form it would be sent now."""
    for minor in range(12):  # a page over the compression threshold
        upload(client, "demo", f"1.{minor}")
    plain_tag = get(client, "/simple/demo/").headers["etag"]
    zipped = client.get("/simple/demo/", headers={"Accept-Encoding": "gzip"})
    gzip_tag = zipped.headers["etag"]
    assert gzip_tag == plain_tag[:-1] + '-gzip"' and not gzip_tag.startswith("W/")
    gz = {"Accept-Encoding": "gzip"}
    held = client.get("/simple/demo/", headers={**gz, "If-None-Match": gzip_tag})
    assert held.status_code == 304 and held.headers["etag"] == gzip_tag and held.content == b""
    # the plain form, held by a client that now also takes gzip: still current
    held = client.get("/simple/demo/", headers={**gz, "If-None-Match": plain_tag})
    assert held.status_code == 304 and held.headers["etag"] == plain_tag
    # the gzip form's tag from a client that does not take gzip: it would get the plain form
    r = get(client, "/simple/demo/", **{"If-None-Match": gzip_tag})
    assert r.status_code == 200 and r.headers["etag"] == plain_tag and "content-encoding" not in r.headers
    upload(client, "demo", "2.0")
    r = client.get("/simple/demo/", headers={**gz, "If-None-Match": f"{gzip_tag}, {plain_tag}"})
    assert r.status_code == 200 and r.headers["etag"] not in (gzip_tag, plain_tag)
    assert "2.0" in r.text


@pytest.mark.parametrize("path", ["/simple/demo/", "/simple/"])
def test_if_none_match_is_compared_weakly_and_star_matches_what_exists(client, path):
    upload(client, "demo", "1.0")
    etag = get(client, path).headers["etag"]
    for inm in (f"W/{etag}", '"other", ' + etag, f' "other" ,W/{etag} ', "*"):
        r = get(client, path, **{"If-None-Match": inm})
        assert r.status_code == 304 and r.headers["etag"] == etag, inm
    assert get(client, path, **{"If-None-Match": '"other"'}).status_code == 200
    assert get(client, path, **{"If-None-Match": etag[:-1] + 'x"'}).status_code == 200
    # "*" is "any current representation": none for a project that does not exist
    assert get(client, "/simple/nothing-here/", **{"If-None-Match": "*"}).status_code == 404


def test_files_never_compressed_and_serve_head_and_range(client):
    filename, data = upload(client, "demo", "1.0", payload=b"A" * 100_000)  # compressible on purpose
    url = f"/files/demo/{filename}"
    r = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert r.content == data
    assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert "immutable" in r.headers["cache-control"]

    head = client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(data)

    part = client.get(url, headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == data[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"

    etag = r.headers["etag"]
    for inm in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        held = client.get(url, headers={"If-None-Match": inm})
        assert held.status_code == 304 and held.content == b"" and held.headers["etag"] == etag, inm
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_metadata_file_not_compressed(client):
    filename, _ = upload(client, "demo", "1.0")
    r = client.get(f"/files/demo/{filename}.metadata", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    assert r.text.startswith("Metadata-Version: 2.1")
    again = client.get(f"/files/demo/{filename}.metadata")  # from the in-memory copy now
    assert again.content == r.content
    assert again.headers["etag"] == r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
    head = client.head(f"/files/demo/{filename}.metadata")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(r.content)
    assert (
        client.get(f"/files/demo/{filename}.metadata", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    )
    assert client.get("/files/demo/demo-9.0.tar.gz.metadata").status_code == 404
    assert client.get(f"/files/other/{filename}.metadata").status_code == 404


@pytest.mark.parametrize("damage", ["missing", "cut short", "other bytes"])
def test_a_lost_or_damaged_metadata_file_is_rebuilt_from_the_wheel(make_client, tmp_path, damage):
    """The local store writes the PEP 658 file on the first request for it (it is the wheel's own
    METADATA, and the row records its sha256), without waiting for the disk: after a crash it may
    be gone or short. A download checks it against the row, serves the wheel's METADATA and stores
    it again."""
    client = make_client()
    filename, data = upload(client, "demo", "1.0")
    expected = zipfile.ZipFile(io.BytesIO(data)).read("demo-1.0.dist-info/METADATA")
    files = tmp_path / "data" / "files"
    assert not list(files.rglob(f"*{filename}.metadata"))  # not written at upload
    r = client.get(f"/files/demo/{filename}.metadata")
    assert r.status_code == 200 and r.content == expected
    (sidecar,) = files.rglob(f"*{filename}.metadata")
    assert sidecar.read_bytes() == expected
    if damage == "missing":
        sidecar.unlink()
    elif damage == "cut short":
        sidecar.write_bytes(expected[:10])
    else:
        sidecar.write_bytes(expected.replace(b"demo", b"evil"))
    client = make_client()  # a fresh process: nothing in memory
    r = client.get(f"/files/demo/{filename}.metadata")
    assert r.status_code == 200 and r.content == expected
    assert r.headers["etag"] == f'"{hashlib.sha256(expected).hexdigest()}"'
    assert sidecar.read_bytes() == expected
    assert not list((tmp_path / "data" / "files" / ".tmp").iterdir())


@pytest.mark.parametrize("damage", ["directory", "symlink loop", "symlink outside", "fifo"])
def test_a_metadata_file_that_is_not_a_regular_file_is_rebuilt_and_never_waited_on(make_client, tmp_path, damage):
    """In a package folder, what stands where a PEP 658 file should (``.packhouse/metadata/``) may
    be anything the operator put there: it is read only if it is a regular file, else treated as
    missing (the wheel's METADATA is served, and stored if it can be). Never a 500, never a read
    through a symlink out of the folder, and never an open of a FIFO, which waits for a writer
    forever (and then holds up the server's shutdown)."""
    packages = tmp_path / "packages"
    packages.mkdir()
    client = make_client(packages_dir=packages)
    filename, data = upload(client, "demo", "1.0")
    expected = zipfile.ZipFile(io.BytesIO(data)).read("demo-1.0.dist-info/METADATA")
    sidecar = packages / ".packhouse" / "metadata" / f"{filename}.metadata"
    assert sidecar.read_bytes() == expected  # written at upload in a package folder
    sidecar.unlink()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not for clients\n")
    if damage == "directory":
        sidecar.mkdir()
    elif damage == "symlink loop":
        sidecar.symlink_to(sidecar.name)
    elif damage == "symlink outside":
        sidecar.symlink_to(outside)
    else:
        os.mkfifo(sidecar)
    client = make_client(packages_dir=packages)  # a fresh process: nothing in memory
    answers: list[object] = []
    request = threading.Thread(target=lambda: answers.append(client.get(f"/files/demo/{filename}.metadata")))
    request.start()
    request.join(10)
    if request.is_alive():  # waiting on the FIFO: give it a writer (and so an EOF), to end the test
        os.close(os.open(sidecar, os.O_WRONLY | os.O_NONBLOCK))
        request.join(10)
        pytest.fail("the request waited on the FIFO for a writer")
    (r,) = answers
    assert r.status_code == 200 and r.content == expected, r.text  # type: ignore[attr-defined]
    assert outside.read_bytes() == b"not for clients\n"
    if damage == "directory":  # left for the operator ('packhouse check' reports it)
        assert sidecar.is_dir()
    else:  # replaced by the metadata file (a symlink itself, never the file it leads to)
        assert sidecar.is_file() and not sidecar.is_symlink() and sidecar.read_bytes() == expected


def test_metadata_is_404_when_neither_the_file_nor_the_wheel_has_it(make_client, tmp_path):
    client = make_client()
    filename, _ = upload(client, "demo", "1.0")
    for path in (tmp_path / "data" / "files").rglob(f"*{filename}*"):
        path.unlink()
    r = make_client().get(f"/files/demo/{filename}.metadata")
    assert r.status_code == 404 and "packhouse check" in r.text


def test_x_accel_redirect_hands_the_file_to_nginx(make_client):
    client = make_client(x_accel_redirect="/_packhouse_files/")
    filename, data = upload(client, "demo", "1.0")
    sha = hashlib.sha256(data).hexdigest()
    r = client.get(f"/files/demo/{filename}")
    assert r.status_code == 200
    assert r.content == b""
    # The stored key of a local upload: "<2 hex>/<14 hex>-<filename>" (staged in place, app/storage/local.py).
    key = rf"[0-9a-f]{{2}}/[0-9a-f]{{14}}-{re.escape(filename)}"
    assert re.fullmatch(f"/_packhouse_files/{key}", r.headers["x-accel-redirect"]), r.headers["x-accel-redirect"]
    assert r.headers["etag"] == f'"{sha}"'
    assert client.get(f"/files/demo/{filename}", headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    assert client.get("/files/demo/nope-1.0-py3-none-any.whl").status_code == 404


def test_x_sendfile(make_client):
    client = make_client(x_sendfile=True)
    filename, data = upload(client, "demo", "1.0")
    r = client.get(f"/files/demo/{filename}")
    assert r.headers["x-sendfile"].endswith(f"-{filename}")
    assert Path(r.headers["x-sendfile"]).read_bytes() == data
    assert r.content == b""


def test_download_rows_kept_within_their_bound(client):
    """The per-project file rows of FileService are bounded by a file count (least recently used
    projects go first); evicted projects are simply loaded again."""
    from app.services.files import FileService

    state = client.app.state.files
    service = FileService(state.sessions, state.storage, state.serials, files_cached=3)
    names = {p: upload(client, p, "1.0")[0] for p in ("alpha", "beta")}
    names["gamma"] = upload(client, "gamma", "1.0")[0]
    upload(client, "gamma", "2.0")

    def find(project: str) -> str:
        return client.portal.call(service.find, project, names[project]).sha256

    first = {p: find(p) for p in ("alpha", "beta")}
    assert list(service._projects) == ["alpha", "beta"]
    find("gamma")  # two files: 4 > 3, so the least recently used (alpha) goes
    assert list(service._projects) == ["beta", "gamma"] and service._projects.used == 3
    assert find("alpha") == first["alpha"]  # loaded again; now beta goes
    assert list(service._projects) == ["gamma", "alpha"] and service._projects.used == 3
    # A project with more files than the whole bound is still kept while it is the one just used.
    small = FileService(state.sessions, state.storage, state.serials, files_cached=1)
    assert client.portal.call(small.find, "gamma", names["gamma"]).sha256
    assert list(small._projects) == ["gamma"] and small._projects.used == 2
