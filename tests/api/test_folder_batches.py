"""A package folder's files are indexed ``scan.BATCH`` rows per transaction (one transaction and
fsync per file was most of a large folder's first start). The rows must be those a file at a time
gave: each project with its files, its name as first written, its serial the id of its last
journal entry (the page caches key on it); and a file another worker indexed first is a
duplicate, not a failed batch."""

from __future__ import annotations

import errno
import os
import shutil
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db.models import Event, File, Project
from app.services import scan
from app.services.scan import FolderIndexer, ScanReport
from app.services.upload import new_storage_key
from tests.support.builders import make_sdist, make_wheel
from tests.support.forms import upload_form

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
OLD = time.time() - 3600  # older than the rescan's settle time


def _old(path: Path) -> Path:
    os.utime(path, (OLD, OLD))
    return path


def _filenames(client, project: str) -> set[str]:
    r = client.get(f"/simple/{project}/", headers=JSON)
    assert r.status_code == 200, r.text
    return {f["filename"] for f in r.json()["files"]}


def _rows(client) -> tuple[dict[str, tuple[str, int]], dict[str, int], dict[str, int]]:
    """(normalised name -> (name, serial), normalised name -> its last journal entry's id,
    filename -> how many rows and import entries it has)."""
    sessions = client.app.state.manage.sessions

    async def read():
        async with sessions() as session:
            projects = {n: (name, serial) for n, name, serial in await session.execute(
                select(Project.normalized_name, Project.name, Project.serial))}  # fmt: skip
            last = dict(
                (await session.execute(select(Event.project, func.max(Event.id)).group_by(Event.project))).all()
            )
            counts: dict[str, int] = {}
            for (filename,) in await session.execute(select(File.filename)):
                counts[filename] = counts.get(filename, 0) + 1
            for (filename,) in await session.execute(select(Event.filename).where(Event.action == "import")):
                counts[filename] = counts.get(filename, 0) + 1
            return projects, last, counts

    return client.portal.call(read)


def test_a_folder_indexed_in_batches_gives_every_project_its_files_and_serial(make_client, tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "BATCH", 3)  # 11 archives: four batches, projects across them
    packages = tmp_path / "packages"
    (packages / "a").mkdir(parents=True)
    (packages / "b").mkdir()
    made = [
        *(_old(make_wheel(packages, "Spread.Out", f"1.{i}")) for i in range(4)),
        _old(make_sdist(packages, "Spread.Out", "1.0")),
        *(_old(make_wheel(packages / "a", "alone", f"2.{i}")) for i in range(2)),
        *(_old(make_wheel(packages, f"single-{i}", "0.1")) for i in range(3)),
    ]
    twin = _old(make_wheel(packages / "b", "alone", "2.0"))  # the same filename in another subfolder
    client = make_client(packages_dir=packages, rescan_interval=0)

    assert _filenames(client, "spread-out") == {p.name for p in made[:5]}
    assert _filenames(client, "alone") == {p.name for p in made[5:7]}
    for i in range(3):
        assert _filenames(client, f"single-{i}") == {f"single_{i}-0.1-py3-none-any.whl"}
    projects, last, counts = _rows(client)
    assert projects["spread-out"][0] == "Spread.Out"  # as its metadata spells it
    assert {n: serial for n, (_, serial) in projects.items()} == last
    assert counts == {p.name: 2 for p in made}  # one row and one journal entry each, the twin none
    # Each wheel's PEP 658 metadata file was written beside the index, nothing left in tmp/.
    state = packages / ".packhouse"
    assert (state / "metadata" / "a" / f"{made[5].name}.metadata").read_bytes().startswith(b"Metadata-Version")
    assert not any((state / "tmp").iterdir())
    r = client.get(f"/files/alone/{made[5].name}.metadata")
    assert r.status_code == 200 and b"Name: alone" in r.content
    assert twin.exists()

    # A later upload and a later batch move the serial on: the page's ETag changes with them.
    etag = client.get("/simple/spread-out/").headers["etag"]
    data, files = upload_form(make_wheel(tmp_path, "spread.out", "9.0"))
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    after_upload = client.get("/simple/spread-out/")
    assert after_upload.headers["etag"] != etag and "spread_out-9.0-py3-none-any.whl" in after_upload.text
    _old(make_wheel(packages, "spread-out", "10.0"))
    _old(make_wheel(packages, "brand-new", "1.0"))
    report = client.portal.call(
        FolderIndexer(client.app.state.manage.sessions, client.app.state.manage.storage).sync_in_place, [packages]
    )
    assert sorted(report.added) == ["brand_new-1.0-py3-none-any.whl", "spread_out-10.0-py3-none-any.whl"]
    latest = client.get("/simple/spread-out/")
    assert latest.headers["etag"] != after_upload.headers["etag"] and "spread_out-10.0" in latest.text
    projects, last, _ = _rows(client)
    assert projects["spread-out"][0] == "Spread.Out"  # the name stays as first written
    assert {n: serial for n, (_, serial) in projects.items()} == last


@pytest.mark.parametrize("raced", [0, 2])
def test_a_file_another_worker_indexed_first_is_a_duplicate_and_the_rest_of_its_batch_is_indexed(
    make_client, tmp_path, monkeypatch, raced
):
    """Two workers scan one folder at start: the other one commits a row of this batch first. The
    batch's transaction fails on it and is rolled back; each file is then inserted on its own."""
    packages = tmp_path / "packages"
    packages.mkdir()
    client = make_client(packages_dir=packages, rescan_interval=0)  # rescans run by hand here
    sessions, storage = client.app.state.manage.sessions, client.app.state.manage.storage
    wheels = [_old(make_wheel(packages, "raced", f"1.{i}")) for i in range(4)]
    monkeypatch.setattr(scan, "BATCH", 10)

    class _OtherWorkerFirst(FolderIndexer):
        async def _insert(self, batch, report, **kw):
            if len(batch) > 1:  # the batch, not the one-by-one retries
                other = ScanReport()
                await FolderIndexer(sessions, storage)._insert([batch[raced]], other)
                assert other.added == [wheels[raced].name]
            await super()._insert(batch, report, **kw)

    report = client.portal.call(_OtherWorkerFirst(sessions, storage).sync_in_place, [packages])
    assert report.duplicates == [wheels[raced].name]
    assert report.added == [w.name for i, w in enumerate(wheels) if i != raced]
    assert _filenames(client, "raced") == {w.name for w in wheels}
    projects, last, counts = _rows(client)
    assert counts == {w.name: 2 for w in wheels}  # the rolled-back batch left no row nor entry
    assert projects["raced"][1] == last["raced"]


def test_a_batch_is_committed_early_once_its_readmes_add_up(make_client, tmp_path, monkeypatch):
    """A batch holds its files' READMEs until it commits (a README may be megabytes): it commits
    once they add up to BATCH_TEXT characters, whatever its length."""
    packages = tmp_path / "packages"
    packages.mkdir()
    client = make_client(packages_dir=packages, rescan_interval=0)  # rescans run by hand here
    sessions, storage = client.app.state.manage.sessions, client.app.state.manage.storage
    readme = "# Big\n\n" + "words " * 2_000  # 12 KB each
    wheels = [_old(make_wheel(packages, f"readme-{i}", "1.0", description=readme)) for i in range(5)]
    monkeypatch.setattr(scan, "BATCH_TEXT", 2 * len(readme))
    batches: list[int] = []

    class _Counting(FolderIndexer):
        async def _insert(self, batch, report, **kw):
            batches.append(len(batch))
            await super()._insert(batch, report, **kw)

    report = client.portal.call(_Counting(sessions, storage).sync_in_place, [packages])
    assert batches == [2, 2, 1]
    assert sorted(report.added) == sorted(w.name for w in wheels)
    r = client.get("/ui/project/readme-3/")
    assert r.status_code == 200 and "words words" in r.text


def _folder_of_every_kind(root: Path) -> None:
    """Wheels and sdists in subfolders, broken archives, an invalid Requires-Python (a warning),
    metadata that contradicts its filename, a file of another type."""
    (root / "sub" / "deeper").mkdir(parents=True)
    for i in range(7):
        _old(make_wheel(root, f"pool-{i % 3}", f"1.{i}"))
        _old(make_sdist(root / "sub", f"pool-{i % 3}", f"1.{i}"))
    _old(make_wheel(root / "sub" / "deeper", "pool-reqpy", "1.0", requires_python=">= three"))
    _old(make_wheel(root, "pool-liar", "1.0", metadata="Metadata-Version: 2.1\nName: other\nVersion: 9\n"))
    (root / "sub" / "pool_broken-1.0.tar.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    (root / "pool_empty-1.0-py3-none-any.whl").write_bytes(b"")
    (root / "notes.txt").write_text("not a distribution")
    for path in root.rglob("*"):
        _old(path)


def _index_state(client, packages: Path) -> tuple[list[tuple[object, ...]], dict[str, bytes]]:
    """Every file row (what the index serves of it) and every PEP 658 metadata file's bytes."""
    sessions = client.app.state.manage.sessions

    async def read():
        async with sessions() as session:
            columns = [c for c in File.__table__.c if c.name not in ("id", "project_id")]
            return sorted(tuple(row) for row in await session.execute(select(*columns)))

    metadata = packages / ".packhouse" / "metadata"
    files = {str(p.relative_to(metadata)): p.read_bytes() for p in metadata.rglob("*") if p.is_file()}
    return client.portal.call(read), files


class _NoWorkers(ProcessPoolExecutor):
    """A machine where worker processes cannot be started (no /dev/shm for their locks, say)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")


class _WorkersDie(ProcessPoolExecutor):
    """Worker processes that the OOM killer takes once they have answered for one chunk."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        if getattr(self, "answered", 0) >= 1:
            dead: Future[object] = Future()
            dead.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
            return dead
        self.answered = 1
        return super().submit(fn, *args, **kwargs)


@pytest.mark.parametrize("workers", ["pool", "cannot-start", "die"])
def test_a_large_folder_read_by_worker_processes_is_indexed_as_one_file_at_a_time_did(
    make_client, tmp_path, monkeypatch, caplog, workers
):
    """A first start on a folder of POOL_MIN_FILES new files or more reads them in worker
    processes (scan._prepared_in_pool). The rows, the metadata files, the reports and the log
    lines must be those of reading them one at a time; and so they must be when the workers
    cannot be started, or die midway (the server reads what they left, with a warning)."""
    states, logs, used = [], [], []
    real = scan._prepared_in_pool
    _folder_of_every_kind(tmp_path / "made")
    monkeypatch.setattr(scan, "_prepared_in_pool", lambda *a: used.append(1) or real(*a))
    if workers != "pool":
        monkeypatch.setattr(scan, "ProcessPoolExecutor", _NoWorkers if workers == "cannot-start" else _WorkersDie)
    for pooled in (False, True):
        packages = tmp_path / f"packages-{pooled}"
        shutil.copytree(tmp_path / "made", packages)  # the same bytes and times
        monkeypatch.setattr(scan, "POOL_MIN_FILES", 1 if pooled else 10**9)
        monkeypatch.setattr(scan, "POOL_CHUNK", 3)  # several chunks, more than the workers hold at once
        monkeypatch.setattr(scan, "_pool_size", lambda: 2)  # a machine with one CPU too
        caplog.clear()
        with caplog.at_level("INFO", logger="packhouse.scan"):
            client = make_client(packages_dir=packages, rescan_interval=0, data_dir=tmp_path / f"data-{pooled}")
        assert used == ([1] if pooled else [])  # the pool read them, or it did not
        states.append(_index_state(client, packages))
        logs.append(sorted(r.getMessage().replace(str(packages), "PACKAGES") for r in caplog.records))
    assert states[0] == states[1]
    rows, metadata = states[1]
    assert len(rows) == 7 + 7 + 1  # the wheels, the sdists, the one with an invalid Requires-Python
    assert len(metadata) == 7 + 1
    warned = {"pool": [], "cannot-start": ["could not start worker processes to read the package folder"],
              "die": ["a worker process reading the package folder died"]}[workers]  # fmt: skip
    extra = [line for line in logs[1] if line not in logs[0]]
    assert [line.split(" (")[0] for line in extra] == warned, extra
    assert [line for line in logs[1] if line not in extra] == logs[0]
    said = "\n".join(logs[1])
    for expected in ("Requires-Python '>= three' is not a version specifier", "pool_broken-1.0.tar.gz",
                     "pool_empty-1.0-py3-none-any.whl", "pool_liar-1.0-py3-none-any.whl", "notes.txt"):  # fmt: skip
        assert expected in said, said


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_file_imported_by_someone_else_first_leaves_no_copy_behind(make_client, tmp_path, request, store):
    """``packhouse import`` lists the index, then copies each file in under a key of its own and
    inserts its row. If the filename is indexed meanwhile (an upload, another import run), the row
    is a duplicate, and its copy, which no row refers to, is removed at once (not left as an orphan
    for ``check --repair``)."""
    if store == "s3":
        s3 = request.getfixturevalue("s3")
        client = make_client(storage=s3.storage_url, s3_endpoint_url=s3.server.endpoint)
    else:
        client = make_client()
    sessions, storage = client.app.state.manage.sessions, client.app.state.manage.storage
    source = tmp_path / "old-folder"
    source.mkdir()
    wheel = make_wheel(source, "raced-import", "1.0")
    first, ours = ScanReport(), []

    def key_for(sha: str, filename: str, _rel: str) -> str:
        return new_storage_key(sha, filename)

    class _ImportedMeanwhile(FolderIndexer):
        async def _insert(self, batch, report, **kw):
            ours.append(batch[0].key)
            first.added += (await FolderIndexer(sessions, storage).import_folder(source, key_for)).added
            await super()._insert(batch, report, **kw)

    report = client.portal.call(_ImportedMeanwhile(sessions, storage).import_folder, source, key_for)
    assert (first.added, report.added, report.duplicates) == ([wheel.name], [], [wheel.name])
    (row_key,) = client.portal.call(_storage_keys, sessions)
    stored = client.portal.call(storage.keys)
    assert row_key in stored and ours[0] != row_key
    assert not [key for key in stored if key.startswith(ours[0])], stored  # the copy, its metadata
    assert client.get(f"/files/raced-import/{wheel.name}").content == wheel.read_bytes()


async def _storage_keys(sessions) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(select(File.storage_key))).scalars())
