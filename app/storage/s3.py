"""S3-compatible object storage (AWS S3, MinIO, Ceph, R2) through aioboto3. The only S3 import.

Uploads are staged in a local temporary file (the upload service hashes and validates it there),
then sent with one PUT, or a multipart upload in bounded parts for large files: memory never holds
more than one part. An object appears under its key only when the PUT or the multipart upload
completes, so a crash leaves no partial object (an unfinished multipart upload is invisible; a
bucket lifecycle rule aborts it, see docs/scale-out.md). Each upload's key is its own (its sha256
and a random part: app/services/upload.py, new_storage_key), so replicas never overwrite, nor
remove, each other's bytes. Credentials and region come the standard AWS way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial, wraps
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar
from urllib.parse import urlsplit

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from app.errors import StorageUnavailableError
from app.storage.base import Delivery, ObjectStream, RedirectURL
from app.storage.local import LocalStaged, sweep_dead_uploads

CHUNK = 256 * 1024
PART_SIZE = 8 * 1024 * 1024  # S3: parts are 5 MiB at least (but the last), 10,000 at most
MAX_PARTS = 10_000
_MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True, slots=True)
class S3Options:
    url: str  # s3://bucket/prefix
    endpoint_url: str | None = None  # None: AWS itself
    public_endpoint_url: str | None = None  # for presigned URLs, when clients see another host
    delivery: Literal["stream", "redirect"] = "stream"
    presign_expires: int = 300
    part_size: int = PART_SIZE


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix")."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an S3 URL: {url!r} (use s3://BUCKET/PREFIX)")
    return parts.netloc, parts.path.strip("/")


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


log = logging.getLogger("packhouse.storage")


_P = ParamSpec("_P")
_T = TypeVar("_T")
_Call = Callable[_P, Coroutine[Any, Any, _T]]


def _unavailable(what: str) -> Callable[[_Call[_P, _T]], _Call[_P, _T]]:
    """A storage call whose failure (no credentials, endpoint unreachable, access denied, no
    bucket) is the server's fault: StorageUnavailableError (503, try again) with the store's own
    reason, instead of a 500. A missing object is handled inside each call, before this."""

    def decorate(call: _Call[_P, _T]) -> _Call[_P, _T]:
        @wraps(call)
        async def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            try:
                return await call(*args, **kwargs)
            except (BotoCoreError, ClientError) as exc:
                if isinstance(exc, ClientError):
                    error = exc.response.get("Error", {})
                    why = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
                else:
                    why = type(exc).__name__
                log.error("S3 storage could not %s: %s", what, exc)
                raise StorageUnavailableError(
                    f"The file storage could not {what} ({why}). Nothing was changed; try again later. "
                    "If it persists, the server's administrator can see the storage's state at /ready."
                ) from exc

        return guarded

    return decorate


class S3Storage:
    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        staging_dir: Path,
        *,
        delivery: Literal["stream", "redirect"] = "stream",
        presign_expires: int = 300,
        presign_client: Any = None,
        part_size: int = PART_SIZE,
    ) -> None:
        self.client = client
        self.presign_client = presign_client or client
        self.bucket = bucket
        self.prefix = prefix
        self.staging_dir = staging_dir
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self.delivery_mode = delivery
        self.presign_expires = presign_expires
        self.part_size = part_size

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or "\\" in key or "\0" in key or ".." in key.split("/"):
            raise ValueError(f"invalid storage key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def stage(self, filename: str | None = None) -> LocalStaged:
        # A scratch copy: the PUT (or multipart upload) in commit() is what makes it durable.
        return LocalStaged(self.staging_dir, durable=False)

    @_unavailable("store the file")
    async def commit(  # type: ignore[override]
        self, staged: LocalStaged, key: str, *, sidecars: Mapping[str, bytes] | None = None
    ) -> None:
        await anyio.to_thread.run_sync(staged.finish)
        sent: list[str] = []
        try:
            for sidecar, data in (sidecars or {}).items():
                await self.put_bytes(sidecar, data)
                sent.append(sidecar)
            size = staged.path.stat().st_size
            if size <= self.part_size:
                data = await anyio.to_thread.run_sync(staged.path.read_bytes)
                await self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
            else:
                await self._multipart(staged.path, self._key(key), size)
        except BaseException:
            # The file did not arrive: its sidecars (the PEP 658 metadata) would be objects no row
            # and no file refers to. Removed at once, best effort (``packhouse check --repair``
            # finds any that a store failing outright keeps).
            with anyio.CancelScope(shield=True):
                for sidecar in sent:
                    try:
                        await self.client.delete_object(Bucket=self.bucket, Key=self._key(sidecar))
                    except (BotoCoreError, ClientError) as exc:
                        log.warning("could not remove %s after its file failed to store: %s", sidecar, exc)
            raise
        finally:
            staged.path.unlink(missing_ok=True)

    async def _multipart(self, path: Path, key: str, size: int) -> None:
        part_size = max(self.part_size, math.ceil(size / MAX_PARTS))
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        parts = []
        try:
            async with await anyio.open_file(path, "rb") as fh:
                number = 1
                while chunk := await fh.read(part_size):
                    done = await self.client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                    )
                    parts.append({"ETag": done["ETag"], "PartNumber": number})
                    number += 1
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                except ClientError:
                    pass  # the lifecycle rule will clean it up
            raise

    def replenish(self) -> None:
        """Nothing to prepare: uploads are staged in a scratch folder, then sent."""

    def start_commit(self, staged: LocalStaged, sidecars: Mapping[str, bytes]) -> Callable[[], None]:  # type: ignore[override]
        raise NotImplementedError("an object store stages nothing in place: uploads are sent by commit()")

    async def discard(self, staged: LocalStaged) -> None:  # type: ignore[override]
        def _discard() -> None:
            staged.finish()
            staged.path.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(_discard)

    @_unavailable("store the file")
    async def put_bytes(self, key: str, data: bytes) -> None:
        await self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    async def _get_object(self, key: str) -> Any:
        """The object's streaming body. Raises FileNotFoundError if there is no such object."""
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(key) from None
            raise
        return response["Body"]

    @_unavailable("read the file")
    async def get_bytes(self, key: str) -> bytes:
        body = await self._get_object(key)
        async with body:  # (entering yields the raw HTTP response: keep the StreamingBody)
            return await body.read()  # type: ignore[no-any-return]

    async def open(self, key: str) -> AsyncIterator[bytes]:
        body = await self._get_object(key)
        async with body:
            async for chunk in body.iter_chunks(CHUNK):
                yield chunk

    async def read_range(self, key: str, first: int, last: int) -> AsyncIterator[bytes]:
        response = await self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes={first}-{last}")
        body = response["Body"]
        async with body:
            async for chunk in body.iter_chunks(CHUNK):
                yield chunk

    async def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return await self.client.head_object(Bucket=self.bucket, Key=self._key(key))  # type: ignore[no-any-return]
        except ClientError as exc:
            if _missing(exc):
                await self._bucket_is_there()
                return None
            raise

    async def _bucket_is_there(self) -> None:
        """A HEAD answer has no body, so S3 answers a missing bucket as a missing object: a bare
        404. Asked only after such a 404 (rare: a row vouches for every object it names), so that
        a bucket that went away is the store's failure (503), not a file that is not found.

        Raises:
            ClientError: with the code NoSuchBucket if the bucket is gone.
        """
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if not _missing(exc):
                raise
            error = {"Code": "NoSuchBucket", "Message": f"The bucket {self.bucket!r} does not exist"}
            raise ClientError({"Error": error}, "HeadBucket") from None

    @_unavailable("read the file")
    async def exists(self, key: str) -> bool:
        return await self._head(key) is not None

    @_unavailable("delete the file")
    async def delete(self, key: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    @_unavailable("read the file")
    async def delivery(self, key: str) -> Delivery:
        if self.delivery_mode == "redirect":
            # Signing is local: no round trip. The database row already vouches that the object
            # exists (a missing one answers 404 from the store itself).
            url = await self.presign_client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=self.presign_expires,
            )
            return RedirectURL(url)
        head = await self._head(key)
        if head is None:
            raise FileNotFoundError(key)
        return ObjectStream(size=int(head["ContentLength"]), read=partial(self.read_range, key))

    async def check(self) -> None:
        await self.client.head_bucket(Bucket=self.bucket)

    def sweep_temporary(self) -> int:
        """Staged uploads of dead processes (unfinished multipart uploads: a lifecycle rule)."""
        return sweep_dead_uploads(self.staging_dir)

    async def keys(self) -> dict[str, float]:
        """Every stored key under the prefix and its object's LastModified (for consistency checks)."""
        out: dict[str, float] = {}
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key_prefix()):
            out.update((obj["Key"][strip:], obj["LastModified"].timestamp()) for obj in page.get("Contents", []))
        return out

    def _key_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""


async def open_s3_storage(options: S3Options, staging_dir: Path) -> tuple[S3Storage, Callable[[], Awaitable[None]]]:
    """Build the storage and its clients; returns it with the coroutine that closes them."""
    bucket, prefix = parse_s3_url(options.url)
    session = aioboto3.Session()
    stack = AsyncExitStack()

    def config(endpoint: str | None) -> AioConfig:
        # Path-style addressing for custom endpoints (MinIO and friends need no wildcard DNS).
        s3 = {"addressing_style": "path"} if endpoint else {}
        return AioConfig(
            signature_version="s3v4",
            s3=s3,
            retries={"max_attempts": 5, "mode": "standard"},
            # botocore's default extra CRC checksums are not understood by every S3-compatible store
            # (older MinIO and Ceph, some gateways); integrity is checked by our own sha256 anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )

    try:
        client = await stack.enter_async_context(
            session.client("s3", endpoint_url=options.endpoint_url, config=config(options.endpoint_url))
        )
        presign = client
        public = options.public_endpoint_url
        if public and public != options.endpoint_url:
            presign = await stack.enter_async_context(session.client("s3", endpoint_url=public, config=config(public)))
    except BaseException:
        await stack.aclose()
        raise
    storage = S3Storage(
        client,
        bucket,
        prefix,
        staging_dir,
        delivery=options.delivery,
        presign_expires=options.presign_expires,
        presign_client=presign,
        part_size=options.part_size,
    )
    return storage, stack.aclose
