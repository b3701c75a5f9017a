"""S3-compatible storage (moto server on loopback): uploads land in the bucket, downloads stream with
HEAD and Range, or redirect to presigned URLs; file URLs seen by clients stay query-free."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from functools import partial
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support.builders import make_sdist, make_wheel
from tests.support.forms import upload_form


@pytest.fixture
def s3_client(make_client, s3):
    return make_client(storage=s3.storage_url, s3_endpoint_url=s3.server.endpoint)


def _upload(client, path):
    data, files = upload_form(path)
    r = client.post("/legacy/", data=data, files=files)
    assert r.status_code == 200, r.text
    return path.read_bytes()


def _file_url(client, project: str, filename: str) -> str:
    page = client.get(f"/simple/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert page.status_code == 200, page.text
    (entry,) = [f for f in page.json()["files"] if f["filename"] == filename]
    url = entry["url"]
    assert "?" not in url, url  # stable and query-free, whatever the storage
    return url.split("#")[0]


def _object_key(s3, sha: str, filename: str) -> str:
    """The one object of that file: content-addressed, with a part of its upload's own."""
    pattern = re.compile(rf"pkgs/{sha[:2]}/{sha[2:4]}/{sha[4:]}/[0-9a-f]{{16}}/{re.escape(filename)}")
    (key,) = [k for k in s3.keys() if pattern.fullmatch(k)]
    return key


def test_upload_goes_to_the_bucket_under_the_prefix_content_addressed(s3_client, s3, tmp_path, db_query):
    wheel = make_wheel(tmp_path, "alpha", "1.0")
    body = _upload(s3_client, wheel)
    sha = hashlib.sha256(body).hexdigest()
    key = _object_key(s3, sha, wheel.name)
    assert sorted(s3.keys()) == [key, key + ".metadata"]
    assert s3.get(key) == body
    assert db_query("SELECT storage_key FROM files") == [(key.removeprefix("pkgs/"),)]
    # Nothing stored locally but the (empty) staging folder.
    files_dir = tmp_path / "data" / "files"
    assert not files_dir.exists() or not [p for p in files_dir.rglob("*") if p.is_file()]
    assert not list((tmp_path / "data" / "staging").glob("*"))


def test_download_streams_with_head_range_and_metadata(s3_client, tmp_path):
    wheel = make_wheel(tmp_path, "beta", "2.0", module_code="x = 1\n" * 500)
    body = _upload(s3_client, wheel)
    url = _file_url(s3_client, "beta", wheel.name)

    full = s3_client.get(url)
    assert full.status_code == 200 and full.content == body
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["etag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert "content-encoding" not in full.headers

    head = s3_client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(body)

    part = s3_client.get(url, headers={"Range": "bytes=10-29"})
    assert part.status_code == 206 and part.content == body[10:30]
    assert part.headers["content-range"] == f"bytes 10-29/{len(body)}"

    tail = s3_client.get(url, headers={"Range": "bytes=-22"})  # uv reads the zip's end this way
    assert tail.status_code == 206 and tail.content == body[-22:]

    open_ended = s3_client.get(url, headers={"Range": f"bytes={len(body) - 5}-"})
    assert open_ended.status_code == 206 and open_ended.content == body[-5:]

    beyond = s3_client.get(url, headers={"Range": f"bytes={len(body)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(body)}"

    stale = s3_client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == body

    meta = s3_client.get(url + ".metadata")
    assert meta.status_code == 200 and meta.content.startswith(b"Metadata-Version:")

    assert s3_client.get(url, headers={"If-None-Match": full.headers["etag"]}).status_code == 304


def test_sdist_and_duplicate_rules_are_the_same_on_s3(s3_client, tmp_path):
    sdist = make_sdist(tmp_path, "gamma", "1.0")
    _upload(s3_client, sdist)
    _upload(s3_client, sdist)  # identical re-upload: 200
    data, files = upload_form(sdist, content=sdist.read_bytes() + b"\0")
    r = s3_client.post("/legacy/", data=data, files=files)
    assert r.status_code == 409, r.text
    url = _file_url(s3_client, "gamma", sdist.name)
    assert s3_client.get(url).content == sdist.read_bytes()


def test_missing_object_is_a_404_not_a_500(s3_client, s3, tmp_path):
    wheel = make_wheel(tmp_path, "delta", "1.0")
    _upload(s3_client, wheel)
    client = s3.server.client()
    for key in s3.keys():
        client.delete_object(Bucket=s3.bucket, Key=key)
    r = s3_client.get(_file_url(s3_client, "delta", wheel.name))
    assert r.status_code == 404


def test_redirect_mode_answers_302_to_a_presigned_url(make_client, s3, tmp_path):
    client = make_client(
        storage=s3.storage_url,
        s3_endpoint_url=s3.server.endpoint,
        s3_delivery="redirect",
        s3_presign_expires=120,
    )
    wheel = make_wheel(tmp_path, "epsilon", "1.0")
    body = _upload(client, wheel)
    url = _file_url(client, "epsilon", wheel.name)

    r = client.get(url, follow_redirects=False)
    assert r.status_code == 302
    target = urlsplit(r.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == s3.server.endpoint
    assert target.path.startswith(f"/{s3.bucket}/pkgs/")  # path-style addressing
    query = parse_qs(target.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["120"]
    assert re.fullmatch(r"[0-9a-f]{64}", query["X-Amz-Signature"][0])
    # moto does not check signatures, but the URL must still fetch the right bytes.
    assert httpx.get(r.headers["location"]).content == body
    assert httpx.get(r.headers["location"], headers={"Range": "bytes=0-3"}).content == body[:4]
    # PEP 658 metadata is small: the index answers it itself (from memory), saving uv and pip a hop.
    meta = client.get(url + ".metadata", follow_redirects=False)
    assert meta.status_code == 200 and meta.content.startswith(b"Metadata-Version: ")


def test_presigned_urls_use_the_public_endpoint(make_client, s3, tmp_path):
    client = make_client(
        storage=s3.storage_url,
        s3_endpoint_url=s3.server.endpoint,
        s3_public_endpoint_url="http://files.example.test:9000",
        s3_delivery="redirect",
    )
    wheel = make_wheel(tmp_path, "zeta", "1.0")
    _upload(client, wheel)
    r = client.get(_file_url(client, "zeta", wheel.name), follow_redirects=False)
    assert r.headers["location"].startswith(f"http://files.example.test:9000/{s3.bucket}/pkgs/")


def test_health_reports_a_missing_bucket(make_client, s3):
    client = make_client(storage=f"s3://no-such-bucket-{s3.bucket}/x", s3_endpoint_url=s3.server.endpoint)
    r = client.get("/ready")
    assert r.status_code == 503, r.text
    assert "storage" in r.json()["detail"]


def test_storage_setting_must_be_an_s3_url(make_settings):
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        make_settings(storage="/srv/packages")


def test_a_large_upload_goes_up_in_parts_and_downloads_intact(s3_client, s3, tmp_path):
    blob = os.urandom(9 * 1024 * 1024)  # over the 8 MiB part size: multipart upload
    wheel = make_wheel(tmp_path, "large", "1.0", extra_files={"large/blob.bin": blob})
    body = _upload(s3_client, wheel)
    sha = hashlib.sha256(body).hexdigest()
    head = s3.server.client().head_object(Bucket=s3.bucket, Key=_object_key(s3, sha, wheel.name))
    assert head["ETag"].strip('"').endswith("-2")  # S3's multipart ETag names the part count
    url = _file_url(s3_client, "large", wheel.name)
    got = s3_client.get(url)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == sha
    assert s3_client.get(url, headers={"Range": "bytes=8388600-8388615"}).content == body[8388600:8388616]


def test_a_bucket_that_goes_away_answers_503_not_500_and_stores_nothing(s3_client, s3, tmp_path):
    """The storage failing under a running server (bucket deleted, credentials revoked, endpoint
    down) is the server's fault: 503 with the store's reason and Retry-After, no row, no staged file."""
    first = make_wheel(tmp_path, "gamma", "1.0")
    _upload(s3_client, first)
    url = _file_url(s3_client, "gamma", first.name)
    admin = s3.server.client()
    for key in s3.keys():
        admin.delete_object(Bucket=s3.bucket, Key=key)
    admin.delete_bucket(Bucket=s3.bucket)

    second = make_wheel(tmp_path, "delta", "1.0")
    data, files = upload_form(second)
    r = s3_client.post("/legacy/", data=data, files=files)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "30"
    assert "NoSuchBucket" in r.json()["detail"] and "try again" in r.json()["detail"]
    assert s3_client.get("/simple/delta/").status_code == 404  # no row
    assert not list((tmp_path / "data" / "staging").glob("*"))

    # S3 answers the HEAD of an object in a missing bucket with a bare 404, as for a missing
    # object: the bucket is then asked for, and its absence is the store's failure.
    for download in (s3_client.get(url), s3_client.head(url)):
        assert download.status_code == 503, download.text
        assert download.headers["retry-after"] == "30"
    assert s3_client.get(url).headers["content-type"] == "application/problem+json"
    assert "NoSuchBucket" in s3_client.get(url).json()["detail"]


def test_a_file_the_store_refuses_leaves_no_metadata_object_behind(s3_client, s3, tmp_path, monkeypatch):
    """The PEP 658 metadata object goes up first; when the wheel's own PUT then fails, the upload
    is a 503 and the bucket holds neither (an orphan .metadata used to stay)."""
    client = s3_client.app.state.uploads.storage.client
    put_object = client.put_object

    async def refuse_archives(**kw):
        if not kw["Key"].endswith(".metadata"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "try again"}}, "PutObject")
        return await put_object(**kw)

    monkeypatch.setattr(client, "put_object", refuse_archives)
    wheel = make_wheel(tmp_path, "epsilon", "1.0")
    data, files = upload_form(wheel)
    r = s3_client.post("/legacy/", data=data, files=files)
    assert r.status_code == 503, r.text
    assert "InternalError" in r.json()["detail"]
    assert s3.keys() == []
    assert s3_client.get("/simple/epsilon/").status_code == 404
    assert not list((tmp_path / "data" / "staging").glob("*"))
    monkeypatch.undo()
    assert _upload(s3_client, wheel)  # the store is back: the same upload goes through
    assert len(s3.keys()) == 2


def test_a_file_stored_under_an_earlier_versions_key_is_served_and_deleted_as_before(s3_client, s3, tmp_path):
    """Rows written before keys had a part of their upload's own (sha256[:2]/sha256[2:4]/sha256[4:]/
    filename) keep their keys: served, deleted with their objects, and the same file uploaded again
    after the delete gets a key of its own."""
    from sqlalchemy import text

    from tests.support import dbaccess

    wheel = make_wheel(tmp_path, "eta", "1.0")
    body = _upload(s3_client, wheel)
    sha = hashlib.sha256(body).hexdigest()
    new, old = _object_key(s3, sha, wheel.name), f"pkgs/{sha[:2]}/{sha[2:4]}/{sha[4:]}/{wheel.name}"
    admin = s3.server.client()
    for suffix in ("", ".metadata"):
        admin.copy_object(Bucket=s3.bucket, Key=old + suffix, CopySource={"Bucket": s3.bucket, "Key": new + suffix})
        admin.delete_object(Bucket=s3.bucket, Key=new + suffix)
    dbaccess.transaction(
        tmp_path / "data",
        lambda conn: conn.execute(text("UPDATE files SET storage_key = :k"), {"k": old.removeprefix("pkgs/")}),
    )

    url = _file_url(s3_client, "eta", wheel.name)
    assert s3_client.get(url).content == body
    assert s3_client.get(url + ".metadata").content.startswith(b"Metadata-Version: ")
    data, files = upload_form(wheel)
    assert s3_client.post("/legacy/", data=data, files=files).text.startswith("Already stored")  # identical: 200
    assert s3_client.delete(f"/api/projects/eta/files/{wheel.name}").status_code == 200
    assert s3.keys() == []
    _upload(s3_client, wheel)  # the very bytes may come back
    again = _object_key(s3, sha, wheel.name)
    assert sorted(s3.keys()) == [again, again + ".metadata"]
    assert s3_client.get(url).content == body


def test_overwrite_on_s3_removes_the_replaced_objects_and_keeps_the_new_ones(make_client, s3, tmp_path):
    client = make_client(storage=s3.storage_url, s3_endpoint_url=s3.server.endpoint, overwrite=True)
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = make_wheel(tmp_path / "first", "theta", "1.0")
    second = make_wheel(tmp_path / "second", "theta", "1.0", module_code="x = 2\n")
    _upload(client, first)
    body = _upload(client, second)
    key = _object_key(s3, hashlib.sha256(body).hexdigest(), second.name)
    assert sorted(s3.keys()) == [key, key + ".metadata"]
    assert client.get(_file_url(client, "theta", second.name)).content == body


class _UploadLandsFirst:
    """A replica's own bucket store, except that its first ``delete`` waits for ``upload`` to
    finish first: an upload (through another replica) that lands between a delete's check that
    no row refers to the object and its removal of the object."""

    def __init__(self, store, upload) -> None:
        self._store, self._upload, self.deleted = store, upload, []

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    async def delete(self, key: str) -> None:
        if not self.deleted:
            await self._upload()
        self.deleted.append(key)
        await self._store.delete(key)


def test_a_delete_racing_an_identical_upload_on_another_replica_leaves_the_new_file_whole(
    make_client, live_server, s3, tmp_path
):
    """Two replicas, one database, one bucket. Replica B deletes a wheel; replica A receives the
    very same wheel again (same filename, same bytes: allowed after a delete) just after B found
    that no row refers to the wheel's object, and just before B removes it. A's new row must not
    end up pointing at an object B removed: every upload stores its bytes under a key of its own."""
    from app.services.manage import ManageService

    wheel = make_wheel(tmp_path, "raced", "1.0")
    replica_b = make_client(storage=s3.storage_url, s3_endpoint_url=s3.server.endpoint)
    replica_a = live_server(env=s3.env)  # same data folder: the same database
    body = _upload(replica_b, wheel)
    old_keys = set(s3.keys())

    async def upload_through_a() -> None:
        data, files = upload_form(wheel)
        async with httpx.AsyncClient(base_url=replica_a.url) as a:
            r = await a.post("/legacy/", data=data, files=files)
        assert r.status_code == 200 and r.text.startswith("Stored"), r.text

    state = replica_b.app.state
    store = _UploadLandsFirst(state.manage.storage, upload_through_a)
    delete = partial(ManageService(state.manage.sessions, store).delete, "raced", filename=wheel.name, actor="ops")
    replica_b.portal.call(delete)
    assert store.deleted, "the delete removed nothing: the race was not reproduced"

    # The re-uploaded file is whole, from either replica: the wheel and its PEP 658 metadata.
    with httpx.Client(base_url=replica_a.url) as a:
        for client in (a, replica_b):
            url = _file_url(client, "raced", wheel.name)
            got = client.get(url)
            assert got.status_code == 200, f"{got.status_code}: the re-uploaded file's object is gone"
            assert got.content == body
            meta = client.get(url + ".metadata")
            assert meta.status_code == 200 and meta.content.startswith(b"Metadata-Version: ")
    # The deleted upload's own objects are gone; the new upload's are there.
    keys = set(s3.keys())
    assert not old_keys & keys
    assert len(keys) == 2 and all(k.endswith((wheel.name, wheel.name + ".metadata")) for k in keys)


def test_overwrites_racing_on_two_replicas_leave_one_file_and_no_orphan(live_server, s3, tmp_path, db_query):
    """--overwrite, two replicas, one database, one bucket: the same filename uploaded with other
    bytes through both at once, round after round. Both get their 200 (the later replaces the
    other's file even when both were new); the row, the bucket and the download agree at the end,
    and no object of a replaced upload is left behind."""
    variants = []
    for i in range(2):
        (tmp_path / f"v{i}").mkdir()
        variants.append(make_wheel(tmp_path / f"v{i}", "iota", "1.0", module_code=f"x = {i}\n"))
    env = {**s3.env, "PACKHOUSE_OVERWRITE": "true"}
    replicas = [live_server(env=env), live_server(env=env)]
    bodies = {hashlib.sha256(v.read_bytes()).hexdigest(): v.read_bytes() for v in variants}

    async def round_() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as http:

            async def send(replica, wheel) -> int:
                data, files = upload_form(wheel)
                r = await http.post(replica.url + "/legacy/", data=data, files=files)
                assert r.status_code == 200, r.text
                return r.status_code

            return await asyncio.gather(send(replicas[0], variants[0]), send(replicas[1], variants[1]))

    for _ in range(8):
        assert asyncio.run(round_()) == [200, 200]
    ((sha,),) = db_query("SELECT sha256 FROM files", replicas[0].data_dir)
    key = _object_key(s3, sha, variants[0].name)
    assert sorted(s3.keys()) == [key, key + ".metadata"]
    for replica in replicas:
        assert httpx.get(f"{replica.url}/files/iota/{variants[0].name}").content == bodies[sha]
