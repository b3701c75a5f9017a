"""Download lookup: a public URL (project + filename) -> what to deliver. URLs come from rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import dists
from app.db import repo
from app.db.models import Project
from app.errors import DistFileNotFoundError
from app.storage.base import Delivery, Storage

METADATA_SUFFIX = ".metadata"


@dataclass(frozen=True, slots=True)
class FileDownload:
    filename: str
    delivery: Delivery
    sha256: str  # of the bytes delivered (the file, or its PEP 658 metadata)
    size: int | None
    modified: datetime


class FileService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], storage: Storage) -> None:
        self.sessions = sessions
        self.storage = storage

    async def find(self, project: str, filename: str) -> FileDownload:
        """Raises DistFileNotFoundError (also when the stored bytes have gone missing)."""
        want_metadata = filename.endswith(METADATA_SUFFIX)
        dist_name = filename[: -len(METADATA_SUFFIX)] if want_metadata else filename
        async with self.sessions() as session:
            proj = await repo.get_project(session, dists.normalize(project))
            row = await repo.file_in_project(session, proj.id, dist_name) if proj else None
        if row is None or (want_metadata and not row.metadata_sha256):
            raise DistFileNotFoundError(f"No file {filename!r} in project {project!r}.")
        key = row.storage_key + (METADATA_SUFFIX if want_metadata else "")
        try:
            delivery = await self.storage.delivery(key)
        except FileNotFoundError:
            raise DistFileNotFoundError(
                f"The stored bytes of {filename!r} are missing; run 'packhouse check' on the server."
            ) from None
        modified = row.upload_time if row.upload_time.tzinfo else row.upload_time.replace(tzinfo=UTC)
        sha = row.metadata_sha256 if want_metadata else row.sha256
        assert sha is not None
        return FileDownload(filename, delivery, sha, None if want_metadata else row.size, modified)


async def find_by_filename(service: FileService, filename: str) -> FileDownload:
    """pypiserver's ``/packages/<filename>`` URLs (still found in old requirements files): filenames
    are unique in the index, so the filename alone finds the file. Raises DistFileNotFoundError."""
    dist_name = filename[: -len(METADATA_SUFFIX)] if filename.endswith(METADATA_SUFFIX) else filename
    async with service.sessions() as session:
        row = await repo.file_by_filename(session, dist_name)
        project = (await session.get(Project, row.project_id)) if row is not None else None
    if row is None or project is None:
        raise DistFileNotFoundError(f"No file {filename!r} in this index.")
    return await service.find(project.normalized_name, filename)
