"""Zero-copy file responses under uvicorn: the ASGI ``http.response.pathsend`` extension.

uvicorn sends every body through ``transport.write``, so a 50 MB download is read into memory a
chunk at a time in a worker thread, copied into the socket, and read again. Starlette's
``FileResponse`` sends ``{"type": "http.response.pathsend", "path": ...}`` instead when the
server lists that extension in the scope; this module lists it and answers it with
``os.sendfile``, the kernel copying the file's pages to the socket, as nginx does.

How, and what it guards against:

- The bytes go out in a worker thread (a file that is not in the page cache blocks on the disk,
  never the event loop), on a duplicate of the socket's descriptor: if the connection closes
  meanwhile, the number cannot be reused under the thread by another connection.
- The socket is non-blocking (it is the event loop's); when it is full the thread waits for it
  with ``poll``, up to ``STALL_SECONDS`` without progress, then the connection is closed (a client
  that stopped reading).
- Only when nothing else is queued on the transport (the response head is normally written at
  once; otherwise the body would overtake it), the response has a Content-Length, and a thread is
  free (``MAX_THREADS`` per process): else the file is sent as uvicorn would, in 1 MiB chunks.
- A filesystem that cannot sendfile (EINVAL, ENOSYS): the rest goes out in chunks.
- A client that goes away is a closed connection, as with uvicorn's own writes.

It relies on attributes of uvicorn's ``RequestResponseCycle`` (``_CYCLE``, the same in uvicorn
0.30 to 0.55 at least); a cycle without them is left alone, and its scope does not list the
extension, so Starlette sends the file in chunks as before.
"""

from __future__ import annotations

import errno
import logging
import os
import select
from pathlib import Path
from typing import Any

import anyio

log = logging.getLogger("packhouse.files")

EXTENSION = "http.response.pathsend"
MAX_THREADS = 16  # downloads sent at once per process; more go out in chunks
STALL_SECONDS = 60.0
_CHUNK = 8 * 1024 * 1024  # per sendfile call
_FALLBACK_CHUNK = 1024 * 1024

_limiter: anyio.CapacityLimiter | None = None


def _threads() -> anyio.CapacityLimiter:
    global _limiter
    if _limiter is None:  # made in the event loop that uses it
        _limiter = anyio.CapacityLimiter(MAX_THREADS)
    return _limiter


class ClientGone(Exception):
    pass


# A connection that broke under the download (reset, timed out by TCP, unreachable).
_GONE = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
         errno.ENETUNREACH, errno.ENETDOWN}  # fmt: skip


def _pump(fd: int, path: str, size: int) -> int:
    """Send the first ``size`` bytes of ``path`` to the socket ``fd`` (non-blocking); how many
    were sent. Fewer than ``size`` only where the file's filesystem cannot sendfile (the caller
    sends the rest in chunks).

    Raises:
        ClientGone: the connection broke, or the client read nothing for STALL_SECONDS.
    """
    with open(path, "rb") as fh:
        src, offset = fh.fileno(), 0
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while offset < size:
            try:
                sent = os.sendfile(fd, src, offset, min(size - offset, _CHUNK))
            except BlockingIOError:
                if not poller.poll(STALL_SECONDS * 1000):
                    raise ClientGone(f"the client read nothing for {STALL_SECONDS:g} s") from None
                continue
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    return offset  # a filesystem without sendfile support
                if exc.errno in _GONE:
                    raise ClientGone(str(exc)) from None
                raise
            if sent == 0:  # the file is shorter than its Content-Length said
                raise ClientGone(f"{path} is shorter than its Content-Length")
            offset += sent
    return offset


_CYCLE = ("send", "scope", "transport", "flow", "disconnected", "response_started", "response_complete",
          "expected_content_length", "chunked_encoding")  # fmt: skip


def wrap_send(cycle: Any) -> None:
    """Make ``cycle.send`` (uvicorn's RequestResponseCycle) answer ``http.response.pathsend``,
    and list the extension in its scope."""
    if not all(hasattr(cycle, name) for name in _CYCLE):
        return
    cycle.scope.setdefault("extensions", {})[EXTENSION] = {}
    send = cycle.send

    async def send_with_pathsend(message: Any) -> None:
        if message["type"] != EXTENSION:
            await send(message)
            return
        if cycle.disconnected:
            return
        if not cycle.response_started or cycle.response_complete:
            raise RuntimeError(f"Unexpected ASGI message {EXTENSION!r} outside a response body.")
        path = message["path"]
        if cycle.chunked_encoding:  # no Content-Length (Starlette always sends one)
            await _in_chunks(send, path, os.stat(path).st_size)
            return
        size = cycle.expected_content_length
        if cycle.scope["method"] == "HEAD" or size == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if cycle.flow.write_paused or cycle.transport.get_write_buffer_size():
            await _in_chunks(send, path, size)  # the head is still queued: the body must follow it
            return
        sock = cycle.transport.get_extra_info("socket")
        limiter = _threads()
        if sock is None or limiter.available_tokens < 1:
            await _in_chunks(send, path, size)
            return
        fd = os.dup(sock.fileno())
        try:
            sent = await anyio.to_thread.run_sync(_pump, fd, path, size, limiter=limiter)
        except ClientGone as exc:
            log.info("download of %s stopped: %s", path, exc)
            cycle.disconnected = True
            cycle.transport.close()
            return
        finally:
            os.close(fd)
        cycle.expected_content_length -= sent  # uvicorn's count, as if the bytes were a body
        if sent < size:
            await _in_chunks(send, path, size, sent)
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    cycle.send = send_with_pathsend


async def _in_chunks(send: Any, path: str, size: int, start: int = 0) -> None:
    """Bytes ``start`` to ``size`` of the file as uvicorn would send them: read in a thread, a
    chunk at a time, the last message ending the response."""
    async with await anyio.open_file(Path(path), "rb") as fh:
        await fh.seek(start)
        left = size - start
        while True:
            chunk = await fh.read(min(left, _FALLBACK_CHUNK)) if left > 0 else b""
            if left > 0 and not chunk:
                raise RuntimeError(f"{path} is shorter than its Content-Length")
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
            if left <= 0:
                return
