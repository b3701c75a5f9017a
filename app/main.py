"""Composition root: ``create_app(settings)`` and its lifespan. The only place adapters are wired.

uvicorn runs it as ``app.main:create_app --factory`` (settings from PACKHOUSE_* variables).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from sqlalchemy import text

from app import __version__
from app.api.errors import install_error_handlers
from app.api.routes import files, health, landing, simple, upload
from app.auth.htpasswd import HtpasswdAuthenticator
from app.auth.policy import Policy
from app.db.engine import build_engine, build_sessionmaker, sqlite_path
from app.db.migrate import upgrade_to_head
from app.db.serials import SessionSerials, SqliteSerials
from app.services.files import FileService
from app.services.index import IndexService
from app.services.upload import UploadService
from app.settings import Settings
from app.storage.local import LocalStorage

log = logging.getLogger("packhouse")


@asynccontextmanager
async def lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    url = settings.effective_database_url
    engine = build_engine(url)
    writer = build_engine(url, immediate=True) if engine.dialect.name == "sqlite" else engine
    await upgrade_to_head(writer)
    storage = LocalStorage(settings.effective_files_dir)
    if swept := storage.sweep_temporary():
        log.warning("removed %d temporary file(s) left by an interrupted upload", swept)
    authenticator = HtpasswdAuthenticator(settings.passwords_file) if settings.passwords_file else None
    readers, writers = build_sessionmaker(engine), build_sessionmaker(writer)

    async def readiness() -> str | None:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            return f"database: {exc}"
        try:
            await storage.check()
        except Exception as exc:  # noqa: BLE001
            return f"storage: {exc}"
        return None

    state = app.state
    state.policy = Policy(settings.required_actions, settings.anonymous_upload, authenticator)
    db_file = sqlite_path(url)
    serials = SqliteSerials(db_file) if db_file else SessionSerials(readers)
    state.index = IndexService(readers, serials=serials)
    state.files = FileService(readers, storage)
    state.uploads = UploadService(
        writers, storage, max_upload_size=settings.max_upload_size, overwrite=settings.overwrite
    )
    state.readiness = readiness
    state.file_offload = files.Offload(settings.x_accel_redirect, settings.x_sendfile, storage.root)
    try:
        yield
    finally:
        serials.close()
        await engine.dispose()
        if writer is not engine:
            await writer.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="Packhouse",
        version=__version__,
        description="A private Python package index: PEP 503/691 simple API, PEP 658 metadata, "
        "PEP 700 upload times, and the legacy upload API used by twine, flit, uv, hatch and poetry.",
        lifespan=partial(lifespan, settings=settings),
        redirect_slashes=False,
    )
    install_error_handlers(app, settings.realm)
    for module in (health, files, upload, simple, landing):
        app.include_router(module.router)
    app.include_router(simple.root_router)  # last: /{project}/ would shadow everything else
    return app
