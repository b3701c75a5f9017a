"""The browsing UI: server-rendered pages under ``/ui/`` (and the home page at ``/``).

URLs (none is a single path segment, so none shadows the pypiserver-style ``/<project>/`` simple page):
  ``/``                                 home: search, counts, recent releases, client set-up
  ``/ui/projects/?q=&page=&sort=``      project list and search
  ``/ui/project/<name>/``               project page (latest release)
  ``/ui/project/<name>/<version>/``     release page
  ``/ui/static/<asset>``                CSS, JS and the icon, served by Packhouse itself (no CDN)
  ``/favicon.ico``                      the icon, where browsers look for it unasked
Every page needs the ``list`` permission; downloads keep their own (``download``) check.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app import dists
from app.api.conditional import accepts_coding, field, none_match
from app.api.deps import CatalogDep, ListIdentity
from app.api.errors import problem, status_for
from app.errors import InvalidDistributionError, NotFoundError
from app.services.catalog import ProjectView
from app.services.compressed import gzip_bytes, weak_etag

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

WEB = Path(__file__).resolve().parents[2] / "web"
STATIC = WEB / "static"
ASSETS = {
    "ui.css": "text/css; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
FAVICON = "favicon.svg"
GZIP_MIN_BYTES = 1024  # below this, gzip saves less than its own cost

router = APIRouter(tags=["web"], include_in_schema=False)

# Defence in depth behind autoescaping and nh3: no inline script or style can run on a UI page.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' https: data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError  # pragma: no cover


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@cache
def _templates() -> Jinja2Templates:
    """The page templates, loaded with the first page (importing Jinja2 costs ~20 ms of start-up,
    and most servers start to answer pip, not browsers)."""
    from fastapi.templating import Jinja2Templates

    templates = Jinja2Templates(directory=WEB / "templates")
    env = templates.env
    env.trim_blocks = env.lstrip_blocks = True  # lean HTML for 200-file pages
    env.filters.update(size=_size, iso=_iso, day=lambda value: value.strftime("%Y-%m-%d"))
    return templates


@cache
def asset_version(name: str) -> str:
    return hashlib.sha256(_asset(name)).hexdigest()[:12]


def _context(request: Request, **values: Any) -> dict[str, Any]:
    base = str(request.base_url)
    base = base if base.endswith("/") else base + "/"
    host = request.url.hostname or "localhost"
    insecure = request.url.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1")
    return {
        "root": request.scope.get("root_path", "").rstrip("/"),
        "version": request.app.version,
        "base_url": base.rstrip("/"),
        "simple_url": base + "simple/",
        "upload_url": base + "legacy/",
        # pip only talks plain http to hosts it is told to trust (localhost is trusted already).
        "trusted_host": host if request.url.scheme == "http" else None,
        "pip_trust": f" --trusted-host {host}" if insecure else "",
        "assets": {name: asset_version(name) for name in ASSETS},
        **values,
    }


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> Response:
    """A rendered page, revalidated on every visit (``no-cache``): an unchanged page answers 304
    with no body. ``private``: it may depend on who asks."""
    html = _templates().get_template(template).render({**_context(request, **values), "request": request})
    headers = {**SECURITY_HEADERS, "Cache-Control": "private, no-cache"}
    return send_cached(request, html.encode(), "text/html; charset=utf-8", headers, status_code)


def send_cached(
    request: Request,
    body: bytes,
    media_type: str,
    headers: dict[str, str],
    status_code: int = 200,
    *,
    gzipped: bytes | None = None,
    etag: str | None = None,
) -> Response:
    """``body`` with a weak ETag (the gzip and plain forms are the same content), 304 when the
    client already has it, and gzip when the client asks for it (HTML, CSS and JS shrink 4-6x).
    ``gzipped``, ``etag``: the compressed form and the ETag, if already made."""
    etag = etag or weak_etag(body)
    headers = {**headers, "ETag": etag, "Vary": "Accept-Encoding"}
    if status_code == 200 and none_match(field(request.headers, "if-none-match"), [etag]):
        return Response(status_code=304, headers=headers)
    if len(body) >= GZIP_MIN_BYTES and accepts_coding(field(request.headers, "accept-encoding"), "gzip"):
        body = gzipped or gzip_bytes(body)
        headers["Content-Encoding"] = "gzip"
    return Response(body, status_code=status_code, headers=headers, media_type=media_type)


def install_error_pages(app: FastAPI) -> None:
    """A browser that follows a stale link under /ui/ gets a page, not problem+json. Everything else
    (and any client that does not ask for HTML) keeps the one error table's answer."""

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NotFoundError)
        path = request.url.path.removeprefix(request.scope.get("root_path", ""))
        if path.startswith("/ui/") and "text/html" in request.headers.get("accept", ""):
            return page(request, "error.html", status_code=404, title=exc.title, detail=exc.detail)
        return problem(status_for(exc), exc.title, exc.detail)

    app.add_exception_handler(NotFoundError, not_found)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, catalog: CatalogDep, _who: ListIdentity) -> Response:
    return page(request, "home.html", home=await catalog.home())


@router.get("/ui/projects/", response_class=HTMLResponse)
async def projects(
    request: Request,
    catalog: CatalogDep,
    _who: ListIdentity,
    q: str = Query("", max_length=200),
    page_: int = Query(1, alias="page", ge=1, le=100_000),
    sort: str = Query("name", pattern="^(name|updated)$"),
) -> Response:
    return page(request, "projects.html", result=await catalog.search(q, page_, sort=sort))


@router.get("/ui/project/{project}/", response_class=HTMLResponse)
async def project(request: Request, project: str, catalog: CatalogDep, _who: ListIdentity) -> Response:
    if (name := dists.normalize(project)) != project:
        return RedirectResponse(f"../{name}/", status_code=301)
    return _project_page(request, await catalog.project(name), pinned=False)


@router.get("/ui/project/{project}/{version}/", response_class=HTMLResponse)
async def release(request: Request, project: str, version: str, catalog: CatalogDep, _who: ListIdentity) -> Response:
    try:
        canonical = str(dists.parse_version(version))
    except InvalidDistributionError:  # an unparsable version is simply not on this index
        raise NotFoundError(f"{version!r} is not a version on this index.") from None
    if (name := dists.normalize(project)) != project or canonical != version:
        return RedirectResponse(f"../../{name}/{canonical}/", status_code=301)
    view = await catalog.project(name, version)
    if view.version != version and _is_canonical(view.version):
        # 1.0.0 is release 1.0 (PEP 440 equality): its page lives under the release's name, as on PyPI.
        # (A stored spelling that is not canonical is shown where it is asked for: no redirect loop.)
        return RedirectResponse(f"../{view.version}/", status_code=301)
    return _project_page(request, view, pinned=True)


def _is_canonical(version: str) -> bool:
    try:
        return str(dists.parse_version(version)) == version
    except InvalidDistributionError:
        return False


def _project_page(request: Request, view: ProjectView, pinned: bool) -> Response:
    pin = f"{view.name}=={view.version}" if pinned or not view.is_latest else view.name
    return page(request, "project.html", p=view, pin=pin)


@router.get("/ui/projects", include_in_schema=False)
async def projects_no_slash(request: Request) -> Response:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"projects/{query}", status_code=301)


@router.get("/ui/static/{name}")
async def static(request: Request, name: str) -> Response:
    if name not in ASSETS:
        raise NotFoundError(f"No asset {name!r}.")
    # Pages link assets with ?v=<content hash>, so a cached copy never goes stale.
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
    return send_cached(request, _asset(name), ASSETS[name], headers, gzipped=_asset_gzipped(name))


@router.get("/favicon.ico")
async def favicon(request: Request) -> Response:
    """Browsers ask for /favicon.ico on every site, pages or not (the API docs, a file listing): an
    icon rather than a 404 in every access log. SVG: every current browser draws it from this URL."""
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return send_cached(request, _asset(FAVICON), ASSETS[FAVICON], headers)


@cache
def _asset(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@cache
def _asset_gzipped(name: str) -> bytes:
    return gzip_bytes(_asset(name))
