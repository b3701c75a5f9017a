"""Composition root: ``create_app(settings)`` and its lifespan. The only place adapters are wired.

uvicorn runs it as ``app.main:create_app --factory`` (settings from PACKHOUSE_* variables).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import __version__
from app.api import metrics as metrics_api
from app.api.docs import install_docs
from app.api.errors import install_error_handlers
from app.api.fallback import install_fallback
from app.api.fastpath import UPLOAD_PATHS, install_fast_path
from app.api.guards import CrossSiteGuard, RejectNulMiddleware, SmallBodyMiddleware, document_nul_rejection
from app.api.head import HeadAsGet
from app.api.routes import files, health, jsonapi, manage, packages, search, search_rpc, simple, ui, upload
from app.auth.htpasswd import HtpasswdAuthenticator
from app.auth.policy import Policy
from app.auth.throttle import LoginThrottle
from app.db.engine import build_engine, build_sessionmaker, sqlite_path, sqlite_write_problem
from app.db.logins import DatabaseLoginLedger
from app.db.migrate import upgrade_to_head
from app.db.serials import SessionSerials, SqliteSerials
from app.db.units import SessionUnits, SqliteUnits
from app.errors import DatabaseUnavailableError
from app.services.catalog import CatalogService
from app.services.files import FileService
from app.services.index import IndexService
from app.services.manage import ManageService
from app.services.scan import FolderIndexer
from app.services.stats import StatsService
from app.services.upload import UploadService
from app.settings import Settings
from app.storage import build_storage
from app.storage.base import Storage
from app.storage.flat import FlatLocalStorage

log = logging.getLogger("packhouse")

#: Set by ``packhouse run/serve --workers N`` for its workers once it has indexed the package
#: folders itself (not a setting: no PACKHOUSE_ prefix).
FOLDER_INDEXED_ENV = "_PACKHOUSE_FOLDER_INDEXED"


@asynccontextmanager
async def lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    url = settings.effective_database_url
    engine = build_engine(url)
    writer = build_engine(url, immediate=True)  # write transactions take turns (app/db/engine.py)
    await upgrade_to_head(writer)
    if sqlite_path(url) and (problem := await sqlite_write_problem(writer)):
        # `packhouse serve` refuses it before this (app/commands/_server.py: open_database).
        await writer.dispose()
        if writer is not engine:
            await engine.dispose()
        raise RuntimeError(problem)
    storage, close_storage = await open_storage(settings)
    flat = isinstance(storage, FlatLocalStorage)
    if swept := storage.sweep_temporary():
        log.warning("removed %d temporary file(s) left by an interrupted upload", swept)
    readers, writers = build_sessionmaker(engine), build_sessionmaker(writer)
    authenticator = (
        HtpasswdAuthenticator(
            settings.passwords_file,
            LoginThrottle(
                settings.login_failures, settings.login_failure_window, DatabaseLoginLedger(readers, writers)
            ),
        )
        if settings.passwords_file
        else None
    )

    async def readiness() -> str | None:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            return _not_ready("database", exc)
        try:
            await storage.check()
        except Exception as exc:  # noqa: BLE001
            return _not_ready("storage", exc)
        return None

    state = app.state
    state.policy = Policy(settings.required_actions, settings.anonymous_upload, authenticator)
    db_file = sqlite_path(url)
    serials = SqliteSerials(db_file) if db_file else SessionSerials(readers)
    units = SqliteUnits(url) if db_file else SessionUnits(readers, writers)
    state.index = IndexService(readers, serials=serials)
    state.files = FileService(readers, storage, serials=serials)
    state.catalog = CatalogService(readers, storage, serials=serials)
    state.uploads = UploadService(
        writers, storage, max_upload_size=settings.max_upload_size, overwrite=settings.overwrite,
        body_timeout=settings.body_timeout, flat=flat, units=units,
    )  # fmt: skip
    state.manage = ManageService(writers, storage)
    state.readiness = readiness
    state.stats = StatsService(readers)
    state.metrics_auth = settings.metrics_login_required
    rescanner = None
    stopping = asyncio.Event()
    if isinstance(storage, FlatLocalStorage):
        indexer = FolderIndexer(writers, storage)
        # Files already there are served from the first request on. With several workers the
        # parent indexed them just before starting this one (index_package_folders).
        if os.environ.get(FOLDER_INDEXED_ENV) != "1":
            await _sync_folder(indexer, storage.roots, settle=False)
        rescanner = asyncio.create_task(_rescan(indexer, storage.roots, settings.rescan_interval, stopping))
    state.file_offload = files.Offload(settings.x_accel_redirect, settings.x_sendfile, getattr(storage, "root", None))
    # The local store's uploads staged in place are swept once the server is up (it lists every
    # prefix folder: app/storage/local.py); the task is awaited at shutdown.
    sweeper = asyncio.create_task(_sweep_in_place(storage)) if hasattr(storage, "sweep_in_place") else None
    try:
        yield
    finally:
        serials.close()
        units.close()
        stopping.set()
        await _stop(rescanner, "the package folder rescan", cancel=True)
        await _stop(sweeper, "the sweep of interrupted uploads", cancel=False)
        await close_storage()
        await engine.dispose()
        if writer is not engine:
            await writer.dispose()


async def open_storage(settings: Settings) -> tuple[Storage, Callable[[], Awaitable[None]]]:
    """The storage the settings name, and a coroutine function that releases it: S3 (``storage``),
    pypiserver's package folder kept flat (``packages_dir``, as ``packhouse run DIR``), or the
    files folder. The server and the management commands open it here alike."""
    return await build_storage(
        settings.storage,
        files_dir=settings.effective_files_dir,
        staging_dir=settings.data_dir / "staging",
        flat=settings.packages_dir is not None and settings.files_dir is None,
        extra_roots=settings.extra_packages_dirs_list,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_public_endpoint_url=settings.s3_public_endpoint_url,
        s3_delivery=settings.s3_delivery,
        s3_presign_expires=settings.s3_presign_expires,
    )


async def _sweep_in_place(storage: Storage) -> None:
    try:
        swept = await anyio.to_thread.run_sync(storage.sweep_in_place)  # type: ignore[attr-defined]
    except Exception:  # the next start sweeps again; `packhouse check --repair` removes them too
        log.exception("sweeping interrupted uploads failed")
        return
    if swept:
        log.warning("removed %d temporary file(s) left by an interrupted upload", swept)


def _not_ready(what: str, exc: Exception) -> str:
    """/ready's reason, for anyone who asks: a file system error without its path (the log has
    it), anything else in the driver's words."""
    if isinstance(exc, DatabaseUnavailableError) and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__  # the driver's own words (app/db/engine.py)
    log.warning("not ready: %s: %s", what, exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{what}: {exc.strerror}"
    return f"{what}: {exc}"


async def index_package_folders(settings: Settings, writer: AsyncEngine) -> None:
    """Index the package folders' new files once, before the workers start (``packhouse run DIR
    --workers N``): each worker's start would index them too, all of them racing for every row
    and reading every file. The workers' own scan then finds them indexed."""
    storage, close = await open_storage(settings)
    try:
        if isinstance(storage, FlatLocalStorage):
            await _sync_folder(FolderIndexer(build_sessionmaker(writer), storage), storage.roots, settle=False)
    finally:
        await close()


async def _sync_folder(indexer: FolderIndexer, roots: list[Path], *, settle: bool = True) -> None:
    report = await indexer.sync_in_place(roots, settle=settle)
    if report.added or report.removed or report.broken or report.skipped:
        log.info(
            "package folder %s: %d file(s) indexed, %d removed, %d broken (skipped), "
            "%d of other types (skipped), %d unchanged",
            ", ".join(map(str, roots)), len(report.added), len(report.removed), len(report.broken),
            len(report.skipped), report.unchanged,
        )  # fmt: skip


async def _rescan(indexer: FolderIndexer, roots: list[Path], interval: float, stopping: asyncio.Event) -> None:
    """Pick up files dropped into the package folders by hand (pypiserver lists them at once).
    Ends when cancelled, and at the latest once ``stopping`` is set: a cancellation that a
    library swallows mid-scan must not leave the loop running and the shutdown waiting for it."""
    while interval > 0 and not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
        if stopping.is_set():
            return
        try:
            await _sync_folder(indexer, roots)
        except Exception:  # a failed rescan must not stop the next one
            log.exception("rescan of %s failed", roots)


#: How long the shutdown waits for each background task before it leaves it behind.
STOP_WAIT = 15.0


def _awaiting(task: asyncio.Task[None]) -> str:
    """Where a suspended task waits: its chain of awaits, outermost first."""
    lines, coro = [], task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return "\n".join(lines) or "  (unknown)"


async def _stop(task: asyncio.Task[None] | None, what: str, *, cancel: bool) -> None:
    """Wait for a background task at shutdown, cancelled first if ``cancel``: at most STOP_WAIT
    seconds, so that a task stuck in a library can never keep the server from stopping (uvicorn
    would wait for ever, a supervisor would have to kill it). A task left behind is logged with
    where it is stuck."""
    if task is None:
        return
    if cancel:
        task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_WAIT)
    if not done:
        where = _awaiting(task)
        log.error("%s did not stop within %g s of the shutdown; left behind at:\n%s", what, STOP_WAIT, where)
        return
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("%s failed: %s", what, exc, exc_info=exc)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Packhouse",
        version=__version__,
        description="A private Python package index: PEP 503/691 simple API, PEP 658 metadata, "
        "PEP 700 upload times, and the legacy upload API used by twine, flit, uv, hatch and poetry.",
        lifespan=partial(lifespan, settings=settings),
        redirect_slashes=False,
        docs_url=None,  # install_docs: the same pages, their scripts served by Packhouse (no CDN)
        redoc_url=None,
    )
    install_docs(app, favicon=f"ui/static/{ui.FAVICON}?v={ui.asset_version(ui.FAVICON)}")
    install_error_handlers(app, settings.realm)
    install_fast_path(app, settings.realm)  # innermost: after the NUL guard and the metrics
    app.add_middleware(HeadAsGet)  # HEAD on a GET-only route: answered as that GET, headers only
    app.add_middleware(SmallBodyMiddleware, body_timeout=settings.body_timeout, upload_paths=UPLOAD_PATHS)
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(CrossSiteGuard)  # before any body is read, the upload fast path's included
    document_nul_rejection(app)
    if settings.metrics:
        app.state.metrics = metrics_api.Metrics()
        app.add_middleware(metrics_api.MetricsMiddleware, metrics=app.state.metrics)
        app.include_router(metrics_api.router)
    if settings.fallback_url:
        install_fallback(app, settings.fallback_url)
    if settings.health_endpoint != "/health":  # pypiserver: --health-endpoint
        app.add_api_route(settings.health_endpoint, health.health, methods=["GET"], response_model=health.Health)
    ui.install_error_pages(app)  # HTML 404s for browsers under /ui/
    app.include_router(packages.router)
    for module in (health, files, upload, manage, simple, search, search_rpc, jsonapi, ui):
        app.include_router(module.router)
    app.include_router(simple.root_router)  # last: /{project}/ would shadow everything else
    return app
