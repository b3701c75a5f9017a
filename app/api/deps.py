"""FastAPI dependencies: services from ``app.state`` and the one auth check."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, Request

from app.auth.policy import Action, Identity, Policy
from app.services.catalog import CatalogService
from app.services.files import FileService
from app.services.index import IndexService
from app.services.upload import UploadService


def basic_credentials(request: Request) -> tuple[str, str] | None:
    return basic_credentials_from(request.headers)


def basic_credentials_from(headers: Mapping[str, str]) -> tuple[str, str] | None:
    header = headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not ASCII (a header is latin-1), not UTF-8
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def client_address(scope: Mapping[str, object]) -> str | None:
    """The peer's address (the proxy's X-Forwarded-For where uvicorn trusts the proxy: its
    --forwarded-allow-ips, FORWARDED_ALLOW_IPS, loopback by default)."""
    client = scope.get("client")
    return client[0] if isinstance(client, tuple | list) and client else None


def require(action: Action) -> Callable[[Request], Awaitable[Identity | None]]:
    async def dependency(request: Request) -> Identity | None:
        policy: Policy = request.app.state.policy
        return await policy.authorize(action, basic_credentials(request), client_address(request.scope))

    return dependency


# async: FastAPI runs a plain ``def`` dependency in the thread pool, a thread hop per request.
async def _index(request: Request) -> IndexService:
    return request.app.state.index  # type: ignore[no-any-return]


async def _files(request: Request) -> FileService:
    return request.app.state.files  # type: ignore[no-any-return]


async def _uploads(request: Request) -> UploadService:
    return request.app.state.uploads  # type: ignore[no-any-return]


IndexDep = Annotated[IndexService, Depends(_index)]
FileDep = Annotated[FileService, Depends(_files)]
UploadDep = Annotated[UploadService, Depends(_uploads)]
ListIdentity = Annotated[Identity | None, Depends(require(Action.LIST))]
DownloadIdentity = Annotated[Identity | None, Depends(require(Action.DOWNLOAD))]
UploadIdentity = Annotated[Identity | None, Depends(require(Action.UPDATE))]


def _catalog(request: Request) -> CatalogService:
    return request.app.state.catalog  # type: ignore[no-any-return]


CatalogDep = Annotated[CatalogService, Depends(_catalog)]
