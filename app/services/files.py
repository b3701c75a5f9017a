"""Download lookup: a public URL (project + filename) -> what to deliver. URLs come from rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import dists
from app.db import repo
from app.db.base import as_utc
from app.db.models import Project
from app.db.serials import Serials, SessionSerials
from app.errors import DistFileNotFoundError, ProjectQuarantinedError
from app.services.lru import Lru
from app.services.metadata import METADATA_SUFFIX, core_metadata
from app.storage.base import Delivery, Storage
from app.storage.flat import FlatLocalStorage

SMALL_ENTRIES = 4096
SMALL_MAX_BYTES = 256 * 1024
FILES_CACHED = 100_000  # file rows kept for downloads, all projects together (~25 MB at most)


@dataclass(frozen=True, slots=True)
class FileDownload:
    filename: str
    delivery: Delivery | None  # None when ``data`` holds the bytes
    sha256: str  # of the bytes delivered (the file, or its PEP 658 metadata)
    size: int | None
    modified: datetime
    data: bytes | None = None  # the bytes themselves, for small immutable ones (PEP 658 metadata)


@dataclass(frozen=True, slots=True)
class _Stored:
    """What a download needs of a file's row."""

    storage_key: str
    sha256: str
    size: int
    metadata_sha256: str | None
    upload_time: datetime


@dataclass(frozen=True, slots=True)
class _Files:
    """A project's files as of one serial (filename -> row), and whether it is quarantined."""

    by_name: dict[str, _Stored]
    quarantined: bool = False

    def weight(self) -> int:
        """The rows it holds, as the download rows' bound counts them."""
        return len(self.by_name)


class FileService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        serials: Serials | None = None,
        files_cached: int = FILES_CACHED,
    ) -> None:
        self.sessions = sessions
        self.storage = storage
        # PEP 658 metadata files are small and fetched by every resolve: keep them in memory instead
        # of stat + open + read + close in threads each time (or a round trip to S3). Keyed by the
        # row's metadata sha256 too: a flat (pypiserver-mode) key is reused by --overwrite.
        self._small: Lru[tuple[str, str], bytes] = Lru(SMALL_ENTRIES)
        # Each project's files (filename -> row), keyed by the project's serial, as the simple pages
        # are (app/services/index.py): a download costs one serial lookup (app/db/serials.py), not
        # a query through a session. Every upload, delete, yank and --overwrite changes the serial
        # in the database, so every worker and replica reloads on its next download.
        self.serials: Serials = serials or SessionSerials(sessions)
        # Bounded by the rows held, all projects together; the project just loaded always stays.
        self._projects: Lru[str, tuple[int, _Files]] = Lru(files_cached, lambda kept: kept[1].weight(), keep=1)

    async def _files_of(self, name: str) -> _Files:
        serial = await self.serials.project(name)
        if serial is None:
            return _Files({})
        cached = self._projects.recall(name)
        if cached is not None and cached[0] == serial:
            return cached[1]
        async with self.sessions() as session:
            # Read the serial again before the rows: the map is keyed by a serial no newer than
            # the rows it holds (a later change bumps the serial, and the next download reloads).
            serial = await repo.project_serial(session, name)
            rows = await repo.download_rows(session, name) if serial is not None else ()
        files = _Files(
            {r.filename: _Stored(r.storage_key, r.sha256, r.size, r.metadata_sha256, r.upload_time) for r in rows},
            quarantined=bool(rows) and rows[0].status == "quarantined",  # each row carries its project's
        )
        if serial is not None:
            self._projects.remember(name, (serial, files))
        return files

    async def find(self, project: str, filename: str) -> FileDownload:
        """Raises DistFileNotFoundError (also when the stored bytes have gone missing),
        ProjectQuarantinedError (PEP 792: a quarantined project's file)."""
        want_metadata = filename.endswith(METADATA_SUFFIX)
        dist_name = filename[: -len(METADATA_SUFFIX)] if want_metadata else filename
        files = await self._files_of(dists.normalize(project))
        row = files.by_name.get(dist_name)
        if row is None or (want_metadata and not row.metadata_sha256):
            raise DistFileNotFoundError(f"No file {filename!r} in project {project!r}.")
        if files.quarantined:
            raise ProjectQuarantinedError(
                f"{dists.normalize(project)} is quarantined on this index (PEP 792): none of its files is "
                "served. Ask the index's administrators why; they lift it with "
                f"'packhouse status {dists.normalize(project)} active'."
            )
        delivery: Delivery | None = None
        data = None
        try:
            if not want_metadata:
                delivery = await self.storage.delivery(row.storage_key)
            elif (small := self._small.recall((row.storage_key, row.metadata_sha256 or ""))) is not None:
                data = small
            else:
                # Served from memory, checked against the row (rebuilt from the wheel if need be).
                assert row.metadata_sha256 is not None
                data = await core_metadata(
                    self.storage, row.storage_key, dist_name, row.metadata_sha256, store_back=self.sessions
                )
                if len(data) <= SMALL_MAX_BYTES:
                    self._small.remember((row.storage_key, row.metadata_sha256), data)
        except FileNotFoundError:
            raise DistFileNotFoundError(
                f"The stored bytes of {filename!r} are missing; run 'packhouse check' on the server."
            ) from None
        modified = as_utc(row.upload_time)
        sha = row.metadata_sha256 if want_metadata else row.sha256
        assert sha is not None
        return FileDownload(filename, delivery, sha, None if want_metadata else row.size, modified, data)


async def find_by_filename(service: FileService, filename: str) -> FileDownload:
    """pypiserver's ``/packages/<filename>`` URLs (still found in old requirements files): filenames
    are unique in the index, so the filename alone finds the file. Raises DistFileNotFoundError."""
    dist_name = filename[: -len(METADATA_SUFFIX)] if filename.endswith(METADATA_SUFFIX) else filename
    async with service.sessions() as session:
        row = await session.run_sync(repo.file_by_filename, dist_name)
        project = (await session.get(Project, row.project_id)) if row is not None else None
    if row is None or project is None:
        raise DistFileNotFoundError(f"No file {filename!r} in this index.")
    return await service.find(project.normalized_name, filename)


def folder_path(storage_key: str) -> str:
    """A package-folder storage key as pypiserver's path under ``/packages/``: the path relative to
    its own folder (``sub/x.whl``; a further PACKAGES_DIR's ``@2/sub/x.whl`` is ``sub/x.whl`` too)."""
    return storage_key.partition("/")[2] if storage_key.startswith("@") else storage_key


def serves_folders(service: FileService) -> bool:
    """Whether the index is pypiserver's package folders (``packhouse run``), not a files store."""
    return isinstance(service.storage, FlatLocalStorage)


async def folder_links(service: FileService) -> list[tuple[str, str, bool]]:
    """pypiserver's ``/packages/`` page: (path under /packages/, sha256, yanked) of every file."""
    async with service.sessions() as session:
        rows = await repo.folder_listing(session)
    return sorted((folder_path(key), sha256, yanked) for key, sha256, yanked in rows)


async def find_by_path(service: FileService, path: str) -> FileDownload:
    """pypiserver's ``/packages/<subfolder>/<filename>`` URLs: the file at that path in its package
    folder (``packhouse run``). Raises DistFileNotFoundError, with its own message for a path that
    tries to leave the folder (``..``, ``.``, an empty or absolute part, a backslash): such a path
    never names a file, and is never looked up."""
    parts = path.split("/")
    if any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts):
        raise DistFileNotFoundError(
            f"No file {path!r}: paths under /packages/ have no '..', '.' or empty parts and no backslashes."
        )
    dist_path = path.removesuffix(METADATA_SUFFIX)
    found = None
    if serves_folders(service) and not any(part.startswith(".") for part in parts):
        async with service.sessions() as session:
            row = await session.run_sync(repo.file_by_filename, parts[-1].removesuffix(METADATA_SUFFIX))
            if row is not None and folder_path(row.storage_key) == dist_path:
                found = await session.get(Project, row.project_id)
    if found is None:
        raise DistFileNotFoundError(f"No file {path!r} in the package folders.")
    return await service.find(found.normalized_name, parts[-1])
