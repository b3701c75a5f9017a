"""The read side: simple pages (model -> rendered bytes), cached by the database's change serial.

Every change to a project writes a journal event whose id becomes the project's ``serial``; the
global serial is the newest event id. A cached page is reused only while its serial is current, so
every worker and replica agrees without sharing memory. The ETag derives from the serial, so a
conditional GET is answered without rendering anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from packaging.version import InvalidVersion, Version
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import dists
from app.db import repo
from app.db.base import as_utc
from app.db.models import File
from app.db.serials import Serials, SessionSerials
from app.errors import ProjectNotFoundError
from app.services.compressed import gzip_bytes
from app.services.lru import Lru
from app.simple import render_html, render_json
from app.simple.model import DistFile, ProjectDetail, ProjectEntry, ProjectList
from app.simple.negotiate import MediaType


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    media_type: MediaType
    etag: str  # strong, quoted
    gzipped: bytes | None = None  # compressed form, computed once per cached page


def upload_time(value: datetime) -> str:
    """PEP 700: ISO 8601 in UTC, 'yyyy-mm-ddThh:mm:ss.ffffffZ'."""
    return as_utc(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _version_key(text: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)


def dist_file(f: File, files_base: str, project: str) -> DistFile:
    yanked: bool | str = False
    if f.yanked:
        yanked = f.yanked_reason or True
    return DistFile(
        filename=f.filename,
        url=f"{files_base}{quote(project)}/{quote(f.filename)}",
        sha256=f.sha256,
        size=f.size,
        upload_time=upload_time(f.upload_time),
        requires_python=f.requires_python,
        yanked=yanked,
        core_metadata_sha256=f.metadata_sha256,
    )


_GZIP_MIN = 1024


class IndexService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cache_size: int = 2048,
        serials: Serials | None = None,
    ) -> None:
        self.sessions = sessions
        self._cache: Lru[tuple[object, ...], Page] = Lru(cache_size)
        # The one database read of a cached request; see app/db/serials.py.
        self.serials: Serials = serials or SessionSerials(sessions)

    async def project_detail(self, session: AsyncSession, name: str, files_base: str) -> ProjectDetail:
        project = await session.run_sync(repo.get_project, name)
        files = await repo.project_files(session, project.id) if project else ()
        if project is None or not files:
            raise ProjectNotFoundError(f"No project named {name!r} on this index.")
        if project.status == "quarantined":  # PEP 792: none of its files is offered
            return ProjectDetail(project.normalized_name, (), (), project.status, project.status_reason)
        # PEP 700: each release once. Spellings equal under PEP 440 (1.0, 1.0.0) are one release,
        # named as first uploaded (files come oldest first), as PyPI keeps its Release.version.
        versions = sorted(set(dists.release_labels(f.version for f in files).values()), key=_version_key)
        return ProjectDetail(
            name=project.normalized_name,
            files=tuple(dist_file(f, files_base, project.normalized_name) for f in files),
            versions=tuple(versions),
            status=project.status,
            status_reason=project.status_reason,
        )

    async def project_list(self, session: AsyncSession) -> ProjectList:
        rows = await repo.list_projects(session)
        return ProjectList(tuple(ProjectEntry(name, normalized) for name, normalized in rows))

    async def project_etag(self, name: str, fmt: MediaType, files_base: str) -> str | None:
        serial = await self.serials.project(name)
        return None if serial is None else _etag("p", serial, fmt, files_base)

    async def project_page(self, name: str, fmt: MediaType, files_base: str) -> Page:
        """Raises ProjectNotFoundError."""
        serial = await self.serials.project(name)
        if serial is None:
            raise ProjectNotFoundError(f"No project named {name!r} on this index.")
        if (page := self._cache.recall(("p", name, serial, fmt, files_base))) is not None:
            return page
        async with self.sessions() as session:
            # Read the serial again in the rendering transaction: the page is keyed by exactly the
            # snapshot it was rendered from.
            serial = await repo.project_serial(session, name)
            if serial is None:
                raise ProjectNotFoundError(f"No project named {name!r} on this index.")
            key = ("p", name, serial, fmt, files_base)
            model = await self.project_detail(session, name, files_base)
        body = render_json.detail(model) if fmt.is_json else render_html.detail(model)
        page = _page(body, fmt, _etag("p", serial, fmt, files_base))
        self._cache.remember(key, page)
        return page

    async def index_etag(self, fmt: MediaType) -> str:
        return _etag("i", await self.serials.last(), fmt, "")

    async def index_page(self, fmt: MediaType) -> Page:
        if (page := self._cache.recall(("i", await self.serials.last(), fmt))) is not None:
            return page
        async with self.sessions() as session:
            serial = await repo.last_serial(session)  # the snapshot the page is rendered from
            key = ("i", serial, fmt)
            model = await self.project_list(session)
        body = render_json.index(model) if fmt.is_json else render_html.index(model)
        page = _page(body, fmt, _etag("i", serial, fmt, ""))
        self._cache.remember(key, page)
        return page


def _etag(kind: str, serial: int, fmt: MediaType, files_base: str) -> str:
    short = {MediaType.JSON_V1: "j", MediaType.HTML_V1: "v", MediaType.HTML: "h"}[fmt]
    depth = files_base.count("../")
    return f'"{kind}{serial}-{short}{depth}"'


def _page(body: bytes, fmt: MediaType, etag: str) -> Page:
    gz = gzip_bytes(body) if len(body) >= _GZIP_MIN else None
    return Page(body, fmt, etag, gz)
