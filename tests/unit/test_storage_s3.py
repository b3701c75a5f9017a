"""S3Storage against moto's server: multipart for large files, keys, sweeping; and Range parsing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from app.api.streaming import parse_range
from app.storage.s3 import S3Options, open_s3_storage, parse_s3_url

MiB = 1024 * 1024


def test_parse_s3_url():
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        parse_s3_url("https://bucket/x")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=5-", (5, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=90-1000", (90, 99)),
        ("bytes=100-", False),
        ("bytes=-0", False),
        ("bytes=9-5", None),
        ("bytes=0-1,5-6", None),  # multi-range: served whole (allowed by RFC 9110)
        ("items=0-1", None),
        ("bytes=a-5", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


def _run(coro):
    return asyncio.run(coro)


async def stage_and_commit(storage, payload: bytes, key: str) -> None:
    """Stage ``payload`` in 1 MiB writes, as an upload would, and commit it; no staged file remains."""
    staged = storage.stage()
    for i in range(0, len(payload), MiB):
        staged.write(payload[i : i + MiB])
    await storage.commit(staged, key)
    assert not staged.path.exists()


def test_large_upload_is_multipart_and_round_trips(s3, tmp_path):
    payload = os.urandom(11 * MiB + 123)

    async def scenario():
        options = S3Options(url=s3.storage_url, endpoint_url=s3.server.endpoint, part_size=5 * MiB)
        storage, close = await open_s3_storage(options, tmp_path / "staging")
        try:
            await stage_and_commit(storage, payload, "aa/bb/big.whl")
            got = b"".join([chunk async for chunk in storage.open("aa/bb/big.whl")])
            ranged = b"".join([c async for c in storage.read_range("aa/bb/big.whl", 5 * MiB - 2, 5 * MiB + 1)])
            keys = await storage.keys()
            etag = (await storage.client.head_object(Bucket=s3.bucket, Key="pkgs/aa/bb/big.whl"))["ETag"]
            await storage.delete("aa/bb/big.whl")
            gone = not await storage.exists("aa/bb/big.whl")
            return got, ranged, keys, gone, etag
        finally:
            await close()

    got, ranged, keys, gone, etag = _run(scenario())
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert ranged == payload[5 * MiB - 2 : 5 * MiB + 2]
    assert list(keys) == ["aa/bb/big.whl"] and abs(keys["aa/bb/big.whl"] - time.time()) < 300
    assert gone
    assert etag.strip('"').endswith("-3")  # S3's multipart ETag: md5-of-part-md5s "-" part count


def test_small_upload_is_one_put_and_missing_keys_raise(s3, tmp_path):
    async def scenario():
        options = S3Options(url=s3.storage_url, endpoint_url=s3.server.endpoint)
        storage, close = await open_s3_storage(options, tmp_path / "staging")
        try:
            await storage.put_bytes("k/small", b"hello")
            assert await storage.get_bytes("k/small") == b"hello"
            with pytest.raises(FileNotFoundError):
                await storage.get_bytes("k/absent")
            with pytest.raises(FileNotFoundError):
                await storage.delivery("k/absent")
            with pytest.raises(ValueError):
                await storage.put_bytes("../escape", b"x")
            await storage.check()
        finally:
            await close()

    _run(scenario())
    assert s3.get("pkgs/k/small") == b"hello"


def test_staged_files_of_dead_processes_are_swept(s3, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "upload-999999999-x.part").write_bytes(b"left by a killed replica")
    (staging / f"upload-{os.getpid()}-y.part").write_bytes(b"ours, in progress")

    async def scenario():
        options = S3Options(url=s3.storage_url, endpoint_url=s3.server.endpoint)
        storage, close = await open_s3_storage(options, staging)
        await close()
        return storage.sweep_temporary()

    assert _run(scenario()) == 1
    assert [p.name for p in staging.iterdir()] == [f"upload-{os.getpid()}-y.part"]


def test_staging_copy_is_never_synced_to_disk(s3, tmp_path, monkeypatch):
    """The S3 backend's staged file is a scratch copy read back for the PUT: neither fsynced nor
    written back early (the local backend does both; tests/unit/test_upload_stream.py)."""
    from app.storage import local

    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(local, "_SYNC_FILE_RANGE", lambda *args: synced.append("sync_file_range") or 0)
    payload = os.urandom(9 * MiB)

    async def scenario():
        options = S3Options(url=s3.storage_url, endpoint_url=s3.server.endpoint)
        storage, close = await open_s3_storage(options, tmp_path / "staging")
        try:
            await stage_and_commit(storage, payload, "ab/cd/ef/demo-1.0.tar.gz")
            assert await storage.get_bytes("ab/cd/ef/demo-1.0.tar.gz") == payload
        finally:
            await close()

    _run(scenario())
    assert synced == []
