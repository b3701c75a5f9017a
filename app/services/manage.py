"""Managing what is published: yank / un-yank (PEP 592) and delete, for one file or a whole release.

Every change runs in one transaction and writes one journal event per file (who, when, what, and
the file's sha256), which also bumps the project's serial: the cached simple pages are invalidated
that way. Deleted bytes are removed from storage after the rows commit, and only when no other row
still refers to them; if the process dies in between, ``packhouse check --repair`` sweeps the orphan.

A deleted filename stays in the journal, so the upload service can refuse to reuse it with other
bytes (PyPI never reuses a filename).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import dists
from app.db import repo
from app.db.base import as_utc
from app.db.limits import USERNAME_CHARS
from app.db.models import Event, File, Project
from app.errors import (
    DistFileNotFoundError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProjectNotFoundError,
)
from app.storage.base import Storage

log = logging.getLogger("packhouse.manage")

METADATA_SUFFIX = ".metadata"
MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class FileState:
    filename: str
    # The release the file belongs to, as that release is named (its first-uploaded spelling): a
    # file uploaded as 1.0.0 into release 1.0 says 1.0, as on PyPI (dists.release_labels).
    version: str
    sha256: str
    size: int
    upload_time: datetime
    uploader: str | None
    yanked: bool
    yanked_reason: str | None


@dataclass(frozen=True, slots=True)
class ProjectState:
    name: str
    normalized_name: str
    files: tuple[FileState, ...]
    status: str = "active"  # PEP 792
    status_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """What one management operation did."""

    project: str
    action: str  # yank | unyank | delete
    files: tuple[FileState, ...]


@dataclass(frozen=True, slots=True)
class EventState:
    id: int
    time: datetime
    action: str
    project: str
    version: str | None
    filename: str | None
    sha256: str | None
    actor: str | None
    detail: str | None


def file_state(f: File, release: str | None = None) -> FileState:
    """``release``: the name of the file's release, if not its own spelling (see FileState.version)."""
    return FileState(
        f.filename, release or f.version, f.sha256, f.size, as_utc(f.upload_time), f.uploader, f.yanked, f.yanked_reason
    )


def event_state(e: Event) -> EventState:
    return EventState(e.id, as_utc(e.time), e.action, e.project, e.version, e.filename, e.sha256, e.actor, e.detail)


def check_actor(actor: str | None) -> None:
    """Refuse to act for a user whose name the journal cannot record (an upload's uploader, every
    journal entry's actor), before anything is done. Refused, not shortened: a journal entry must
    name exactly who acted, and two long names could share any prefix. ``packhouse user add``
    creates no such user; an htpasswd file written by other tools, a name claimed on an open server
    (its credentials are not checked, the name is recorded all the same) or ``--actor`` may.

    Raises:
        PermissionDeniedError (-> 403).
    """
    if actor is None:
        return
    if len(actor) > USERNAME_CHARS:
        problem = f"is {len(actor)} characters long, and the journal records at most {USERNAME_CHARS}"
    elif "\x00" in actor:
        problem = "contains a NUL character, which the journal cannot record"
    else:
        return
    shown = actor if len(actor) <= 40 else actor[:30] + "..."
    raise PermissionDeniedError(
        f"The user name {shown!r} {problem}, so nothing was changed: act as a user whose name has at most "
        f"{USERNAME_CHARS} characters (the server's administrator adds one with 'packhouse user add NAME')."
    )


class ManageService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], storage: Storage) -> None:
        self.sessions = sessions
        self.storage = storage

    async def project(self, name: str) -> ProjectState:
        """Raises ProjectNotFoundError."""
        async with self.sessions() as session:
            project = await _project(session, name)
            files = await repo.project_files(session, project.id)
        labels = dists.release_labels(f.version for f in files)  # oldest first: as first uploaded
        return ProjectState(
            project.name,
            project.normalized_name,
            tuple(file_state(f, labels[f.version]) for f in files),
            project.status or "active",
            project.status_reason,
        )

    async def marked(self) -> list[tuple[str, str, str | None]]:
        """(project, status, reason) of every project that is not active (PEP 792), by name."""
        async with self.sessions() as session:
            return [(name, status, reason) for name, status, reason in await repo.marked_projects(session)]

    async def set_status(self, name: str, status: str, *, reason: str | None = None, actor: str | None) -> ProjectState:
        """PEP 792: mark a project active, archived (no new files), quarantined (no new files, and
        none of its files offered for download) or deprecated (as active; installers may warn),
        with an optional reason shown to clients. Journaled; the project's serial changes, so every
        worker's cached pages and download rows are renewed.

        Raises:
            ProjectNotFoundError (-> 404), InvalidRequestError (-> 400: an unknown status, a reason
            too long), PermissionDeniedError (-> 403, see check_actor).
        """
        check_actor(actor)
        if status not in dists.PROJECT_STATUSES:
            raise InvalidRequestError(
                f"Unknown project status {status!r}; use one of: {', '.join(dists.PROJECT_STATUSES)} (PEP 792)."
            )
        reason = (reason or "").strip() or None
        if reason is not None and (len(reason) > dists.MAX_STATUS_REASON or "\x00" in reason):
            raise InvalidRequestError(
                f"The status reason must be at most {dists.MAX_STATUS_REASON} characters, with no NUL character."
            )
        if status == "active":
            reason = None  # an active project has no marker to explain
        async with self.sessions() as session, session.begin():
            project = await _project(session, name)
            project.status = None if status == "active" else status
            project.status_reason = reason
            await session.run_sync(
                repo.record_event,
                project.id,
                action="status",
                project=project.normalized_name,
                version=None,
                filename=None,
                sha256=None,
                actor=actor,
                detail=f"{status}: {reason}" if reason else status,
            )
        log.info("status %s %s by %s", project.normalized_name, status, actor or "-")
        return await self.project(project.normalized_name)

    async def events(self, name: str, limit: int = 100) -> list[EventState]:
        """The audit journal of a project, newest first (also for projects whose files are all gone).

        Raises:
            ProjectNotFoundError: the journal has nothing on that name (as ``project`` would say).
        """
        async with self.sessions() as session:
            rows = await repo.project_events(session, dists.normalize(name), limit)
        if not rows:
            raise ProjectNotFoundError(f"No project named {name!r} on this index, nor in its journal.")
        return [event_state(e) for e in rows]

    async def yank(
        self,
        project: str,
        *,
        version: str | None = None,
        filename: str | None = None,
        reason: str | None = None,
        actor: str | None,
    ) -> Change:
        """PEP 592: mark a file (or every file of a release) yanked, with an optional reason.

        Raises:
            ProjectNotFoundError, DistFileNotFoundError, NotFoundError (-> 404), InvalidRequestError,
            PermissionDeniedError (-> 403, see check_actor).
        """
        check_actor(actor)
        reason = (reason or "").strip() or None
        if reason is not None and len(reason) > MAX_REASON:
            raise InvalidRequestError(f"The yank reason is longer than {MAX_REASON} characters.")
        return await self._set_yanked(project, version, filename, True, reason, actor)

    async def unyank(
        self, project: str, *, version: str | None = None, filename: str | None = None, actor: str | None
    ) -> Change:
        """Raises ProjectNotFoundError, DistFileNotFoundError, NotFoundError (-> 404),
        PermissionDeniedError (-> 403, see check_actor)."""
        check_actor(actor)
        return await self._set_yanked(project, version, filename, False, None, actor)

    async def _set_yanked(
        self,
        project: str,
        version: str | None,
        filename: str | None,
        yanked: bool,
        reason: str | None,
        actor: str | None,
    ) -> Change:
        action = "yank" if yanked else "unyank"
        async with self.sessions() as session, session.begin():
            proj, files, release = await _select(session, project, version, filename)
            for f in files:
                f.yanked, f.yanked_reason = yanked, reason
                await session.run_sync(
                    repo.record_event,
                    proj.id,
                    action=action,
                    project=proj.normalized_name,
                    version=f.version,
                    filename=f.filename,
                    sha256=f.sha256,
                    actor=actor,
                    detail=reason,
                )
            states = tuple(file_state(f, release) for f in files)
        log.info("%s %s by %s", action, ", ".join(s.filename for s in states), actor or "-")
        return Change(proj.normalized_name, action, states)

    async def delete(
        self, project: str, *, version: str | None = None, filename: str | None = None, actor: str | None
    ) -> Change:
        """Delete a file or every file of a release. The journal keeps each deleted sha256.

        Raises:
            ProjectNotFoundError, DistFileNotFoundError, NotFoundError (-> 404),
            PermissionDeniedError (-> 403, see check_actor).
        """
        check_actor(actor)
        async with self.sessions() as session, session.begin():
            proj, files, release = await _select(session, project, version, filename)
            for f in files:
                await session.run_sync(repo.delete_file, f.id)
                await session.run_sync(
                    repo.record_event,
                    proj.id,
                    action="delete",
                    project=proj.normalized_name,
                    version=f.version,
                    filename=f.filename,
                    sha256=f.sha256,
                    actor=actor,
                    detail=f"deleted {f.filename} ({f.size} bytes, sha256 {f.sha256})",
                )
            states = tuple(file_state(f, release) for f in files)
        await self.forget_blobs([f.storage_key for f in files])
        log.info("delete %s by %s", ", ".join(s.filename for s in states), actor or "-")
        return Change(proj.normalized_name, "delete", states)

    async def forget_blobs(self, keys: Sequence[str], *, metadata_only: bool = False) -> None:
        """Remove stored bytes that no row refers to any more (after the rows' change committed):
        each key's file and its PEP 658 metadata file. ``metadata_only``: the metadata file alone,
        for a package folder's file that its owner deleted by hand (the rescan forgets its row).
        Whatever is under that name now is the owner's too (copied in again, perhaps other bytes),
        and the next rescan indexes it."""
        with anyio.CancelScope(shield=True):
            for key in keys:
                async with self.sessions() as session:
                    if await repo.storage_key_in_use(session, key):
                        # A row refers to the key after all: a package folder's file of that name
                        # uploaded or indexed again, or an insert that committed though it was
                        # reported failed. No other key is shared by two rows, over time either
                        # (app/services/upload.py: new_storage_key).
                        continue
                if not metadata_only:
                    await self.storage.delete(key)
                await self.storage.delete(key + METADATA_SUFFIX)


async def _project(session: AsyncSession, name: str) -> Project:
    project = await session.run_sync(repo.get_project, dists.normalize(name))
    if project is None:
        raise ProjectNotFoundError(f"No project named {name!r} on this index.")
    return project


async def _select(
    session: AsyncSession, name: str, version: str | None, filename: str | None
) -> tuple[Project, Sequence[File], str]:
    """The project, the files to change (oldest first) and the name of their release."""
    project = await _project(session, name)
    if filename is not None:
        row = await repo.file_in_project(session, project.id, filename)
        if row is None:
            raise DistFileNotFoundError(f"No file {filename!r} in project {project.normalized_name!r}.")
        if version is not None and dists.parse_version(version) != dists.parse_version(row.version):
            raise DistFileNotFoundError(f"{filename!r} is not a file of version {version!r}.")
        release = await repo.release_files(session, project.id, dists.release_key(row.version))
        return project, [row], release[0].version if release else row.version
    if version is None:
        raise InvalidRequestError("Say which release (version) or which file (filename) to change.")
    # A release is its version under PEP 440 equality, as on PyPI: yanking or deleting release 1.0
    # also takes a file uploaded as 1.0.0 (each file keeps its own spelling in its row).
    files = await repo.release_files(session, project.id, dists.parse_version(version))
    if not files:
        raise NotFoundError(f"Project {project.normalized_name!r} has no release {version!r}.")
    return project, files, files[0].version  # the oldest file: the release's first spelling
