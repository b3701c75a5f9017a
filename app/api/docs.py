"""The API docs (``/docs``, Swagger UI; ``/redoc``, ReDoc) served from the server itself.

FastAPI's own docs pages load Swagger UI and ReDoc from a public CDN, which a private index's users
often cannot reach (air-gapped build farms, corporate proxies): the page stays blank. The same
scripts ship inside the ``fastapi-offline`` package and are mounted here under ``/docs/static/``,
so the docs work wherever the index does, and no browser tells a CDN which index it is reading.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(fastapi_offline.__file__).resolve().parent / "static"

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
    app.mount("/docs/static", StaticFiles(directory=STATIC), name="docs-static")

    def root(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        page = get_swagger_ui_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{base}/docs/static/swagger-ui-bundle.js",
            swagger_css_url=f"{base}/docs/static/swagger-ui.css",
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
            redoc_js_url=f"{base}/docs/static/redoc.standalone.js",
            redoc_favicon_url=f"{base}/{favicon}",
            with_google_fonts=False,
        )
        page.headers.update(SECURITY_HEADERS)
        return page
