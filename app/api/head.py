"""HEAD wherever GET is answered (RFC 9110 9.1: a general-purpose server MUST support both).

FastAPI registers ``@router.get`` routes for GET alone, so a HEAD there would get 405. This ASGI
middleware lets a HEAD through as it is first: the routes that answer HEAD themselves (the files,
the fast path's project pages, /docs and /openapi.json) do so. When routing answers 405 instead,
the request is answered again as the GET it stands for, headers only: same status, same headers
(Content-Length included), no body.

Why not add HEAD to every route's methods: FastAPI derives an operation's ``operationId`` from the
first of its route's methods, a ``set`` whose order varies from one process to the next, and
would document every HEAD as a second operation; the OpenAPI document stays as it is this way.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        before = dict(scope)  # routing adds path parameters to the scope; the retry starts afresh
        refused = False

        async def first(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 405:
                refused = True
            if not refused:
                await send(message)

        await self.app(scope, receive, first)
        if not refused:
            return
        as_get = {**before, "method": "GET"}

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] in ("http.response.body", "http.response.pathsend"):
                more = message["type"] == "http.response.body" and message.get("more_body", False)
                await send({"type": "http.response.body", "body": b"", "more_body": more})

        await self.app(as_get, receive, headers_only)
        if "route" in as_get:  # for the metrics middleware's label
            scope["route"] = as_get["route"]
