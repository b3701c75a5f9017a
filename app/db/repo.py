"""Query functions over the models. They never commit: the service owns the transaction.

Most take an ``AsyncSession``. Those the upload path needs take a synchronous ``Session``, so that
a whole upload transaction runs as one function (app/db/units.py: one SQLite thread hop instead of
one per statement); async code calls them as ``await session.run_sync(repo.fn, ...)``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Any, cast

from packaging.version import Version
from sqlalchemy import Insert, Row, Table, bindparam, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.db.models import Event, File, Project
from app.dists import CLOSED_TO_UPLOADS, CoreMetadata, DistFilename, DistKind, release_key
from app.errors import ProjectClosedError

_PROJECTS, _FILES, _EVENTS = (cast(Table, m.__table__) for m in (Project, File, Event))

# The upload path's statements are built once and executed with parameters: building a statement
# and its cache key per call cost more than running it on SQLite (~0.1 ms each, most of an upload's
# database time). Core rows, not ORM objects: nothing on that path changes a loaded row.
_ENSURE_PROJECT: dict[str, Insert] = {}  # by dialect name, built on first use (_ensure_project_stmt)
_INSERT_FILE = _FILES.insert()
_INSERT_EVENT = _EVENTS.insert().returning(_EVENTS.c.id)
_INSERT_EVENT_MANY = _EVENTS.insert()
_SET_SERIAL = update(_PROJECTS).where(_PROJECTS.c.id == bindparam("project_id")).values(serial=bindparam("serial"))
_FILE_REF = select(_FILES.c.id, _FILES.c.filename, _FILES.c.sha256, _FILES.c.storage_key).where(
    _FILES.c.filename == bindparam("filename")
)
_LAST_DELETION = (
    select(_EVENTS.c.sha256, _EVENTS.c.time)
    .where(_EVENTS.c.filename == bindparam("filename"), _EVENTS.c.action == "delete")
    .order_by(_EVENTS.c.id.desc())
    .limit(1)
)


def upload_lookup(session: Session, filename: str) -> tuple[Row[int, str, str, str] | None, Row[str, datetime] | None]:
    """What an upload of ``filename`` must know first: the live file of that name, or else its
    last deletion (see UploadService._check_reuse)."""
    existing = file_ref(session, filename)
    return existing, None if existing is not None else last_deletion(session, filename)


def get_project(session: Session, normalized_name: str) -> Project | None:
    result = session.execute(select(Project).where(Project.normalized_name == normalized_name))
    return result.scalar_one_or_none()


def _ensure_project_stmt(dialect_name: str, *, many: bool = False) -> Insert:
    """The INSERT ... ON CONFLICT of ensure_project for ``dialect_name`` (postgresql or sqlite),
    built once; the dialect module is imported then (PostgreSQL's costs ~20 ms of start-up).
    ``many``: for an executemany (add_uploads): ON CONFLICT DO NOTHING, the ids read after."""
    key = f"{dialect_name}-many" if many else dialect_name
    stmt = _ENSURE_PROJECT.get(key)
    if stmt is None:
        name = "postgresql" if dialect_name == "postgresql" else "sqlite"
        dialect = importlib.import_module(f"sqlalchemy.dialects.{name}")
        insert = dialect.insert(_PROJECTS).values(
            name=bindparam("name"), normalized_name=bindparam("normalized_name"), serial=0
        )
        if many:
            stmt = insert.on_conflict_do_nothing(index_elements=["normalized_name"])
        else:
            stmt = insert.on_conflict_do_update(
                index_elements=["normalized_name"], set_={"normalized_name": bindparam("normalized_name")}
            ).returning(_PROJECTS.c.id, _PROJECTS.c.status, _PROJECTS.c.status_reason)
        _ENSURE_PROJECT[key] = stmt
    return stmt


def ensure_project(session: Session, name: str, normalized_name: str) -> int:
    """Get or create the project a new file goes into; returns its id. One statement: a concurrent
    creator wins the unique constraint and the no-op update hands back its row's id (the name stays
    as first written). In the upload's own transaction, so a status set meanwhile is seen.

    Raises:
        ProjectClosedError: the project is archived or quarantined (PEP 792; the caller rolls back).
    """
    stmt = _ensure_project_stmt(session.get_bind().dialect.name)
    project_id, status, reason = session.execute(stmt, {"name": name, "normalized_name": normalized_name}).one()
    refuse_closed(normalized_name, status, reason)
    return int(project_id)


def refuse_closed(normalized_name: str, status: str | None, reason: str | None) -> None:
    """PEP 792: an archived or quarantined project takes no new files. Raises ProjectClosedError,
    whose message gives the status's reason when it has one."""
    if status in CLOSED_TO_UPLOADS:
        why = f" ({reason.rstrip('.')})" if reason else ""
        raise ProjectClosedError(
            f"{normalized_name} is {status} on this index{why}, so it takes no new files (PEP 792). "
            f"An administrator can reopen it with 'packhouse status {normalized_name} active' "
            "(or PUT /api/projects/<project>/status)."
        )


async def list_projects(session: AsyncSession) -> Sequence[tuple[str, str]]:
    """(display name, normalised name) of every project with at least one file, by normalised name."""
    has_files = exists().where(File.project_id == Project.id)
    result = await session.execute(
        select(Project.name, Project.normalized_name).where(has_files).order_by(Project.normalized_name)
    )
    return [tuple(row) for row in result.all()]  # type: ignore[misc]


async def project_files(session: AsyncSession, project_id: int) -> Sequence[File]:
    result = await session.execute(select(File).where(File.project_id == project_id).order_by(File.id))
    return result.scalars().all()


def file_by_filename(session: Session, filename: str) -> File | None:
    result = session.execute(select(File).where(File.filename == filename))
    return result.scalar_one_or_none()


def file_ref(session: Session, filename: str) -> Row[int, str, str, str] | None:
    """The live file of that name (id, filename, sha256, storage_key), as a Core row."""
    return session.execute(_FILE_REF, {"filename": filename}).first()


async def file_in_project(session: AsyncSession, project_id: int, filename: str) -> File | None:
    result = await session.execute(select(File).where(File.project_id == project_id, File.filename == filename))
    return result.scalar_one_or_none()


_DOWNLOAD_ROWS = (
    select(
        _FILES.c.filename,
        _FILES.c.storage_key,
        _FILES.c.sha256,
        _FILES.c.size,
        _FILES.c.metadata_sha256,
        _FILES.c.upload_time,
        _PROJECTS.c.status,
    )
    .join(_PROJECTS, _FILES.c.project_id == _PROJECTS.c.id)
    .where(_PROJECTS.c.normalized_name == bindparam("name"))
)


async def download_rows(session: AsyncSession, normalized_name: str) -> Sequence[Row[Any, ...]]:
    """What the download route needs of each file of a project (filename, storage_key, sha256,
    size, metadata_sha256, upload_time, and the project's PEP 792 status): one query, only these
    columns, Core rows."""
    result = await session.execute(_DOWNLOAD_ROWS, {"name": normalized_name})
    return result.all()


def file_columns(
    dist: DistFilename, filename: str, storage_key: str, meta: CoreMetadata, **digests: Any
) -> dict[str, Any]:
    """The File columns a distribution gives, uploaded or found in a folder alike: its version, name
    and kind, ``digests`` (size, sha256, md5, blake2_256), where it is stored, its core metadata and,
    for a wheel, the sha256 of its PEP 658 metadata (the METADATA bytes, served at <file>.metadata).
    The caller adds pyversion, uploader and, if not now, upload_time."""
    return {
        "version": str(dist.version),  # the filename's own spelling (releases: dists.release_key)
        "filename": filename,
        "filetype": dist.kind.value,
        **digests,
        "storage_key": storage_key,
        **metadata_columns(meta),
        "metadata_sha256": sha256(meta.raw).hexdigest() if dist.kind is DistKind.WHEEL else None,
    }


def metadata_columns(meta: CoreMetadata) -> dict[str, Any]:
    """The File columns taken from a distribution's core metadata (uploads and imports alike)."""
    return {
        "metadata_version": meta.metadata_version,
        "summary": meta.summary,
        "requires_python": meta.requires_python,
        "requires_dist": json.dumps(list(meta.requires_dist)),
        "description": meta.description,
        "description_content_type": meta.description_content_type,
    }


@dataclass(frozen=True)
class NewUpload:
    """The rows of a new file: its project (created on its first file), the file and its journal
    entry, which becomes the project's serial."""

    name: str  # the project's name as the author wrote it (kept from its first upload)
    normalized_name: str
    file: dict[str, Any]  # File columns, but project_id
    event: dict[str, Any]  # Event columns


def add_upload(session: Session, upload: NewUpload, project_id: int | None = None) -> None:
    """The upload's file row and journal entry, in its project (got or created unless given)."""
    if project_id is None:
        project_id = ensure_project(session, upload.name, upload.normalized_name)
    add_file(session, project_id=project_id, **upload.file)
    record_event(session, project_id, **upload.event)


def add_uploads(session: Session, uploads: Sequence[NewUpload]) -> None:
    """``add_upload`` for each of ``uploads`` (a folder's files, indexed by one scan), in five
    statements instead of four per file: a thousand files' rows cost one SQLite thread hop per
    statement, not per row. The same rows: each project (created if new, its name as first
    written), each file, its journal entry, and the project's serial, its last entry's id."""
    if not uploads:
        return
    names: dict[str, str] = {}
    for upload in uploads:
        names.setdefault(upload.normalized_name, upload.name)
    dialect = session.get_bind().dialect.name
    projects = [{"name": n, "normalized_name": k} for k, n in names.items()]
    session.execute(_ensure_project_stmt(dialect, many=True), projects)
    found = select(_PROJECTS.c.normalized_name, _PROJECTS.c.id).where(_PROJECTS.c.normalized_name.in_(names))
    ids: dict[str, int] = {name: pid for name, pid in session.execute(found)}
    session.execute(_INSERT_FILE, [{"project_id": ids[u.normalized_name], **u.file} for u in uploads])
    # No RETURNING: SQLAlchemy runs an INSERT ... RETURNING in parameter order one row at a time on
    # SQLite (one aiosqlite thread hop each, most of a batch's time). Each project's serial is
    # then its newest entry's id (events.project is indexed), which is what record_event sets.
    session.execute(_INSERT_EVENT_MANY, [u.event for u in uploads])
    newest = select(func.max(_EVENTS.c.id)).where(_EVENTS.c.project == _PROJECTS.c.normalized_name)
    session.execute(
        update(_PROJECTS).where(_PROJECTS.c.id.in_(list(ids.values()))).values(serial=newest.scalar_subquery())
    )


def add_file(session: Session, **fields: Any) -> None:
    # A Core INSERT: the ORM's unit of work costs a flush per object, most of an upload's insert.
    session.execute(_INSERT_FILE, fields)


def record_event(session: Session, project_id: int | None, **fields: Any) -> int:
    """Append to the audit journal and make its id the project's serial (cache key)."""
    event_id = int(session.execute(_INSERT_EVENT, fields).scalar_one())
    if project_id is not None:
        session.execute(_SET_SERIAL, {"project_id": project_id, "serial": event_id})
    return event_id


async def last_serial(session: AsyncSession) -> int:
    """Global change counter: the newest journal entry."""
    return (await session.execute(select(func.coalesce(func.max(Event.id), 0)))).scalar_one()


async def project_serial(session: AsyncSession, normalized_name: str) -> int | None:
    result = await session.execute(select(Project.serial).where(Project.normalized_name == normalized_name))
    return result.scalar_one_or_none()


# Management (yank, delete, overwrite, check) ----------------------------------------------------


async def release_files(session: AsyncSession, project_id: int, version: Version | str) -> Sequence[File]:
    """Every file of the release ``version``, oldest first. A release is its version under PEP 440
    equality (dists.release_key), not one spelling: release 1.0 also holds a file uploaded as
    1.0.0. The project's spellings come from the (project_id, version) index and are compared in
    Python; then only the matching rows are loaded."""
    spellings = await session.execute(select(File.version).where(File.project_id == project_id).distinct())
    same = [v for v in spellings.scalars() if release_key(v) == version]
    if not same:
        return []
    result = await session.execute(
        select(File).where(File.project_id == project_id, File.version.in_(same)).order_by(File.id)
    )
    return result.scalars().all()


def delete_file(session: Session, file_id: int) -> bool:
    """Whether the row was there to delete. A core DELETE, so it runs before any INSERT of the same
    filename in this transaction (the ORM's unit of work would flush inserts first)."""
    return bool(session.execute(delete(File).where(File.id == file_id)).rowcount)


def last_deletion(session: Session, filename: str) -> Row[str, datetime] | None:
    """The newest 'delete' journal entry for a filename (sha256, time): it keeps the deleted file's sha256."""
    return session.execute(_LAST_DELETION, {"filename": filename}).first()


async def storage_key_in_use(session: AsyncSession, storage_key: str) -> bool:
    result = await session.execute(select(exists().where(File.storage_key == storage_key)))
    return bool(result.scalar_one())


async def all_files(session: AsyncSession) -> Sequence[File]:
    result = await session.execute(select(File).order_by(File.id))
    return result.scalars().all()


async def project_events(session: AsyncSession, normalized_name: str, limit: int) -> Sequence[Event]:
    result = await session.execute(
        select(Event).where(Event.project == normalized_name).order_by(Event.id.desc()).limit(limit)
    )
    return result.scalars().all()


async def marked_projects(session: AsyncSession) -> Sequence[Row[Any, ...]]:
    """(normalized_name, status, status_reason) of every project whose PEP 792 status is not
    active, by name."""
    stmt = select(Project.normalized_name, Project.status, Project.status_reason).where(Project.status.is_not(None))
    return (await session.execute(stmt.order_by(Project.normalized_name))).all()


async def storage_keys(session: AsyncSession) -> dict[str, tuple[int, int, str, int, str]]:
    """storage key -> (file id, project id, filename, size, sha256), for reconciling a folder with
    the index (every restart and rescan reads them all: no column it does not use)."""
    c = _FILES.c  # Core columns: ORM result processing cost as much again over 30,000 rows
    result = await session.execute(select(c.storage_key, c.id, c.project_id, c.filename, c.size, c.sha256))
    return {key: tuple(rest) for key, *rest in result.all()}  # type: ignore[misc]


async def all_filenames(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(_FILES.c.filename))).scalars().all())


async def counts(session: AsyncSession) -> tuple[int, int]:
    """(projects with at least one file, files)."""
    files = (await session.execute(select(func.count(File.id)))).scalar_one()
    projects = (await session.execute(select(func.count(func.distinct(File.project_id))))).scalar_one()
    return projects, files


async def folder_listing(session: AsyncSession) -> Sequence[Row[Any, ...]]:
    """(storage_key, sha256, yanked) of every file, for pypiserver's ``/packages/`` page; none of a
    quarantined project (PEP 792)."""
    offered = (Project.status.is_(None)) | (Project.status != "quarantined")
    result = await session.execute(
        select(File.storage_key, File.sha256, File.yanked)
        .join(Project, File.project_id == Project.id)
        .where(offered)
        .order_by(File.storage_key)
    )
    return result.all()
