"""The API docs (``/docs``, Swagger UI; ``/redoc``, ReDoc) served from the server itself.

FastAPI's own docs pages load Swagger UI and ReDoc from a public CDN, which a private index's users
often cannot reach (air-gapped build farms, corporate proxies): the page stays blank. The same
scripts ship inside the ``fastapi-offline`` package and are served here under ``/docs/static/``,
so the docs work wherever the index does, and no browser tells a CDN which index it is reading.
Like the UI's assets they are linked with ``?v=<content hash>`` (cached for good), and gzipped for
browsers that ask (2.8 MB of script and style become 0.8 MB).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import anyio
import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from app.api.routes.ui import send_cached
from app.errors import NotFoundError
from app.services.compressed import gzip_bytes

STATIC = Path(fastapi_offline.__file__).resolve().parent / "static"
FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
}

# Only the server's own scripts run; Swagger UI needs inline script (its start-up call) and inline
# style, ReDoc a blob: worker. Requests go to this server only ("Try it out" included).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def install_docs(app: FastAPI, favicon: str) -> None:
    """``/docs`` and ``/redoc`` for an app made with ``docs_url=None, redoc_url=None``. ``favicon``:
    the icon's URL, relative to the server's root."""

    def root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    async def url(request: Request, name: str) -> str:
        version = (await _loaded(name))[2]
        return f"{root(request)}/docs/static/{name}?v={version}"

    @app.get("/docs/static/{name}", include_in_schema=False)
    async def static(request: Request, name: str) -> Response:
        if name not in FILES:
            raise NotFoundError(f"No file {name!r} in the API docs' assets.")
        body, gzipped, _ = await _loaded(name)
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
        return send_cached(request, body, FILES[name], headers, gzipped=gzipped)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        page = get_swagger_ui_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=await url(request, "swagger-ui-bundle.js"),
            swagger_css_url=await url(request, "swagger-ui.css"),
            swagger_favicon_url=f"{base}/{favicon}",
        )
        page.headers.update(SECURITY_HEADERS)
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        page = get_redoc_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - API reference",
            redoc_js_url=await url(request, "redoc.standalone.js"),
            redoc_favicon_url=f"{base}/{favicon}",
            with_google_fonts=False,
        )
        page.headers.update(SECURITY_HEADERS)
        return page


async def _loaded(name: str) -> tuple[bytes, bytes, str]:
    """The file, its gzip form and its version; read and compressed once (~0.1 s for all three),
    in a worker thread."""
    return await anyio.to_thread.run_sync(_load, name)


#: ReDoc's "API docs by Redocly" badge loads its logo from Redocly's CDN, which the page's policy
#: refuses (a console error in every browser) and a private network may not reach: an empty image
#: of the same size class stands in, from the script itself.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
NO_LOGO = b"data:image/svg+xml,%3Csvg%20xmlns=%27http://www.w3.org/2000/svg%27%20width=%271%27%20height=%271%27/%3E"


@cache
def _load(name: str) -> tuple[bytes, bytes, str]:
    body = (STATIC / name).read_bytes()
    if name == "redoc.standalone.js":
        body = body.replace(REDOC_LOGO, NO_LOGO)
    return body, gzip_bytes(body), hashlib.sha256(body).hexdigest()[:12]
