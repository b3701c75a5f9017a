"""Prometheus metrics: an ASGI middleware that counts and times requests, and ``/metrics``.

Each app gets its own registry (no import-time state). With several uvicorn workers (``--workers``)
``packhouse serve`` points every worker at one shared folder (prometheus_client's multiprocess
mode, ``PROMETHEUS_MULTIPROC_DIR``): each worker counts into its own files there, and whichever
worker answers a scrape reports the sum over all of them, so the counters never jump between
workers' values. The project and file gauges are read from the database at each scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import basic_credentials, client_address
from app.auth.policy import Authenticator
from app.errors import AuthenticationRequiredError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode (app/commands/_server.py)
UPLOAD_ROUTES = {"/", "/legacy/"}
# The method label's values; any other method (h11 and other servers pass any token through) is
# "other": each label value is a series kept for the process's life, and /metrics grows with it.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
FILE_ROUTES = {"/files/{project}/{filename}", "/packages/{filename}", "/packages/{subdir:path}/{filename}"}


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

    def render(self, projects: int, files: int) -> bytes:
        """The exposition text: the counters of every worker (multiprocess mode) or of this one,
        and the index's size as read from the database for this scrape (not a Gauge object: in
        multiprocess mode each worker would report its own copy, labelled with its pid)."""
        index = CollectorRegistry()
        index.register(_Families(
            GaugeMetricFamily("packhouse_projects", "Projects with at least one file.", value=projects),
            GaugeMetricFamily("packhouse_files", "Distribution files stored.", value=files),
        ))  # fmt: skip
        shared = os.environ.get(MULTIPROC_ENV)
        if shared:
            workers = CollectorRegistry()
            multiprocess.MultiProcessCollector(workers, path=shared)
            return generate_latest(workers) + generate_latest(index)
        return generate_latest(self.registry) + generate_latest(index)


class _Families(Collector):
    def __init__(self, *families: Metric) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


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
        length = 0  # the Content-Length, for a body the server sends from a file (pathsend)

        async def counting_send(message: Message) -> None:
            nonlocal status, sent, length
            if message["type"] == "http.response.start":
                status = message["status"]
                length = next((int(v) for k, v in message.get("headers", ()) if k.lower() == b"content-length"), 0)
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.pathsend":  # a whole file (app/http_sendfile.py)
                sent += length
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self._observe(scope, status, sent, time.perf_counter() - start)

    def _observe(self, scope: Scope, status: int, sent: int, elapsed: float) -> None:
        route: Any = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"  # the template: bounded label values
        method = scope["method"] if scope["method"] in METHODS else "other"
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
    if state.metrics_auth:  # Settings.metrics_login_required: as private as the index's pages by default
        await check_login(state.policy.authenticator, basic_credentials(request), client_address(request.scope))
    m: Metrics = state.metrics
    projects, files = await state.stats.counts()
    return Response(m.render(projects, files), media_type=CONTENT_TYPE_LATEST)


async def check_login(
    authenticator: Authenticator | None, credentials: tuple[str, str] | None, client: str | None = None
) -> None:
    """Any user of the passwords file may read /metrics (Prometheus sends one with ``basic_auth``).

    Raises:
        AuthenticationRequiredError: no credentials, or wrong ones (-> 401 with WWW-Authenticate).
    """
    if credentials is None:
        raise AuthenticationRequiredError(
            "/metrics needs a login: the username and password of any user of this server's passwords "
            "file (Prometheus: basic_auth in the scrape config). The server's operator can leave "
            "/metrics open with --no-metrics-auth (PACKHOUSE_METRICS_AUTH=false)."
        )
    if authenticator is None or not await authenticator.verify(*credentials, client):
        raise AuthenticationRequiredError(
            f"Invalid username or password for {credentials[0]!r}: /metrics takes the login of any user "
            "of this server's passwords file."
        )
