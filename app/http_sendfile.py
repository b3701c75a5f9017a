"""Zero-copy file responses under uvicorn: the ASGI ``http.response.pathsend`` extension.

uvicorn sends every body through ``transport.write``, so a 50 MB download is read into memory a
chunk at a time in a worker thread, copied into the socket, and read again. Starlette's
``FileResponse`` sends ``{"type": "http.response.pathsend", "path": ...}`` instead when the
server lists that extension in the scope; this module lists it and answers it with
``os.sendfile``, the kernel copying the file's pages to the socket, as nginx does.

How, and what it guards against:

- The bytes go out in a worker thread (a file that is not in the page cache blocks on the disk,
  never the event loop), on a duplicate of the socket's descriptor that the thread owns and closes:
  if the connection closes meanwhile, the number cannot be reused under the thread by another
  connection. The event loop stops the thread by shutting the socket down (``sendfile`` then fails
  with EPIPE): when the task awaiting it is cancelled, and when the protocol must give up on the
  connection mid-response (app/http_limits.py).
- The socket is non-blocking (it is the event loop's); when it is full the thread waits for it
  with ``poll``, up to ``STALL_SECONDS`` without progress, then the connection is closed (a client
  that stopped reading).
- Only when nothing else is queued on the transport (the response head is normally written at
  once; otherwise the body would overtake it), the response has a Content-Length, the connection
  is not TLS (sendfile would write plaintext into it), and a thread slot is free at once
  (``MAX_THREADS`` per process, taken without waiting): else the file is sent as uvicorn would, in
  1 MiB chunks, which stop when the client is gone.
- A filesystem that cannot sendfile (EINVAL, ENOSYS): the rest goes out in chunks.
- A client that goes away is a closed connection, as with uvicorn's own writes. A file shorter
  than its Content-Length (changed on disk under the download) is a closed connection too, logged
  as a warning: the fault is the server's.

It relies on attributes of uvicorn's ``RequestResponseCycle`` (``_CYCLE``, the same in uvicorn
0.30 to 0.55 at least); a cycle without them is left alone, and its scope does not list the
extension, so Starlette sends the file in chunks as before.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
from pathlib import Path
from typing import Any

import anyio

log = logging.getLogger("packhouse.files")

EXTENSION = "http.response.pathsend"
MAX_THREADS = 16  # downloads sent at once per process; more go out in chunks
STALL_SECONDS = 60.0
_CHUNK = 8 * 1024 * 1024  # per sendfile call
_FALLBACK_CHUNK = 1024 * 1024

_slots: threading.BoundedSemaphore | None = None


def _thread_slots() -> threading.BoundedSemaphore:
    global _slots
    if _slots is None:  # on first use, so that MAX_THREADS can be set before
        _slots = threading.BoundedSemaphore(MAX_THREADS)
    return _slots


class ClientGone(Exception):
    pass


class FileShrank(Exception):
    """The file ended before its Content-Length: it changed on disk under the download."""

    def __init__(self, sent: int) -> None:
        super().__init__(f"the file ended after {sent} bytes")
        self.sent = sent


# A connection that broke under the download (reset, timed out by TCP, unreachable).
_GONE = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
         errno.ENETUNREACH, errno.ENETDOWN}  # fmt: skip


def shut_down(fd: int) -> None:
    """Shut the connection on socket descriptor ``fd`` down both ways (every descriptor of it: a
    sendfile on another one then fails with EPIPE), without closing ``fd``. The caller must know
    ``fd`` is still that socket's. (uvloop's transport sockets have no ``shutdown``.)"""
    sock = socket.socket(fileno=fd)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down, or reset
    finally:
        sock.detach()


class Lease:
    """What one sendfile thread holds: a thread slot and its own duplicate of the socket's
    descriptor. The thread gives both back when it ends (``_pump``'s finally); the event loop
    closes nothing, unless the thread never started (the awaiting task was cancelled first). The
    loop can stop a running thread with ``abandon``: it shuts the socket down through the
    duplicate, under the lock that keeps the thread from closing it meanwhile."""

    def __init__(self, fd: int, slots: threading.BoundedSemaphore) -> None:
        self.fd = fd
        self._slots = slots
        self._lock = threading.Lock()
        self._state = "new"  # then "running" (the thread took it) and "ended"; or "ended" at once

    @classmethod
    def take(cls, sock_fd: int) -> Lease | None:
        """A free thread slot and a duplicate of ``sock_fd``; None when every slot is in use
        (never waits: the response head is already out, the body cannot wait for a thread)."""
        slots = _thread_slots()
        if not slots.acquire(blocking=False):
            return None
        try:
            return cls(os.dup(sock_fd), slots)
        except BaseException:
            slots.release()
            raise

    @property
    def closed(self) -> bool:
        return self._state == "ended"

    def claim(self) -> bool:
        """In the thread, before using the descriptor: False if the loop gave it up already."""
        with self._lock:
            if self._state != "new":
                return False
            self._state = "running"
            return True

    def end(self) -> None:
        """Close the descriptor and free the slot, once."""
        with self._lock:
            if not self._close():
                return
        self._slots.release()

    def abandon(self) -> None:
        """On the event loop, when the task awaiting the thread is cancelled: a running thread is
        stopped (its sendfile fails with EPIPE; it then ends the lease itself), one that has not
        started never will (the lease ends here)."""
        with self._lock:
            if self._state == "running":
                shut_down(self.fd)
                return
            if not self._close():
                return
        self._slots.release()

    def _close(self) -> bool:  # under the lock
        if self._state == "ended":
            return False
        self._state = "ended"
        os.close(self.fd)
        return True


def _pump(lease: Lease, path: str, size: int) -> int:
    """Send the first ``size`` bytes of ``path`` to the socket ``lease.fd`` (non-blocking); how
    many were sent. Fewer than ``size`` only where the file's filesystem cannot sendfile (the
    caller sends the rest in chunks). Ends the lease, whatever happens.

    Raises:
        ClientGone: the connection broke or was shut down, or the client read nothing for STALL_SECONDS.
        FileShrank: the file is shorter than ``size``.
    """
    if not lease.claim():
        return 0  # the task that wanted it was cancelled before the thread started
    try:
        with open(path, "rb") as fh:
            fd, src, offset = lease.fd, fh.fileno(), 0
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
                if sent == 0:
                    raise FileShrank(offset)
                offset += sent
        return offset
    finally:
        lease.end()


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
            await _in_chunks(cycle, send, path, os.stat(path).st_size)
            return
        size = cycle.expected_content_length
        if cycle.scope["method"] == "HEAD" or size == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        transport = cycle.transport
        if cycle.flow.write_paused or transport.get_write_buffer_size():
            await _in_chunks(cycle, send, path, size)  # the head is still queued: the body must follow it
            return
        sock = transport.get_extra_info("socket")
        tls = transport.get_extra_info("sslcontext") is not None or transport.get_extra_info("ssl_object") is not None
        lease = Lease.take(sock.fileno()) if sock is not None and not tls else None
        if lease is None:
            await _in_chunks(cycle, send, path, size)
            return
        try:  # the thread's own limiter: Lease.take already bounds the threads
            sent = await anyio.to_thread.run_sync(_pump, lease, path, size, limiter=anyio.CapacityLimiter(1))
        except ClientGone as exc:
            log.info("download of %s stopped: %s", path, exc)
            _hang_up(cycle)
            return
        except FileShrank as exc:
            _shrank(cycle, path, exc.sent, size)
            return
        except BaseException:  # cancelled (uvicorn's shutdown timeout, the loop torn down); or the thread failed
            lease.abandon()
            raise
        cycle.expected_content_length -= sent  # uvicorn's count, as if the bytes were a body
        if sent < size:
            await _in_chunks(cycle, send, path, size, sent)
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    cycle.send = send_with_pathsend


def _hang_up(cycle: Any) -> None:
    cycle.disconnected = True
    cycle.transport.close()


def _shrank(cycle: Any, path: str, sent: int, size: int) -> None:
    log.warning(
        "download of %s cut short after %d of %d bytes: the file is shorter than its Content-Length "
        "(changed on disk while it was being sent); the connection is closed",
        path,
        sent,
        size,
    )
    _hang_up(cycle)


async def _in_chunks(cycle: Any, send: Any, path: str, size: int, start: int = 0) -> None:
    """Bytes ``start`` to ``size`` of the file as uvicorn would send them: read in a thread, a
    chunk at a time, the last message ending the response. Stops when the client is gone."""
    async with await anyio.open_file(Path(path), "rb") as fh:
        await fh.seek(start)
        left = size - start
        while True:
            if cycle.disconnected or cycle.transport.is_closing():
                log.info(
                    "download of %s stopped after %d of %d bytes: the connection is closed", path, size - left, size
                )
                cycle.disconnected = True
                return
            chunk = await fh.read(min(left, _FALLBACK_CHUNK)) if left > 0 else b""
            if left > 0 and not chunk:
                _shrank(cycle, path, size - left, size)
                return
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
            if left <= 0:
                return
