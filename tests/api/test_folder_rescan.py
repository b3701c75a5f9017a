"""A package folder (``packhouse run DIR``) whose files are deleted by hand, as pypiserver users do:
the rescan forgets the file's row and removes its PEP 658 metadata file from ``.packhouse/metadata/``
(nothing else would), and leaves every other metadata file alone."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urljoin

from app.services.manage import ManageService
from app.services.scan import FolderIndexer
from tests.support.builders import make_wheel
from tests.support.forms import upload_form

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
OLD = time.time() - 3600  # older than the rescan's settle time


def _old(path: Path) -> Path:
    os.utime(path, (OLD, OLD))
    return path


def _files(client, project: str) -> dict[str, dict]:
    r = client.get(f"/simple/{project}/", headers=JSON)
    return {f["filename"]: f for f in r.json()["files"]} if r.status_code == 200 else {}


def _metadata(client, project: str, filename: str) -> bytes:
    """The PEP 658 metadata the project page advertises for ``filename``, fetched as pip does."""
    f = _files(client, project)[filename]
    assert f["core-metadata"], f
    r = client.get(urljoin(f"http://testserver/simple/{project}/", f["url"]) + ".metadata")
    assert r.status_code == 200, r.text
    assert r.content.startswith(b"Metadata-Version")
    return r.content


def _wait_for(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"the rescan never {what}"
        time.sleep(0.05)


def test_a_wheel_deleted_by_hand_takes_its_metadata_file_with_it(make_client, tmp_path):
    packages, scratch = tmp_path / "packages", tmp_path / "scratch"
    (packages / "nested").mkdir(parents=True)
    scratch.mkdir()
    kept = _old(make_wheel(packages, "kept", "1.0"))
    dropped = _old(make_wheel(packages / "nested", "dropped", "1.0"))  # key: nested/<filename>
    client = make_client(packages_dir=packages, rescan_interval=0.2)
    uploaded = make_wheel(scratch, "uploaded", "1.0")
    data, files = upload_form(uploaded)
    assert client.post("/legacy/", data=data, files=files).status_code == 200
    assert (packages / uploaded.name).read_bytes() == uploaded.read_bytes()

    metadata = packages / ".packhouse" / "metadata"
    sidecars = {
        "kept": metadata / f"{kept.name}.metadata",
        "dropped": metadata / "nested" / f"{dropped.name}.metadata",
        "uploaded": metadata / f"{uploaded.name}.metadata",
    }
    served = {project: _metadata(client, project, f"{project}-1.0-py3-none-any.whl") for project in sidecars}
    for project, sidecar in sidecars.items():
        assert sidecar.read_bytes() == served[project]
    kept_stat = sidecars["kept"].stat()
    gone = shutil.copy2(packages / "nested" / dropped.name, scratch / dropped.name)  # for later

    (packages / "nested" / dropped.name).unlink()
    (packages / uploaded.name).unlink()
    for project in ("dropped", "uploaded"):
        _wait_for(lambda p=project: not _files(client, p), f"forgot {project}")
        _wait_for(lambda p=project: not sidecars[p].exists(), f"removed the metadata file of {project}")
        assert client.get(f"/simple/{project}/").status_code == 404
        assert client.get(f"/files/{project}/{project}-1.0-py3-none-any.whl.metadata").status_code == 404
    assert not (metadata / "nested").exists()  # the subfolder its metadata file left empty
    # Only the metadata files were removed: nothing else in the folder changed.
    assert sidecars["kept"].read_bytes() == served["kept"]
    assert sidecars["kept"].stat().st_mtime_ns == kept_stat.st_mtime_ns
    assert sorted(p.relative_to(metadata).as_posix() for p in metadata.rglob("*") if p.is_file()) == [
        f"{kept.name}.metadata"
    ]
    assert kept.exists() and _metadata(client, "kept", kept.name) == served["kept"]

    # The same wheel copied in again is indexed again, and its metadata served and stored again.
    shutil.copy2(gone, packages / "nested" / dropped.name)
    _wait_for(lambda: _files(client, "dropped"), "indexed dropped again")
    assert _metadata(client, "dropped", dropped.name) == served["dropped"]
    assert sidecars["dropped"].read_bytes() == served["dropped"]
    assert sidecars["kept"].stat().st_mtime_ns == kept_stat.st_mtime_ns


def test_the_metadata_file_of_a_wheel_indexed_again_meanwhile_stays(make_client, tmp_path):
    """Two rescans at once (workers or replicas over one folder): the wheel is deleted, one rescan
    forgets its row, and before it removes the metadata file the wheel is back and another rescan
    has indexed it again. The metadata file is kept: a row refers to it again."""
    packages = tmp_path / "packages"
    packages.mkdir()
    wheel = _old(make_wheel(packages, "again", "1.0"))
    copy = wheel.read_bytes()
    client = make_client(packages_dir=packages, rescan_interval=0)  # rescans run by hand here
    state = client.app.state
    sessions, storage = state.manage.sessions, state.manage.storage
    sidecar = packages / ".packhouse" / "metadata" / f"{wheel.name}.metadata"
    served = _metadata(client, "again", wheel.name)
    other = FolderIndexer(sessions, storage)

    class _IndexedAgainFirst(ManageService):
        async def forget_blobs(self, keys, *, metadata_only=False):
            wheel.write_bytes(copy)
            _old(wheel)
            added = await other.sync_in_place(storage.roots)
            assert added.added == [wheel.name]
            await super().forget_blobs(keys, metadata_only=metadata_only)

    indexer = FolderIndexer(sessions, storage)
    indexer.manage = _IndexedAgainFirst(sessions, storage)
    wheel.unlink()
    report = client.portal.call(indexer.sync_in_place, storage.roots)
    assert report.removed == [wheel.name]
    assert sidecar.read_bytes() == served
    assert _metadata(client, "again", wheel.name) == served


def test_a_file_copied_in_under_the_name_meanwhile_is_the_owners(make_client, tmp_path):
    """The wheel is deleted and its row forgotten; before the metadata file is removed, the owner
    copies in a rebuilt wheel under the same name (other bytes). Only the metadata file is
    removed: the new wheel stays, and the next rescan indexes it with its own metadata."""
    packages, scratch = tmp_path / "packages", tmp_path / "scratch"
    packages.mkdir()
    scratch.mkdir()
    wheel = _old(make_wheel(packages, "rebuilt", "1.0"))
    rebuilt = make_wheel(scratch, "rebuilt", "1.0", summary="rebuilt")
    assert rebuilt.read_bytes() != wheel.read_bytes()
    client = make_client(packages_dir=packages, rescan_interval=0)  # rescans run by hand here
    state = client.app.state
    sessions, storage = state.manage.sessions, state.manage.storage
    sidecar = packages / ".packhouse" / "metadata" / f"{wheel.name}.metadata"
    first = _metadata(client, "rebuilt", wheel.name)

    class _CopiedInFirst(ManageService):
        async def forget_blobs(self, keys, *, metadata_only=False):
            _old(Path(shutil.copy2(rebuilt, wheel)))
            await super().forget_blobs(keys, metadata_only=metadata_only)

    indexer = FolderIndexer(sessions, storage)
    indexer.manage = _CopiedInFirst(sessions, storage)
    wheel.unlink()
    assert client.portal.call(indexer.sync_in_place, storage.roots).removed == [wheel.name]
    assert wheel.read_bytes() == rebuilt.read_bytes() and not sidecar.exists()
    assert client.portal.call(indexer.sync_in_place, storage.roots).added == [wheel.name]
    second = _metadata(client, "rebuilt", wheel.name)
    assert second != first and b"Summary: rebuilt" in second and sidecar.read_bytes() == second


def test_two_rescans_forgetting_one_file_journal_it_once(make_client, tmp_path):
    """Two rescans at once (two workers over one folder) both see the wheel gone: the one that
    removes its row journals the removal; the other finds the row gone and records nothing."""
    packages = tmp_path / "packages"
    packages.mkdir()
    wheel = _old(make_wheel(packages, "twice", "1.0"))
    _old(make_wheel(packages, "twice", "2.0"))  # the project stays listed
    client = make_client(packages_dir=packages, rescan_interval=0)  # rescans run by hand here
    state = client.app.state
    sessions, storage = state.manage.sessions, state.manage.storage
    first = FolderIndexer(sessions, storage)

    class _Second(FolderIndexer):
        async def _forget(self, *args, **kwargs):
            # This rescan listed the row before the other one removed it.
            assert (await first.sync_in_place(storage.roots)).removed == [wheel.name]
            await super()._forget(*args, **kwargs)

    wheel.unlink()
    report = client.portal.call(_Second(sessions, storage).sync_in_place, storage.roots)
    assert report.removed == []
    events = client.get("/api/projects/twice/events").json()
    removals = [e for e in events if e["action"] == "remove"]
    assert [e["filename"] for e in removals] == [wheel.name]
    assert set(_files(client, "twice")) == {"twice-2.0-py3-none-any.whl"}


def test_a_file_replaced_by_hand_is_indexed_again_with_its_new_digest(make_client, tmp_path):
    """A rebuilt wheel copied over the indexed one (pypiserver users do): the index publishes the
    new sha256 and metadata (pip would refuse the old digest), and a file only touched keeps its row."""
    packages, scratch = tmp_path / "packages", tmp_path / "scratch"
    packages.mkdir()
    scratch.mkdir()
    swapped = _old(make_wheel(packages, "swapped", "1.0", summary="first build"))
    touched = _old(make_wheel(packages, "touched", "1.0"))
    client = make_client(packages_dir=packages, rescan_interval=0.2)
    before = {p: _files(client, p)[f"{p}-1.0-py3-none-any.whl"]["hashes"]["sha256"] for p in ("swapped", "touched")}
    assert b"first build" in _metadata(client, "swapped", swapped.name)
    rebuilt = make_wheel(scratch, "swapped", "1.0", summary="second build, other bytes")
    shutil.copyfile(rebuilt, swapped)
    _old(swapped)  # as `cp -p` would leave it: an mtime older than the row's
    os.utime(touched, (OLD + 60, OLD + 60))
    digest = hashlib.sha256(rebuilt.read_bytes()).hexdigest()
    _wait_for(
        lambda: _files(client, "swapped").get(swapped.name, {}).get("hashes", {}).get("sha256") == digest,
        "indexed the replaced file again",
    )
    assert b"second build" in _metadata(client, "swapped", swapped.name)
    assert client.get(f"/files/swapped/{swapped.name}").content == rebuilt.read_bytes()
    time.sleep(0.6)  # more rescans
    assert _files(client, "touched")["touched-1.0-py3-none-any.whl"]["hashes"]["sha256"] == before["touched"]
    events = client.get("/api/projects/touched/events").json()
    assert [e["action"] for e in events] == ["import"], events


def test_the_server_stops_even_when_a_rescan_swallows_its_cancellation(make_settings, tmp_path, monkeypatch):
    """A library that turns the shutdown's cancellation into an error mid-rescan (the PostgreSQL
    driver's did) must not keep the rescan loop, and so the server, running for ever."""
    import asyncio
    import threading

    from starlette.testclient import TestClient

    from app import main

    packages = tmp_path / "packages"
    packages.mkdir()
    make_wheel(packages, "steady", "1.0")
    real, in_rescan, swallowed = main._sync_folder, threading.Event(), threading.Event()

    async def stubborn(indexer, roots, *, settle=True):
        await real(indexer, roots, settle=settle)
        if settle:  # a rescan, not the start's scan
            in_rescan.set()
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                swallowed.set()

    monkeypatch.setattr(main, "_sync_folder", stubborn)
    client = TestClient(main.create_app(make_settings(packages_dir=packages, rescan_interval=0.05)))
    client.__enter__()
    assert in_rescan.wait(20)
    stopping = threading.Thread(target=client.__exit__, args=(None, None, None), daemon=True)
    stopping.start()
    stopping.join(30)
    assert not stopping.is_alive(), "the server did not stop"
    assert swallowed.is_set()
