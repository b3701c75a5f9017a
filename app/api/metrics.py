"""Prometheus metrics: an ASGI middleware that counts and times requests, and ``/metrics``.

Each app gets its own registry (no import-time state). With several uvicorn workers each process
counts its own requests; scrape them behind a load balancer or run one worker per container.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import basic_credentials
from app.errors import AuthenticationRequiredError

UPLOAD_ROUTES = {"/", "/legacy/"}
FILE_ROUTES = {"/files/{project}/{filename}", "/packages/{filename}"}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "packhouse_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "packhouse_http_request_duration_seconds",
            "Time to answer, by route.",
            ["method", "route"],
            registry=r,
        )
        self.uploads = Counter("packhouse_uploads", "Distribution files uploaded (accepted).", registry=r)
        self.downloads = Counter("packhouse_downloads", "Distribution files and metadata served.", registry=r)
        self.bytes_served = Counter("packhouse_bytes_served", "Bytes of file bodies sent.", registry=r)
        self.projects = Gauge("packhouse_projects", "Projects with at least one file.", registry=r)
        self.files = Gauge("packhouse_files", "Distribution files stored.", registry=r)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self._observe(scope, status, sent, time.perf_counter() - start)

    def _observe(self, scope: Scope, status: int, sent: int, elapsed: float) -> None:
        route: Any = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"  # the template: bounded label values
        method = scope["method"]
        m = self.metrics
        m.requests.labels(method, path, str(status)).inc()
        m.latency.labels(method, path).observe(elapsed)
        if path in UPLOAD_ROUTES and method == "POST" and status < 300:
            m.uploads.inc()
        if path in FILE_ROUTES and method == "GET" and status in (200, 206):
            m.downloads.inc()
            m.bytes_served.inc(sent)


router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    state = request.app.state
    if state.metrics_auth:
        creds = basic_credentials(request)
        authenticator = state.policy.authenticator
        if not creds or authenticator is None or not await authenticator.verify(*creds):
            raise AuthenticationRequiredError(
                "/metrics needs the credentials of a user of the passwords file."
            )
    m: Metrics = state.metrics
    projects, files = await state.stats.counts()
    m.projects.set(projects)
    m.files.set(files)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
