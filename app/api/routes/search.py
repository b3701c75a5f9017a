"""``GET /api/search``: project search as JSON (the project list's filter-as-you-type uses it)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from app.api.deps import CatalogDep, ListIdentity
from app.api.routes.manage import ProjectStatus

router = APIRouter(tags=["search"])


class SearchHit(BaseModel):
    name: str = Field(description="Display name, as first uploaded.")
    normalized_name: str = Field(description="PEP 503 normalised name.")
    version: str = Field(
        description=(
            "The project's latest release, as on its page and on PyPI: the highest final version not "
            "yanked (else the highest not yanked), named as first uploaded (1.0 holds a later 1.0.0 file)."
        )
    )
    summary: str | None = Field(description="Summary of that release's newest file.")
    updated: datetime = Field(description="Time of the project's newest upload (UTC).")
    url: str = Field(description="The project's page in the browsing UI (absolute path).")
    status: ProjectStatus = Field("active", description="PEP 792 project status.")


class SearchResponse(BaseModel):
    query: str
    sort: str = Field(description="`name` (A to Z) or `updated` (newest first).")
    page: int
    per_page: int
    pages: int
    total: int = Field(description="Number of matching projects on all pages.")
    results: list[SearchHit]


@router.get("/api/search", response_model=SearchResponse, summary="Search projects by name and summary")
async def search(
    request: Request,
    catalog: CatalogDep,
    _who: ListIdentity,
    q: str = Query("", max_length=200, description="Substring of the name or summary; empty lists all."),
    page: int = Query(1, ge=1, le=100_000),
    per_page: int = Query(50, ge=1, le=100),
    sort: str = Query("name", pattern="^(name|updated)$"),
) -> SearchResponse:
    """Projects whose name (normalised) or summary contains ``q``, case-insensitively. Needs `list`."""
    result = await catalog.search(q, page, per_page, sort)
    root = request.scope.get("root_path", "").rstrip("/")
    hits = [
        SearchHit(
            name=r.name,
            normalized_name=r.normalized_name,
            version=r.version,
            summary=r.summary,
            updated=r.upload_time,
            url=f"{root}/ui/project/{quote(r.normalized_name)}/",
            status=r.status,  # type: ignore[arg-type]
        )
        for r in result.results
    ]
    return SearchResponse(
        query=result.query,
        sort=result.sort,
        page=result.page,
        per_page=result.per_page,
        pages=result.pages,
        total=result.total,
        results=hits,
    )
