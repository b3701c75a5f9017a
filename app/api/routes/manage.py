"""The JSON management API: yank, un-yank and delete a file or a whole release; a project's PEP 792
status (archived, quarantined, deprecated); the audit journal.

Every change needs the ``update`` permission (the same as uploading) and is journaled with who and
when. Routes translate only: ``ManageService`` does the work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from app.api.deps import ListIdentity, UploadIdentity
from app.api.errors import problem_response
from app.services.manage import Change, EventState, FileState, ManageService, ProjectState

router = APIRouter(prefix="/api", tags=["manage"])
ProjectStatus = Literal["active", "archived", "quarantined", "deprecated"]  # dists.PROJECT_STATUSES


def _manage(request: Request) -> ManageService:
    return request.app.state.manage  # type: ignore[no-any-return]


ManageDep = Annotated[ManageService, Depends(_manage)]
ProjectName = Annotated[str, Path(description="Project name (any spelling; it is normalised).")]
Version = Annotated[str, Path(description="Release version (PEP 440).")]
Filename = Annotated[str, Path(description="Distribution filename, as listed on the simple page.")]


class FileOut(BaseModel):
    filename: str
    version: str
    sha256: str
    size: int
    upload_time: datetime
    uploader: str | None
    yanked: bool
    yanked_reason: str | None = Field(description="PEP 592 reason, if yanked with one.")

    @classmethod
    def of(cls, f: FileState) -> FileOut:
        return cls(**{name: getattr(f, name) for name in cls.model_fields})


class ProjectOut(BaseModel):
    name: str = Field(description="Display name, as first uploaded.")
    normalized_name: str
    status: ProjectStatus = Field("active", description="PEP 792 project status.")
    status_reason: str | None = Field(None, description="Why, if a reason was given.")
    files: list[FileOut]

    @classmethod
    def of(cls, p: ProjectState) -> ProjectOut:
        return cls(
            name=p.name,
            normalized_name=p.normalized_name,
            status=p.status,  # type: ignore[arg-type]
            status_reason=p.status_reason,
            files=[FileOut.of(f) for f in p.files],
        )


class ChangeOut(BaseModel):
    project: str
    action: str = Field(description="yank, unyank or delete")
    files: list[FileOut] = Field(description="The files changed, as they are now (or were, if deleted).")

    @classmethod
    def of(cls, c: Change) -> ChangeOut:
        return cls(project=c.project, action=c.action, files=[FileOut.of(f) for f in c.files])


class EventOut(BaseModel):
    id: int
    time: datetime
    action: str = Field(description="upload, overwrite, yank, unyank, delete, check-broken ...")
    project: str
    version: str | None
    filename: str | None
    sha256: str | None
    actor: str | None = Field(description="The user who acted (None: anonymous).")
    detail: str | None

    @classmethod
    def of(cls, e: EventState) -> EventOut:
        return cls(**{name: getattr(e, name) for name in cls.model_fields})


class StatusIn(BaseModel):
    status: ProjectStatus = Field(
        description="active; archived: no new files; quarantined: no new files and none of its files "
        "served; deprecated: as active, installers may warn."
    )
    reason: str | None = Field(
        None, max_length=1000, pattern=r"^[^\x00]*$", description="Shown to installers (ignored for active)."
    )


class YankIn(BaseModel):
    reason: str | None = Field(
        None, max_length=1000, pattern=r"^[^\x00]*$", description="PEP 592 yank reason, shown to installers."
    )


_problem = problem_response
_READ: dict[int | str, dict[str, object]] = {
    401: _problem("Credentials required or wrong."),
    403: _problem("Not allowed."),
    404: _problem("No such project, release or file."),
    422: _problem("Invalid path or query parameter."),
}
_WRITE: dict[int | str, dict[str, object]] = {
    **_READ,
    400: _problem("Invalid version or request body."),
    422: _problem("Invalid path parameter or JSON body."),
}
YankBody = Annotated[YankIn | None, Body(description="Optional reason.")]


def _actor(who: object) -> str | None:
    return getattr(who, "username", None)


@router.get("/projects/{project}", response_model=ProjectOut, responses=_READ, summary="A project's files")
async def project(project: ProjectName, manage: ManageDep, _who: ListIdentity) -> ProjectOut:
    """Every file of a project, yanked ones included."""
    return ProjectOut.of(await manage.project(project))


@router.get("/projects/{project}/events", response_model=list[EventOut], responses=_READ, summary="Audit journal")
async def events(
    project: ProjectName,
    manage: ManageDep,
    _reader: ListIdentity,
    _who: UploadIdentity,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventOut]:
    """Who uploaded, yanked or deleted what, and when; newest first. Needs the update permission,
    and the list permission too: the journal names every file, so it is never more open than the
    project's page (``--authenticate list`` leaves uploads open, not the listing)."""
    return [EventOut.of(e) for e in await manage.events(project, limit)]


@router.put("/projects/{project}/status", response_model=ProjectOut, responses=_WRITE, summary="Set the status")
async def set_status(project: ProjectName, body: StatusIn, manage: ManageDep, who: UploadIdentity) -> ProjectOut:
    """Set a project's PEP 792 status, served on its simple pages: ``archived`` refuses new files,
    ``quarantined`` also stops serving its files (kept, not deleted), ``deprecated`` only marks it,
    ``active`` lifts any of them."""
    return ProjectOut.of(await manage.set_status(project, body.status, reason=body.reason, actor=_actor(who)))


@router.post("/projects/{project}/releases/{version}/yank", response_model=ChangeOut, responses=_WRITE)
async def yank_release(
    project: ProjectName, version: Version, manage: ManageDep, who: UploadIdentity, body: YankBody = None
) -> ChangeOut:
    """Yank every file of a release (PEP 592): installers skip it unless it is pinned with ``==``."""
    reason = body.reason if body else None
    return ChangeOut.of(await manage.yank(project, version=version, reason=reason, actor=_actor(who)))


@router.post("/projects/{project}/releases/{version}/unyank", response_model=ChangeOut, responses=_WRITE)
async def unyank_release(project: ProjectName, version: Version, manage: ManageDep, who: UploadIdentity) -> ChangeOut:
    """Un-yank every file of a release."""
    return ChangeOut.of(await manage.unyank(project, version=version, actor=_actor(who)))


@router.delete("/projects/{project}/releases/{version}", response_model=ChangeOut, responses=_WRITE)
async def delete_release(project: ProjectName, version: Version, manage: ManageDep, who: UploadIdentity) -> ChangeOut:
    """Delete every file of a release. The filenames can not be reused with other bytes."""
    return ChangeOut.of(await manage.delete(project, version=version, actor=_actor(who)))


@router.post("/projects/{project}/files/{filename}/yank", response_model=ChangeOut, responses=_WRITE)
async def yank_file(
    project: ProjectName, filename: Filename, manage: ManageDep, who: UploadIdentity, body: YankBody = None
) -> ChangeOut:
    """Yank one file (PEP 592)."""
    reason = body.reason if body else None
    return ChangeOut.of(await manage.yank(project, filename=filename, reason=reason, actor=_actor(who)))


@router.post("/projects/{project}/files/{filename}/unyank", response_model=ChangeOut, responses=_WRITE)
async def unyank_file(project: ProjectName, filename: Filename, manage: ManageDep, who: UploadIdentity) -> ChangeOut:
    """Un-yank one file."""
    return ChangeOut.of(await manage.unyank(project, filename=filename, actor=_actor(who)))


@router.delete("/projects/{project}/files/{filename}", response_model=ChangeOut, responses=_WRITE)
async def delete_file(project: ProjectName, filename: Filename, manage: ManageDep, who: UploadIdentity) -> ChangeOut:
    """Delete one file. Its filename can not be reused with other bytes (unless --overwrite)."""
    return ChangeOut.of(await manage.delete(project, filename=filename, actor=_actor(who)))
