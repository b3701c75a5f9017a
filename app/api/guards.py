"""Refuse NUL characters in the URL before any route sees them.

No valid project name, filename, version or search term contains one, SQLite and PostgreSQL treat
it differently (PostgreSQL refuses it in text, which would surface as a 500), and C-level code
further down may truncate at it. One check here covers every route."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

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
