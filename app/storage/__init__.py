"""Storage backends behind one factory: a local folder (default) or S3-compatible object storage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from app.storage.base import Storage
from app.storage.flat import FlatLocalStorage
from app.storage.local import LocalStorage


async def _nothing() -> None:
    return None


async def build_storage(
    url: str | None,
    *,
    files_dir: Path,
    staging_dir: Path,
    flat: bool = False,
    extra_roots: Sequence[Path] = (),
    s3_endpoint_url: str | None = None,
    s3_public_endpoint_url: str | None = None,
    s3_delivery: str = "stream",
    s3_presign_expires: int = 300,
) -> tuple[Storage, Callable[[], Awaitable[None]]]:
    """The storage for ``url`` (``s3://bucket/prefix``, or None for ``files_dir``) and a coroutine
    function that releases it. ``flat``: ``files_dir`` is a pypiserver package folder, kept flat
    (with ``extra_roots`` served read-only). S3 needs the ``s3`` extra: ``pip install 'packhouse[s3]'``."""
    if not url and flat:
        return FlatLocalStorage(files_dir, extra_roots), _nothing
    if not url:
        local = LocalStorage(files_dir)

        async def release() -> None:
            local.release_spares()

        return local, release
    try:
        from app.storage.s3 import S3Options, open_s3_storage
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise RuntimeError(f"{url} needs the S3 client: pip install 'packhouse[s3]' ({exc})") from exc
    options = S3Options(
        url=url,
        endpoint_url=s3_endpoint_url,
        public_endpoint_url=s3_public_endpoint_url,
        delivery="redirect" if s3_delivery == "redirect" else "stream",
        presign_expires=s3_presign_expires,
    )
    return await open_s3_storage(options, staging_dir)
