"""The PyPI JSON API (``/pypi/<project>/json``, ``/pypi/<project>/<version>/json``) and pypiserver's
``/<project>/json``.

Tools that ask an index for a project's latest version or its files outside the simple API use
these: Renovate's PyPI datasource (for a registry URL that is not a ``/simple/`` one), release
scripts running ``curl .../pypi/<project>/json | jq -r .info.version``, and scripts written for
pypiserver, whose ``/<project>/json`` answers ``{"info": {"version": ...}, "releases": {version:
[{"url": ...}]}}``: the same keys as PyPI's, which this answer carries (a superset of pypiserver's).

The fields follow PyPI's JSON API (https://docs.pypi.org/api/json/). Those this index does not
keep are left out (download counts, vulnerabilities: an empty list there would claim that none
are known) or null; the author, license, classifiers and URLs come from a wheel's stored METADATA
(an sdist-only release has only what its row keeps). Read access is the ``list`` permission, as for
the simple pages. A name that is not normalised is redirected (301) to its normalised form, as
pypiserver and the browsing UI do.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from app import dists
from app.api.deps import CatalogDep, ListIdentity
from app.api.errors import problem_response
from app.api.routes.simple import query_suffix
from app.api.routes.ui import send_cached
from app.db.base import as_utc
from app.db.models import File
from app.errors import InvalidDistributionError, NotFoundError
from app.services.catalog import CatalogService, ProjectJson

router = APIRouter(tags=["json"])

#: Pages of the JSON API change with every upload, yank and delete: revalidate, as the simple pages.
CACHE_CONTROL = "max-age=0, must-revalidate"


class JsonDigests(BaseModel):
    sha256: str
    md5: str | None = Field(None, description="Only for files uploaded without a sha256_digest field first.")
    blake2b_256: str | None = None


class JsonFile(BaseModel):
    filename: str
    url: str = Field(description="Absolute download URL.")
    digests: JsonDigests
    md5_digest: str | None
    size: int
    packagetype: str = Field(description="bdist_wheel or sdist")
    python_version: str | None = Field(description="The upload form's pyversion: a wheel's Python tag, or source.")
    requires_python: str | None
    upload_time: str = Field(description="UTC, seconds: YYYY-MM-DDTHH:MM:SS")
    upload_time_iso_8601: str = Field(description="UTC, microseconds, with a Z")
    yanked: bool
    yanked_reason: str | None
    comment_text: str = ""
    has_sig: bool = False


class JsonInfo(BaseModel):
    name: str = Field(description="Display name, as first uploaded.")
    version: str = Field(description="The release described: the latest, or the one in the URL.")
    summary: str | None
    description: str | None
    description_content_type: str | None
    requires_python: str | None
    requires_dist: list[str] | None
    provides_extra: list[str] | None
    author: str | None
    author_email: str | None
    maintainer: str | None
    maintainer_email: str | None
    license: str | None
    license_expression: str | None
    keywords: str | None
    classifiers: list[str]
    platform: str | None
    home_page: str | None
    download_url: str | None
    project_urls: dict[str, str] | None
    package_url: str = Field(description="The project's page in the browsing UI.")
    project_url: str
    release_url: str = Field(description="The release's page in the browsing UI.")
    yanked: bool = Field(description="Every file of the release is yanked (PEP 592).")
    yanked_reason: str | None
    bugtrack_url: None = None
    docs_url: None = None


class JsonProject(BaseModel):
    info: JsonInfo
    last_serial: int = Field(description="The project's serial: it changes with every upload, yank and delete.")
    urls: list[JsonFile] = Field(description="The files of the release described.")
    releases: dict[str, list[JsonFile]] | None = Field(
        None, description="Every release, oldest first, and its files (the project URL only, as on PyPI)."
    )


class PypiserverJson(BaseModel):
    info: JsonInfo
    releases: dict[str, list[JsonFile]]


_RESPONSES: dict[int | str, dict[str, Any]] = {
    301: {"description": "The project name is not normalised: the same URL with the normalised name."},
    304: {"description": "Not modified (If-None-Match matched the ETag)."},
    401: problem_response("Credentials required or wrong (the `list` permission)."),
    403: problem_response("Not allowed."),
    404: problem_response("No such project or version."),
}


def _file(base: str, project: str, f: File) -> dict[str, Any]:
    uploaded = as_utc(f.upload_time)
    digests = {"sha256": f.sha256, "md5": f.md5, "blake2b_256": f.blake2_256}
    return {
        "filename": f.filename,
        "url": f"{base}files/{quote(project)}/{quote(f.filename)}",
        "digests": {k: v for k, v in digests.items() if v is not None},
        "md5_digest": f.md5,
        "size": f.size,
        "packagetype": f.filetype,
        "python_version": f.pyversion,
        "requires_python": f.requires_python,
        "upload_time": uploaded.strftime("%Y-%m-%dT%H:%M:%S"),
        "upload_time_iso_8601": uploaded.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "yanked": f.yanked,
        "yanked_reason": f.yanked_reason,
        "comment_text": "",
        "has_sig": False,
    }


def _body(base: str, view: ProjectJson, *, releases: bool) -> dict[str, Any]:
    meta = view.metadata
    main = view.main
    keywords = meta.get("keywords")
    platforms = meta.get("platforms")
    project_page = f"{base}ui/project/{quote(view.normalized_name)}/"
    info = {
        "name": view.name,
        "version": view.version,
        "summary": main.summary,
        "description": view.description,
        "description_content_type": main.description_content_type,
        "requires_python": main.requires_python,
        "requires_dist": _requires_dist(main.requires_dist),
        "provides_extra": meta.get("provides_extra"),
        "author": meta.get("author"),
        "author_email": meta.get("author_email"),
        "maintainer": meta.get("maintainer"),
        "maintainer_email": meta.get("maintainer_email"),
        "license": meta.get("license"),
        "license_expression": meta.get("license_expression"),
        "keywords": ",".join(keywords) if isinstance(keywords, list) else None,
        "classifiers": meta.get("classifiers") or [],
        "platform": ", ".join(platforms) if isinstance(platforms, list) and platforms else None,
        "home_page": meta.get("home_page"),
        "download_url": meta.get("download_url"),
        "project_urls": meta.get("project_urls"),
        "package_url": project_page,
        "project_url": project_page,
        "release_url": f"{project_page}{quote(view.version)}/",
        "yanked": view.release.yanked,
        "yanked_reason": view.release.yanked_reason,
        "bugtrack_url": None,
        "docs_url": None,
    }
    offered = view.status != "quarantined"  # PEP 792: a quarantined project's files are not served
    body: dict[str, Any] = {
        "info": info,
        "last_serial": view.serial,
        "urls": [_file(base, view.normalized_name, f) for f in view.files if offered],
    }
    if releases:
        body["releases"] = {
            label: [_file(base, view.normalized_name, f) for f in files if offered]
            for label, files in view.releases.items()
        }
    return body


def _requires_dist(stored: str | None) -> list[str] | None:
    value = json.loads(stored) if stored else None  # a JSON list in the row
    return value or None


async def _answer(
    request: Request, catalog: CatalogService, name: str, version: str | None, *, releases: bool
) -> Response:
    """The JSON, with an ETag of its bytes (a 304 when the client has them: a tool polling for a
    new release downloads nothing until there is one) and gzip when asked for. Made once per
    project serial and base URL (the links are absolute)."""
    base = str(request.base_url)

    def render(view: ProjectJson) -> bytes:
        body = _body(base, view, releases=releases)
        return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()

    page = await catalog.json_page(name, version, f"{base} {releases}", render)
    return send_cached(
        request, page.body, "application/json", {"Cache-Control": CACHE_CONTROL}, gzipped=page.gzipped, etag=page.etag
    )


def _redirect(request: Request, url: str) -> Response:
    return RedirectResponse(url + query_suffix(request), status_code=301)


@router.get(
    "/pypi/{project}/json",
    response_model=JsonProject,
    responses=_RESPONSES,
    summary="A project as PyPI's JSON API describes it",
)
@router.get(
    "/{project}/json",
    response_model=PypiserverJson,
    responses=_RESPONSES,
    summary="A project's versions and files (pypiserver compatibility)",
)
async def project_json(request: Request, project: str, catalog: CatalogDep, _who: ListIdentity) -> Response:
    """The latest release's metadata (`info`), its files (`urls`) and every release's files
    (`releases`). At `/<project>/json`, pypiserver's address, the same answer carries the keys
    pypiserver's has: `info.version` (the latest release) and `releases` (each version's files'
    `url`s). Needs `list`."""
    if (name := dists.normalize(project)) != project:
        return _redirect(request, f"../{quote(name)}/json")
    return await _answer(request, catalog, name, None, releases=True)


@router.get(
    "/pypi/{project}/{version}/json",
    response_model=JsonProject,
    responses=_RESPONSES,
    summary="One release as PyPI's JSON API describes it",
)
async def release_json(
    request: Request, project: str, version: str, catalog: CatalogDep, _who: ListIdentity
) -> Response:
    """That release's metadata (`info`) and files (`urls`); no `releases`, as on PyPI. A version
    matches by PEP 440 equality (1.0 finds 1.0.0). Needs `list`."""
    try:
        dists.parse_version(version)
    except InvalidDistributionError:
        raise NotFoundError(f"{version!r} is not a version on this index.") from None
    if (name := dists.normalize(project)) != project:
        return _redirect(request, f"../../{quote(name)}/{quote(version)}/json")
    return await _answer(request, catalog, name, version, releases=False)
