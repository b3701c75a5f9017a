"""Streaming ``multipart/form-data`` reader for the legacy upload API.

The file part (``content``) is never held in memory: its bytes go to a staged temporary file in
the store while they are hashed and counted, in one pass. Every other part is a small text field.
Limits are enforced as bytes arrive, so an oversized upload is refused before it is all received.

Digests: SHA-256 is always computed: it is the digest the index publishes (PEP 503/691 links),
addresses the stored bytes and verifies the upload. md5 and blake2b-256 are computed only when the
form has not named a ``sha256_digest`` before the file (old clients that send only md5_digest, or
forms that put their fields after the file): when the client's SHA-256 is verified, its md5 and
blake2b of the same bytes add nothing, and computing them would cost three times SHA-256's CPU
(twine, flit, uv, hatch and poetry all send the fields first, sha256_digest among them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from functools import lru_cache, partial
from urllib.parse import parse_qsl

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import (
    InvalidRequestError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
    UploadTooLargeError,
)
from app.storage.base import Staged, Storage

FLUSH_BYTES = 1024 * 1024
# Measured (50 MB uploads, 1 worker, 2 vCPUs): 8 MiB p50 53-56 ms, 4 MiB 50-54, 2 MiB 51-52, 1 MiB 52-55:
# whatever is queued when the last byte arrives is hashed and written while the client waits.
MAX_INFLIGHT_BYTES = 2 * 1024 * 1024
INLINE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class FormLimits:
    max_file_bytes: int
    max_parts: int = 1000
    max_field_bytes: int = 4 * 1024 * 1024  # one text field (a long README fits)
    max_fields_total: int = 8 * 1024 * 1024
    max_header_bytes: int = 8 * 1024
    # A client that sends nothing for this long is dropped (slow-body / slowloris uploads hold a
    # worker and a staged file otherwise). Generous: it is per chunk, not for the whole upload.
    chunk_timeout: float = 60.0


@dataclass(slots=True)
class FileDigests:
    size: int
    sha256: str
    md5: str | None = None  # None: not computed (see the module docstring)
    blake2_256: str | None = None


@dataclass(slots=True)
class UploadForm:
    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str | None = None
    staged: Staged | None = None
    digests: FileDigests | None = None

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


class _HashingSink:
    """Writes to the staged file and hashes, in ~1 MiB batches, on a writer thread of its own.

    Batches are queued to that one thread (so they stay in order) while the next ones are received:
    receiving, hashing and writing run at the same time. Up to MAX_INFLIGHT_BYTES may wait in the
    queue; beyond that the reader waits for the writer, and TCP flow control slows the client.
    A small file is written on the event loop once received (no thread at all)."""

    def __init__(self, staged: Staged, limit: int, *, all_digests: bool) -> None:
        self.staged = staged
        self.limit = limit
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.others = (hashlib.md5(usedforsecurity=False), hashlib.blake2b(digest_size=32)) if all_digests else ()
        self.pending: list[bytes | memoryview] = []
        self.pending_bytes = 0
        self._writer: ThreadPoolExecutor | None = None
        self._inflight: deque[tuple[asyncio.Future[None], int]] = deque()
        self._inflight_bytes = 0

    def add(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise UploadTooLargeError(
                f"The file is larger than this server's limit of {self.limit} bytes "
                "(--max-upload-size). Ask the administrator to raise it, or upload a smaller file."
            )
        self.pending.append(data)
        self.pending_bytes += len(data)

    def _write(self, chunks: list[bytes | memoryview]) -> None:
        # One buffer per batch: each hash call and write releases the GIL, and getting it back
        # means waiting for the event loop's thread; a few large calls wait far less than many.
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.sha256.update(data)
        for other in self.others:
            other.update(data)
        self.staged.write(data)

    async def flush(self, *, last: bool = False) -> None:
        """Queue the pending bytes for the writer once ~1 MiB is pending. ``last``: write the rest
        and wait until every byte is written (the caller makes the file durable)."""
        if last and self._writer is None and self.pending_bytes <= INLINE_BYTES:
            # A small file, all received: hashing and writing it takes microseconds, less than
            # the hop to a thread and back.
            chunks, self.pending, self.pending_bytes = self.pending, [], 0
            self._write(chunks)
            return
        if self.pending and (last or self.pending_bytes >= FLUSH_BYTES):
            chunks, size = self.pending, self.pending_bytes
            self.pending, self.pending_bytes = [], 0
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="packhouse-upload")
            self._inflight.append((asyncio.wrap_future(self._writer.submit(self._write, chunks)), size))
            self._inflight_bytes += size
        while self._inflight and (last or self._inflight_bytes > MAX_INFLIGHT_BYTES):
            future, size = self._inflight[0]
            await future  # raises what writing raised
            self._inflight.popleft()
            self._inflight_bytes -= size
        if last and self._writer is not None:
            self._writer.shutdown(wait=False)  # idle now: every batch is written

    async def close(self) -> None:
        """On an error: drop the queued batches and wait for the one being written, so the staged
        file can be discarded safely."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await anyio.to_thread.run_sync(partial(writer.shutdown, wait=True, cancel_futures=True))
            for future, _size in self._inflight:
                future.cancel()
            self._inflight.clear()

    def digests(self) -> FileDigests:
        md5, blake2 = (h.hexdigest() for h in self.others) if self.others else (None, None)
        return FileDigests(self.size, self.sha256.hexdigest(), md5, blake2)


#: The longest boundary python-multipart takes (it raises a plain FormParserError beyond it).
MAX_BOUNDARY = 256


def _boundary(content_type: str | None) -> bytes:
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data":
        got = ctype.decode("latin-1") or "no content type"
        raise UnsupportedMediaTypeError(
            f"Uploads must be sent as multipart/form-data, not {got!r} (use twine, flit, uv publish, hatch or poetry)."
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequestError("The multipart/form-data Content-Type has no boundary parameter.")
    if len(boundary) > MAX_BOUNDARY:
        raise InvalidRequestError(
            f"The multipart/form-data boundary is {len(boundary)} characters long; RFC 2046 allows at "
            f"most 70 (this server accepts up to {MAX_BOUNDARY})."
        )
    return boundary


@lru_cache(maxsize=512)
def _disposition(value: str) -> tuple[str | None, str | None]:
    """(name, filename) from a Content-Disposition header, without any path 'fix-ups'. Cached: the
    email parser takes ~10 µs a header, and every upload sends the same dozen field headers."""
    msg = Message()
    msg["content-disposition"] = value
    name = msg.get_param("name", header="content-disposition")
    filename = msg.get_param("filename", header="content-disposition")
    as_text = [v if isinstance(v, str) or v is None else None for v in (name, filename)]
    return as_text[0], as_text[1]


def _no_filename(disposition: str) -> InvalidRequestError:
    """The error for a 'content' part without a plain ``filename`` parameter."""
    star = "filename*=" in disposition.lower()
    return InvalidRequestError(
        "The form's 'content' part has no filename"
        + (" (only filename*=, which multipart/form-data does not use: RFC 7578 section 4.2)" if star else "")
        + ": send the distribution as a file part, with "
        + 'Content-Disposition: form-data; name="content"; filename="<the file\'s name>".'
    )


class _FormReader:
    def __init__(self, storage: Storage, limits: FormLimits) -> None:
        self.storage = storage
        self.limits = limits
        self.form = UploadForm()
        self.sink: _HashingSink | None = None
        self.parts = 0
        self.fields_bytes = 0
        self.done = False
        self._reset_part()

    def _reset_part(self) -> None:
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, str] = {}
        self.part_name: str | None = None
        self.part_kind = "field"  # field | file | ignore
        self.buffer = bytearray()

    # python-multipart callbacks (synchronous) -------------------------------------------------
    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise InvalidRequestError(f"Too many form fields (more than {self.limits.max_parts}).")
        self._reset_part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]
        if len(self.header_value) > self.limits.max_header_bytes:
            raise InvalidRequestError("A multipart part header is too long.")

    def on_header_end(self) -> None:
        name = bytes(self.header_name).decode("latin-1").strip().lower()
        self.headers[name] = bytes(self.header_value).decode("latin-1").strip()
        self.header_name, self.header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        disposition = self.headers.get("content-disposition")
        if not disposition:
            raise InvalidRequestError("A multipart part has no Content-Disposition header.")
        name, filename = _disposition(disposition)
        if not name:
            raise InvalidRequestError("A multipart part has no field name.")
        self.part_name = name
        if filename is None and name == "content":
            raise _no_filename(disposition)
        if filename is None:
            self.part_kind = "field"
        elif name == "content":
            if self.sink is not None:
                raise InvalidRequestError("The form has more than one 'content' file; upload one file per request.")
            # The filename arrives as raw header bytes; clients send UTF-8.
            self.form.filename = filename.encode("latin-1", "replace").decode("utf-8", "replace")
            self.form.staged = self.storage.stage(self.form.filename)
            self.sink = _HashingSink(
                self.form.staged, self.limits.max_file_bytes, all_digests=not self.form.get("sha256_digest")
            )
            self.part_kind = "file"
        else:
            self.part_kind = "ignore"  # e.g. gpg_signature: accepted and not kept

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part_kind == "file":
            assert self.sink is not None
            # A view, not a slice: the file's bytes are not copied on their way to hashing and disk.
            # Only of immutable bytes (what ASGI servers and the parser hand over): the writer
            # thread reads the view later.
            self.sink.add(memoryview(data)[start:end] if type(data) is bytes else bytes(data[start:end]))
        elif self.part_kind == "field":
            self.buffer += data[start:end]
            self.fields_bytes += end - start
            if len(self.buffer) > self.limits.max_field_bytes:
                raise UploadTooLargeError(
                    f"The form field {self.part_name!r} is larger than {self.limits.max_field_bytes} bytes."
                )
            if self.fields_bytes > self.limits.max_fields_total:
                raise UploadTooLargeError("The form's text fields are too large in total.")

    def on_part_end(self) -> None:
        if self.part_kind == "field" and self.part_name is not None:
            try:
                value = self.buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequestError(f"The form field {self.part_name!r} is not valid UTF-8.") from None
            self.form.fields.setdefault(self.part_name, []).append(_text(self.part_name, value))
        self._reset_part()

    def on_end(self) -> None:
        self.done = True

    # -------------------------------------------------------------------------------------------
    def callbacks(self) -> dict[str, object]:
        return {
            name: getattr(self, name)
            for name in (
                "on_part_begin",
                "on_header_field",
                "on_header_value",
                "on_header_end",
                "on_headers_finished",
                "on_part_data",
                "on_part_end",
                "on_end",
            )
        }


class _StallTimer:
    """Raises RequestTimeoutError when the client stalls: when no chunk of the body arrived for
    ``seconds``. One asyncio timeout for the whole body, moved forward as chunks arrive (at most
    once per ``slack``, so it fires between ``seconds`` and ``seconds + slack`` after the last
    chunk), not a cancel scope per chunk: that cost ~9 µs a chunk, and a 50 MB upload arrives in
    hundreds of chunks, on the thread that receives them.

    Use: ``async with _StallTimer(seconds) as stall:``, then ``stall.progress()`` after each chunk."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.slack = min(seconds / 8, 1.0)
        self._timeout = asyncio.timeout(seconds)
        self._loop = asyncio.get_running_loop()

    async def __aenter__(self) -> _StallTimer:
        await self._timeout.__aenter__()
        return self

    def progress(self) -> None:
        now = self._loop.time()
        if now + self.seconds > (self._timeout.when() or 0.0):
            self._timeout.reschedule(now + self.seconds + self.slack)

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._timeout.__aexit__(*exc)  # type: ignore[arg-type]
        except TimeoutError:
            raise RequestTimeoutError(
                f"The client sent no data for {self.seconds:g} seconds; the upload was abandoned. "
                "Check the network and upload again."
            ) from None


def _is_urlencoded(content_type: str | None) -> bool:
    return parse_options_header(content_type or "")[0] == b"application/x-www-form-urlencoded"


async def _read_urlencoded(chunks: AsyncIterator[bytes], limits: FormLimits) -> UploadForm:
    """A form without a file (pypiserver scripts send ``remove_pkg`` as ``curl -d``)."""
    body = bytearray()
    async with _StallTimer(limits.chunk_timeout) as stall:
        async for chunk in chunks:
            stall.progress()
            body += chunk
            if len(body) > limits.max_fields_total:
                raise UploadTooLargeError("The form's fields are too large in total.")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=limits.max_parts, errors="strict")  # fmt: skip
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequestError(f"The application/x-www-form-urlencoded body is malformed: {exc}") from None
    form = UploadForm()
    for name, value in pairs:
        form.fields.setdefault(_text("name", name), []).append(_text(name, value))
    return form


def _text(name: str, value: str) -> str:
    """A form field's text. No name, version, digest or description contains a NUL character, and
    PostgreSQL refuses one in text (a 500 otherwise)."""
    if "\x00" in value:
        raise InvalidRequestError(f"The form field {name!r} contains a NUL character; remove it.")
    return value


async def read_upload_form(
    content_type: str | None, chunks: AsyncIterator[bytes], storage: Storage, limits: FormLimits
) -> UploadForm:
    """Read the whole form, staging the file. On any error the staged file is discarded.

    Raises:
        UnsupportedMediaTypeError: not multipart/form-data.
        InvalidRequestError: malformed or truncated body, too many parts.
        RequestTimeoutError: the client stalled for longer than ``limits.chunk_timeout``.
        UploadTooLargeError: the file or the fields exceed the limits.
    """
    if _is_urlencoded(content_type):
        return await _read_urlencoded(chunks, limits)
    boundary = _boundary(content_type)
    reader = _FormReader(storage, limits)
    try:
        parser = MultipartParser(boundary, reader.callbacks(), max_header_size=limits.max_header_bytes)  # type: ignore[arg-type]
        async with _StallTimer(limits.chunk_timeout) as stall:
            async for chunk in chunks:
                stall.progress()
                if not chunk:
                    continue
                try:
                    parser.write(chunk)
                except MultipartParseError as exc:
                    raise InvalidRequestError(f"The multipart/form-data body is malformed: {exc}") from None
                if reader.sink is not None:
                    await reader.sink.flush()
                if reader.done:
                    break
        if not reader.done:
            raise InvalidRequestError(
                "The multipart/form-data body is truncated (the final boundary never arrived); "
                "the upload was interrupted, try again."
            )
        if reader.sink is not None:
            await reader.sink.flush(last=True)
            reader.form.digests = reader.sink.digests()
        return reader.form
    except BaseException:
        if reader.form.staged is not None:
            with anyio.CancelScope(shield=True):
                if reader.sink is not None:
                    with contextlib.suppress(Exception):
                        await reader.sink.close()  # never discard under a write in flight
                await storage.discard(reader.form.staged)
            reader.form.staged = None
        raise
