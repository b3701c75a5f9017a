"""The single error -> HTTP table. Errors are RFC 9457 problem details (application/problem+json)
with a human ``title`` and ``detail``; uv prints them. The ``detail`` is the status line's reason
phrase too (app/http_reason.py), which twine, pip, flit and poetry print."""

from __future__ import annotations

import json
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import (
    AuthenticationRequiredError,
    DigestMismatchError,
    DistFileNotFoundError,
    FileExistsInIndexError,
    GoneError,
    InvalidDistributionError,
    InvalidRequestError,
    NotAcceptableError,
    NotFoundError,
    PackageIndexError,
    PermissionDeniedError,
    ProjectNotFoundError,
    ReadOnlyDatabaseError,
    RequestTimeoutError,
    StorageFullError,
    StorageUnavailableError,
    TooManyLoginFailuresError,
    UnsupportedMediaTypeError,
    UploadTooLargeError,
)
from app.http_reason import REASON

STATUS: dict[type[PackageIndexError], int] = {
    ProjectNotFoundError: 404,
    DistFileNotFoundError: 404,
    NotFoundError: 404,
    NotAcceptableError: 406,
    AuthenticationRequiredError: 401,  # + WWW-Authenticate (pip retries with credentials only on 401)
    # No WWW-Authenticate (no login is asked for), and no Retry-After: pip's urllib3 would sleep
    # that long before each of its 5 retries, a silent hang of up to 25 minutes; the detail says it.
    TooManyLoginFailuresError: 429,
    PermissionDeniedError: 403,
    FileExistsInIndexError: 409,  # detail starts "File already exists" (twine --skip-existing)
    GoneError: 410,
    UploadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    RequestTimeoutError: 408,
    InvalidRequestError: 400,
    DigestMismatchError: 400,
    InvalidDistributionError: 400,
    StorageFullError: 507,
    ReadOnlyDatabaseError: 503,  # + Retry-After
    StorageUnavailableError: 503,  # + Retry-After
}
PROBLEM = "application/problem+json"


PROBLEM_SCHEMA: dict[str, object] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}


def problem_response(description: str) -> dict[str, object]:
    """OpenAPI ``responses`` entry for an error answered as application/problem+json."""
    return {"description": description, "content": {PROBLEM: {"schema": PROBLEM_SCHEMA}}}


def status_for(exc: PackageIndexError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 400


class ProblemResponse(Response):
    """A problem details body; its ``detail`` also goes in the status line (app/http_reason.py):
    twine, pip, flit and poetry print the reason phrase, and the body only when asked to."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
        super().__init__(body + "\n", status_code=status, media_type=PROBLEM, headers=headers)
        self.reason = detail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers,
                    REASON: self.reason})  # fmt: skip
        await send({"type": "http.response.body", "body": self.body})


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return ProblemResponse(status, title, detail, headers)


def domain_problem(exc: PackageIndexError, realm: str) -> Response:
    """The answer to a domain error (the exception handler's, and app/api/fastpath.py's)."""
    status = status_for(exc)
    headers = {"WWW-Authenticate": f'Basic realm="{realm}"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "30"}
    return problem(status, exc.title, exc.detail, headers)


def disconnected() -> Response:
    # The client went away mid-upload; the staged file is already discarded. Nobody reads this.
    return problem(400, "Client disconnected", "The request body was not received completely.")


def install_error_handlers(app: FastAPI, realm: str) -> None:
    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PackageIndexError)
        return domain_problem(exc, realm)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)

        return problem(exc.status_code, HTTPStatus(exc.status_code).phrase, detail, exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')}")
        return problem(422, "Invalid request", "; ".join(parts) or "invalid request")

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        return disconnected()

    app.add_exception_handler(PackageIndexError, on_domain_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
