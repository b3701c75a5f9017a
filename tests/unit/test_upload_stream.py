"""The upload's streaming path below HTTP: the multipart reader, its writer thread and the local store.

The API and end-to-end tests send real uploads; these pin down what they cannot see: batches that
are queued to the writer thread stay in order, an error mid-stream leaves no staged file behind,
a key that needs new directories reports every directory whose entries changed, and an upload
staged in place is named, committed, cleaned up and swept as the local store promises."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import time

import anyio
import pytest

from app.errors import InvalidRequestError, UploadTooLargeError
from app.services import form as form_module
from app.services.form import FormLimits, read_upload_form
from app.storage import local
from app.storage.local import LocalStaged, LocalStorage, _makedirs
from tests.support.integrity import multipart

pytestmark = pytest.mark.anyio


async def _chunks(body: bytes, size: int):
    for i in range(0, len(body), size):
        yield body[i : i + size]


def _form(content: bytes, **fields: str) -> tuple[bytes, str]:
    base = {":action": "file_upload", "name": "demo", "version": "1.0"}
    return multipart({**base, **fields}, b"demo-1.0-py3-none-any.whl", content)


@pytest.mark.parametrize("size", [10, 70_000, 3 * 1024 * 1024 + 17, 21 * 1024 * 1024 + 5])
async def test_bytes_and_digests_survive_any_size(tmp_path, size):
    """Inline (small), one batch, several batches, and more than MAX_INFLIGHT_BYTES queued."""
    assert 21 * 1024 * 1024 > form_module.MAX_INFLIGHT_BYTES + 2 * form_module.FLUSH_BYTES
    content = random.Random(size).randbytes(size)
    body, ctype = _form(content, sha256_digest=hashlib.sha256(content).hexdigest())
    storage = LocalStorage(tmp_path / "files")
    form = await read_upload_form(ctype, _chunks(body, 65_536), storage, FormLimits(max_file_bytes=64 << 20))
    assert form.staged is not None and form.digests is not None
    form.staged.finish()
    assert form.staged.path.read_bytes() == content
    assert form.digests.sha256 == hashlib.sha256(content).hexdigest()
    assert form.digests.size == size
    assert (form.digests.md5, form.digests.blake2_256) == (None, None)  # sha256_digest came first


async def test_without_sha256_first_all_digests_are_computed(tmp_path):
    content = random.Random(1).randbytes(3 * 1024 * 1024)
    body, ctype = _form(content, md5_digest=hashlib.md5(content).hexdigest())
    form = await read_upload_form(
        ctype, _chunks(body, 65_536), LocalStorage(tmp_path / "files"), FormLimits(max_file_bytes=64 << 20)
    )
    assert form.digests is not None and form.staged is not None
    form.staged.finish()
    assert form.digests.md5 == hashlib.md5(content).hexdigest()
    assert form.digests.blake2_256 == hashlib.blake2b(content, digest_size=32).hexdigest()


@pytest.mark.parametrize(
    ("cut", "limit", "error"),
    [
        (-200, 64 << 20, InvalidRequestError),  # truncated: the final boundary never arrives
        (None, 5 * 1024 * 1024, UploadTooLargeError),  # over the limit, mid-stream
    ],
)
async def test_error_mid_stream_leaves_no_staged_file(tmp_path, cut, limit, error):
    content = random.Random(2).randbytes(12 * 1024 * 1024)
    body, ctype = _form(content, sha256_digest="0" * 64)
    storage = LocalStorage(tmp_path / "files")
    with pytest.raises(error):
        await read_upload_form(ctype, _chunks(body[:cut], 65_536), storage, FormLimits(max_file_bytes=limit))
    assert _files(storage.root) == []  # staged in place, and removed from there


async def test_a_slow_hash_and_an_error_mid_stream_stop_the_writer_thread(tmp_path, monkeypatch):
    """The writer thread behind the reader (hashing is its part: a slow CPU) when the upload fails
    on the event loop: the queued batches are dropped, nothing hangs, nothing is left."""
    write_batch = form_module._HashingSink._write

    def slow_write(self, chunks):
        time.sleep(0.02)
        write_batch(self, chunks)

    monkeypatch.setattr(form_module._HashingSink, "_write", slow_write)
    content = random.Random(3).randbytes(12 * 1024 * 1024)
    body, ctype = _form(content, sha256_digest="0" * 64)
    storage = LocalStorage(tmp_path / "files")
    with anyio.fail_after(20), pytest.raises(UploadTooLargeError):
        await read_upload_form(ctype, _chunks(body, 65_536), storage, FormLimits(max_file_bytes=5 * 1024 * 1024))
    assert _files(storage.root) == []


async def test_a_write_that_fails_mid_stream_is_the_error_and_leaves_nothing(tmp_path, monkeypatch):
    write = LocalStaged.write
    calls = []

    def failing_write(self, data):
        calls.append(len(data))
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, data)

    monkeypatch.setattr(LocalStaged, "write", failing_write)
    content = random.Random(4).randbytes(12 * 1024 * 1024)
    body, ctype = _form(content, sha256_digest=hashlib.sha256(content).hexdigest())
    storage = LocalStorage(tmp_path / "files")
    with anyio.fail_after(20), pytest.raises(OSError, match="No space left"):
        await read_upload_form(ctype, _chunks(body, 65_536), storage, FormLimits(max_file_bytes=64 << 20))
    assert _files(storage.root) == []


def _files(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_makedirs_reports_the_parents_of_new_directories(tmp_path):
    (tmp_path / "a").mkdir()
    assert _makedirs(tmp_path / "a") == []
    made = _makedirs(tmp_path / "a" / "b" / "c")
    assert sorted(made) == [tmp_path / "a", tmp_path / "a" / "b"]
    assert (tmp_path / "a" / "b" / "c").is_dir()


async def test_commit_writes_file_and_sidecar(tmp_path):
    storage = LocalStorage(tmp_path / "files")
    staged = storage.stage()
    staged.write(b"wheel bytes")
    await storage.commit(staged, "ab/cd/ef/x.whl", sidecars={"ab/cd/ef/x.whl.metadata": b"Name: x\n"})
    root = tmp_path / "files"
    assert (root / "ab/cd/ef/x.whl").read_bytes() == b"wheel bytes"
    assert (root / "ab/cd/ef/x.whl.metadata").read_bytes() == b"Name: x\n"
    assert list(storage.tmp.iterdir()) == []


async def test_keys_give_stored_times_and_skip_files_gone_meanwhile(tmp_path):
    storage = LocalStorage(tmp_path / "files")
    blob = tmp_path / "files" / "ab" / "cd" / "x.whl"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x")
    os.utime(blob, (1_000_000, 1_000_000))
    (blob.parent / "gone.whl").symlink_to(tmp_path / "nowhere")  # listed by the walk, then not found
    assert await storage.keys() == {"ab/cd/x.whl": 1_000_000}


def test_local_staged_file_is_written_back_early_and_fsynced(tmp_path, monkeypatch):
    """Local storage keeps the staged file: writeback starts every WRITEBACK_BYTES and finish()
    fsyncs it, so the upload is durable once committed."""
    from app.storage import local

    calls: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(local, "_SYNC_FILE_RANGE", lambda *args: calls.append("sync_file_range") or 0)
    staged = LocalStorage(tmp_path / "files").stage()
    for _ in range(9):
        staged.write(b"x" * (1024 * 1024))
    staged.finish()
    assert calls == ["sync_file_range", "sync_file_range", "fsync"]  # at 4 and 8 MiB, then the end


IN_PLACE = r"[0-9a-f]{2}/[0-9a-f]{14}-demo-1\.0-py3-none-any\.whl"


async def test_upload_is_staged_in_place_and_committed_by_a_rename(tmp_path):
    storage = LocalStorage(tmp_path / "files")
    staged = storage.stage("demo-1.0-py3-none-any.whl")
    assert staged.key is not None and re.fullmatch(IN_PLACE, staged.key)
    # Until the commit, only the ".part" name exists: nothing is under the key yet.
    assert _files(storage.root) == [f"{staged.key}.upload-{os.getpid()}.part"]
    staged.write(b"wheel bytes")
    await storage.commit(staged, staged.key, sidecars={staged.key + ".metadata": b"Name: demo\n"})
    assert _files(storage.root) == [staged.key, staged.key + ".metadata"]
    assert (storage.root / staged.key).read_bytes() == b"wheel bytes"
    assert (storage.root / (staged.key + ".metadata")).read_bytes() == b"Name: demo\n"
    assert list(storage.tmp.iterdir()) == []
    # Two uploads of the same filename never share a key.
    other = storage.stage("demo-1.0-py3-none-any.whl")
    assert other.key != staged.key
    await storage.discard(other)


@pytest.mark.parametrize("filename", ["../demo-1.0.tar.gz", ".demo-1.0.tar.gz", "a\\b.whl", "x" * 201 + ".whl", None])
async def test_names_that_are_not_plain_are_staged_in_tmp(tmp_path, filename):
    storage = LocalStorage(tmp_path / "files")
    staged = storage.stage(filename)
    assert staged.key is None and staged.path.parent == storage.tmp
    await storage.discard(staged)
    assert _files(storage.root) == []


def test_a_failed_fsync_is_not_forgotten(tmp_path, monkeypatch):
    """After a failed fsync Linux may mark the lost pages clean, so a second fsync can succeed
    with the bytes not on disk: finish() (started early by the upload, called again by the commit)
    keeps failing once it has failed."""
    staged = LocalStaged(tmp_path)
    staged.write(b"wheel bytes")
    calls = []

    def failing(fd):
        calls.append(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="Input/output error"):
        staged.start_finish().result()
    monkeypatch.undo()
    with pytest.raises(OSError, match="an earlier fsync of this file failed: Input/output error"):
        staged.finish()
    assert len(calls) == 1
    staged._fh.close()


async def test_failed_in_place_commit_leaves_only_what_discard_removes(tmp_path, monkeypatch):
    """A commit that fails (here: the directory's fsync) removes the sidecars it wrote; the upload's
    discard then removes the file itself, renamed or not: nothing is left under any key."""
    storage = LocalStorage(tmp_path / "files")
    staged = storage.stage("demo-1.0-py3-none-any.whl")
    staged.write(b"wheel bytes")

    def failing(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(local, "fsync_dir", failing)
    with pytest.raises(OSError):
        await storage.commit(staged, staged.key, sidecars={staged.key + ".metadata": b"Name: demo\n"})
    assert _files(storage.root) == [staged.key]
    await storage.discard(staged)
    assert _files(storage.root) == []


async def test_sweep_removes_in_place_uploads_of_dead_processes_only(tmp_path):
    storage = LocalStorage(tmp_path / "files")
    live = storage.stage("demo-1.0-py3-none-any.whl")
    dead = storage.root / "ab" / "0123456789abcd-demo-1.0.tar.gz.upload-999999999.part"
    dead.parent.mkdir(exist_ok=True)
    dead.write_bytes(b"half an upload")
    committed = storage.root / "ab" / "0123456789abce-demo-2.0.tar.gz"
    committed.write_bytes(b"a stored file")
    assert storage.sweep_temporary() == 0  # .tmp only
    assert storage.sweep_in_place() == 1
    assert not dead.exists() and committed.exists() and live.path.exists()
    await storage.discard(live)


async def test_spares_of_a_dead_server_are_swept(tmp_path):
    """Spares a crashed server made, including the "<14 hex>m" sidecar spares of earlier versions,
    are removed by the start-up sweep (not counted: they never held an upload); a live process's
    are kept, and only theirs are hidden from `packhouse check`."""
    storage = LocalStorage(tmp_path / "files")
    storage.replenish()
    mine = _files(storage.root)
    (storage.root / "ab").mkdir(exist_ok=True)
    left = [storage.root / "ab" / f"0123456789abcd{m}.upload-999999999.part" for m in ("", "m")]
    for path in left:
        path.touch()
    assert all(local.is_spare_part(path.name) for path in left)
    assert sorted(await storage.keys()) == [f"ab/{path.name}" for path in left]
    assert storage.sweep_in_place() == 0
    assert not any(path.exists() for path in left) and _files(storage.root) == mine
    storage.release_spares()
    assert _files(storage.root) == []


SPARE = r"[0-9a-f]{2}/[0-9a-f]{14}\.upload-\d+\.part"


async def test_spare_files_made_ahead_become_the_uploads(tmp_path):
    """replenish() creates part files ahead of the next uploads (creating a file is what costs, on
    a cold disk): staging renames one. Nothing else is created on the way, nothing is left over."""
    storage = LocalStorage(tmp_path / "files")
    storage.replenish()
    spares = _files(storage.root)
    assert len(spares) == local.SPARE_PARTS and all(re.fullmatch(SPARE, f) for f in spares)
    assert all(local.is_spare_part(f.split("/")[1]) for f in spares)
    inodes = {(storage.root / f).stat().st_ino for f in spares}
    assert await storage.keys() == {}  # a running server's spares are never keys (packhouse check)

    wheel = storage.stage("demo-1.0-py3-none-any.whl")
    assert wheel.key is not None and re.fullmatch(IN_PLACE, wheel.key)
    wheel.write(b"wheel bytes")
    await storage.commit(wheel, wheel.key)
    assert (storage.root / wheel.key).stat().st_ino in inodes
    assert (storage.root / wheel.key).read_bytes() == b"wheel bytes"

    # A discarded upload removes its own.
    storage.replenish()
    gone = storage.stage("demo-2.0.tar.gz")
    await storage.discard(gone)
    left = [f for f in _files(storage.root) if re.fullmatch(SPARE, f)]
    assert len(left) == local.SPARE_PARTS - 1
    assert sorted(set(_files(storage.root)) - set(left)) == [wheel.key]
    storage.release_spares()  # at shutdown
    assert _files(storage.root) == [wheel.key]


async def test_a_spare_removed_by_hand_is_replaced_by_a_new_file(tmp_path):
    storage = LocalStorage(tmp_path / "files")
    storage.replenish()
    for f in _files(storage.root):
        (storage.root / f).unlink()
    staged = storage.stage("demo-1.0-py3-none-any.whl")
    staged.write(b"wheel bytes")
    await storage.commit(staged, staged.key, sidecars={staged.key + ".metadata": b"Name: demo\n"})
    assert sorted(_files(storage.root)) == sorted([staged.key, staged.key + ".metadata"])
    assert (storage.root / (staged.key + ".metadata")).read_bytes() == b"Name: demo\n"
    storage.release_spares()


async def test_sweep_removes_a_dead_process_spares_without_counting_them(tmp_path):
    storage = LocalStorage(tmp_path / "files")
    (storage.root / "ab").mkdir(parents=True)
    for name in ("0123456789abcd.upload-999999999.part", "0123456789abcdm.upload-999999999.part"):
        (storage.root / "ab" / name).write_bytes(b"")
    dead_upload = storage.root / "ab" / "0123456789abce-demo-1.0.tar.gz.upload-999999999.part"
    dead_upload.write_bytes(b"half an upload")
    assert sorted(await storage.keys()) == sorted(_files(storage.root))  # a dead process's: listed
    assert storage.sweep_in_place() == 1  # the interrupted upload; its spares go silently
    assert _files(storage.root) == []
