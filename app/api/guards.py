"""Refuse NUL characters in the URL before any route sees them.

No valid project name, filename, version or search term contains one, SQLite and PostgreSQL treat
it differently (PostgreSQL refuses it in text, which would surface as a 500), and C-level code
further down may truncate at it. One check here covers every route, and ``document_nul_rejection``
says so in the OpenAPI document: every operation lists the 400, and every string parameter carries
a pattern that excludes NUL (so a schema-driven client or fuzzer knows what is valid)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
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
