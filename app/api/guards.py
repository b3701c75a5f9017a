"""Guards in front of every route: NUL characters in the URL, small bodies, cross-site requests.

Refuse NUL characters in the URL before any route sees them.

No valid project name, filename, version or search term contains one, SQLite and PostgreSQL treat
it differently (PostgreSQL refuses it in text, which would surface as a 500), and C-level code
further down may truncate at it. One check here covers every route, and ``document_nul_rejection``
says so in the OpenAPI document: every operation lists the 400, and every string parameter carries
a pattern that excludes NUL (so a schema-driven client or fuzzer knows what is valid)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import problem


class RejectNulMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower()):
            response = problem(400, "Bad request", "The URL contains a NUL character (%00); remove it.")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


#: Methods that change nothing: a browser may send them from any site.
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class CrossSiteGuard:
    """Refuse a request that changes the index (upload, ``remove_pkg``, yank, delete) when a browser
    sends it on behalf of another site (cross-site request forgery).

    A browser that has logged in to the UI keeps the Basic credentials and attaches them to every
    request to this server, including a form another site posts here (``:action=remove_pkg`` as
    ``application/x-www-form-urlencoded``, a yank with a ``text/plain`` body) or a ``no-cors``
    fetch of a multipart upload: no CORS preflight stops those. Browsers say where a request comes
    from: ``Sec-Fetch-Site`` (every current browser), else ``Origin``. twine, pip, uv, flit, hatch,
    poetry and curl send neither, and pass. The same check as Go's ``http.CrossOriginProtection``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            if (source := cross_site_source(Headers(scope=scope))) is not None:
                response = problem(
                    403,
                    "Cross-site request refused",
                    f"This request was sent by a web page of another site ({source}): uploads, yanks and "
                    "deletes are refused from other sites' pages. Send it with twine, uv, curl or this "
                    "server's own /docs page.",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def cross_site_source(headers: Headers) -> str | None:
    """How a browser said the request comes from another origin, or None (same origin, or not a
    browser)."""
    site = headers.get("sec-fetch-site")
    if site is not None:  # set by the browser itself: "same-origin", "same-site", "cross-site", "none"
        return None if site.strip().lower() in ("same-origin", "none") else f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    try:
        netloc = urlsplit(origin.strip()).netloc
    except ValueError:
        netloc = ""
    # "null" (a sandboxed frame, a data: URL) has no host: never this server.
    return None if netloc and netloc.lower() == headers.get("host", "").lower() else f"Origin: {origin}"


#: The largest body of any request but an upload: the JSON API takes a yank reason at most.
SMALL_BODY_BYTES = 64 * 1024


class SmallBodyMiddleware:
    """Bodies of requests other than uploads are small, and come in time.

    The upload form (``upload_paths``, POST) streams its body with its own limits and per-chunk
    timeout. Any other body is read whole into memory by the framework before the route's
    dependencies run (the login check included): without a cap, an anonymous client could send
    a yank request of any size. So: a Content-Length over SMALL_BODY_BYTES is refused with 413
    before anything is read, a body without one is counted as it arrives, and a client that stops
    sending it is answered 408 after ``body_timeout`` seconds, as an upload would be."""

    def __init__(self, app: ASGIApp, body_timeout: float, upload_paths: tuple[str, ...]) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in ("GET", "HEAD", "OPTIONS")
            or (scope["method"] == "POST" and scope["path"] in self.upload_paths)
        ):
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > SMALL_BODY_BYTES:
            await _too_large()(scope, receive, send)
            return
        received, complete = 0, False

        async def small_body() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: only the disconnect is left, whenever it comes
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"The client sent no data for {self.body_timeout:g} seconds (--body-timeout)."
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > SMALL_BODY_BYTES:
                    raise HTTPException(413, _TOO_LARGE)
            return message

        await self.app(scope, small_body, send)


_TOO_LARGE = (
    f"The request body is larger than {SMALL_BODY_BYTES} bytes; only uploads (POST / or /legacy/) "
    "take large bodies, and this request takes a small JSON body at most."
)


def _too_large() -> Any:
    return problem(413, "Request body too large", _TOO_LARGE)


NO_NUL_PATTERN = "^[^\\u0000]*$"


def document_nul_rejection(app: FastAPI) -> None:
    """Post-process the generated OpenAPI document once (see the module docstring)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path_item in schema.get("paths", {}).values():
                for operation in path_item.values():
                    operation.setdefault("responses", {}).setdefault(
                        "400",
                        {
                            "description": "Bad request, for example a NUL character (%00) in the URL "
                            "(application/problem+json)."
                        },
                    )
                    for parameter in operation.get("parameters", []):
                        _exclude_nul(parameter.get("schema", {}))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _exclude_nul(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and "pattern" not in schema:
        schema["pattern"] = NO_NUL_PATTERN
    for variant in schema.get("anyOf", []):
        _exclude_nul(variant)
