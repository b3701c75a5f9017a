"""The two hot routes answered before FastAPI routes the request: cached project pages and uploads.

Profiled under wrk (1 worker, the 210-file page, served from the cache): FastAPI's route matching
and dependency solving took about two thirds of each request's CPU, the page itself (the serial
lookup and the cache hit) 12 %. This ASGI middleware answers ``GET``/``HEAD /simple/<name>/``
itself in the plain case: a normalised name, no query string, a listing the policy allows for
these credentials, a media type the client accepts, a project that exists. It answers through the
route's own function (``routes.simple.project_response``), so the bytes and headers are the same.
A 401 or 429 is answered here too, through the error table's function (the route would check the
password again). Anything else -- a redirect, ``?format=``, a 403/404/406, the fallback index --
goes on to the route, which answers it as always.

Uploads (``POST /``, ``/legacy/``, ``/legacy``) are answered here whole, through the route's own
function (``routes.upload.upload_response``) after the same policy check, and their errors through
the error table's own function (``errors.domain_problem``): FastAPI's routing and dependency
solving cost ~0.25 ms of a small upload's 3.5 ms. The routes stay registered: they document the
operations in OpenAPI, and answer whatever this does not take.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app import dists
from app.api.conditional import field
from app.api.deps import basic_credentials_from, client_address
from app.api.errors import disconnected, domain_problem
from app.api.routes import simple, upload
from app.auth.policy import Action
from app.errors import AuthenticationRequiredError, PackageIndexError, StorageUnavailableError
from app.simple.negotiate import negotiate

PREFIX = "/simple/"
ROUTE_PATH = "/simple/{project}/"
FILES_BASE = "../../files/"
UPLOAD_PATHS = ("/", "/legacy/", "/legacy")


class FastPath:
    def __init__(self, app: ASGIApp, realm: str) -> None:
        self.app = app
        self.realm = realm
        # The routes this stands in for (the metrics middleware labels requests by their templates).
        self.route = next(r for r in simple.router.routes if getattr(r, "path", None) == ROUTE_PATH)
        self.upload_routes = {r.path: r for r in upload.router.routes if getattr(r, "path", None) in UPLOAD_PATHS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.upload_routes:
            scope["route"] = self.upload_routes[scope["path"]]
            response = await self._upload(scope, receive)
            await response(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and not scope["query_string"]:
            path: str = scope["path"]
            if path.startswith(PREFIX) and path.endswith("/"):
                name = path[len(PREFIX) : -1]
                if name and "/" not in name and dists.normalize(name) == name:
                    response = await self._answer(scope, name, self.realm)
                    if response is not None:
                        scope["route"] = self.route
                        await response(scope, receive, send)
                        return
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(scope: Scope, name: str, realm: str) -> Any:
        state = scope["app"].state
        headers = Headers(scope=scope)
        try:
            await state.policy.authorize(Action.LIST, basic_credentials_from(headers), client_address(scope))
        except AuthenticationRequiredError as exc:
            # Answered here, as the route would: asking it would check the password a second time
            # (and count a wrong one twice against the client's failed logins).
            return domain_problem(exc, realm)
        try:
            fmt = negotiate(field(headers, "accept"))
            return await simple.project_response(state.index, headers, name, fmt, FILES_BASE)
        except StorageUnavailableError as exc:
            # The database is down or its connections all busy: the route would ask it again, and
            # wait as long again, for the same 503 (a 503 names no realm: that is for 401s).
            return domain_problem(exc, realm="")
        except PackageIndexError:
            return None  # the route answers it (and raises the same error, mapped as always)

    async def _upload(self, scope: Scope, receive: Receive) -> Any:
        request = Request(scope, receive)
        state = scope["app"].state
        try:
            who = await state.policy.authorize(
                Action.UPDATE, basic_credentials_from(request.headers), client_address(scope)
            )
            return await upload.upload_response(state.uploads, request, who)
        except PackageIndexError as exc:
            return domain_problem(exc, self.realm)
        except ClientDisconnect:
            return disconnected()


def install_fast_path(app: FastAPI, realm: str) -> None:
    """Add the middleware. Call it before any other middleware is added: it must run innermost,
    after those that see every request (the NUL guard, the metrics)."""
    app.add_middleware(FastPath, realm=realm)
