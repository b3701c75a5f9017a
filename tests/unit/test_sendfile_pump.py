"""app/http_sendfile on real sockets and files: ``_pump`` (the whole file, a reader that stops, a
reader that is gone, a file that shrank; the thread's descriptor and slot given back whatever
happens), and, through a real uvicorn running Packhouse's protocol in this process, the chunk
fallback when no thread slot is free and what a cancelled download does with its thread."""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

from app import http_limits, http_sendfile

MB = 1024 * 1024


@pytest.fixture(autouse=True)
def fresh_slots(monkeypatch):
    monkeypatch.setattr(http_sendfile, "_slots", None)  # made again from MAX_THREADS on first use


@pytest.fixture
def blob(tmp_path):
    path = tmp_path / "blob.bin"
    data = os.urandom(24 * MB)  # more than a socket pair buffers
    path.write_bytes(data)
    return path, data


def is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        return exc.errno == errno.EBADF
    return False


def all_slots_free() -> bool:
    slots = http_sendfile._thread_slots()
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    for _ in range(taken):
        slots.release()
    return taken == http_sendfile.MAX_THREADS


def check_given_back(lease: http_sendfile.Lease) -> None:
    assert lease.closed and is_closed(lease.fd)
    assert all_slots_free()


def test_the_whole_file_reaches_a_slow_reader(blob):
    path, data = blob
    ours, theirs = socket.socketpair()
    ours.setblocking(False)  # as the event loop's socket is
    received = bytearray()

    def read() -> None:
        while len(received) < len(data):
            time.sleep(0.001)  # slower than the sender: the socket fills, sendfile waits
            received.extend(theirs.recv(MB))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        lease = http_sendfile.Lease.take(ours.fileno())
        assert http_sendfile._pump(lease, str(path), len(data)) == len(data)
        check_given_back(lease)
        reader.join(30)
        assert bytes(received) == data
    finally:
        ours.close()
        theirs.close()


def test_a_reader_that_stops_reading_is_given_up(blob, monkeypatch):
    path, data = blob
    monkeypatch.setattr(http_sendfile, "STALL_SECONDS", 0.3)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        start = time.monotonic()
        lease = http_sendfile.Lease.take(ours.fileno())
        with pytest.raises(http_sendfile.ClientGone, match="read nothing"):
            http_sendfile._pump(lease, str(path), len(data))
        assert time.monotonic() - start < 5
        check_given_back(lease)
    finally:
        ours.close()
        theirs.close()


def test_a_reader_that_is_gone_ends_it(blob):
    path, data = blob
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.close()
    try:
        lease = http_sendfile.Lease.take(ours.fileno())
        with pytest.raises(http_sendfile.ClientGone):
            http_sendfile._pump(lease, str(path), len(data))
        check_given_back(lease)
    finally:
        ours.close()


def test_a_file_shorter_than_announced_ends_it(blob):
    path, data = blob
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    drain = threading.Thread(target=lambda: [None for _ in iter(lambda: theirs.recv(MB), b"")])
    drain.start()
    try:
        lease = http_sendfile.Lease.take(ours.fileno())
        with pytest.raises(http_sendfile.FileShrank) as shrank:
            http_sendfile._pump(lease, str(path), len(data) + 10)
        assert shrank.value.sent == len(data)
        check_given_back(lease)
    finally:
        ours.close()
        drain.join(30)
        theirs.close()


def test_a_failure_in_the_thread_gives_back_the_descriptor_and_the_slot(tmp_path):
    ours, theirs = socket.socketpair()
    try:
        lease = http_sendfile.Lease.take(ours.fileno())
        with pytest.raises(FileNotFoundError):
            http_sendfile._pump(lease, str(tmp_path / "gone.bin"), 100)
        check_given_back(lease)
    finally:
        ours.close()
        theirs.close()


def test_a_lease_given_up_before_its_thread_starts_is_closed_by_the_loop(blob):
    path, data = blob
    ours, theirs = socket.socketpair()
    try:
        lease = http_sendfile.Lease.take(ours.fileno())
        lease.abandon()  # the awaiting task was cancelled before the worker picked the call up
        check_given_back(lease)
        assert http_sendfile._pump(lease, str(path), len(data)) == 0  # a late start touches nothing
        assert all_slots_free()
    finally:
        ours.close()
        theirs.close()


def test_a_lease_given_up_while_its_thread_runs_stops_the_thread(blob):
    """Its socket is shut down: the thread, waiting for a reader that reads nothing, ends at once
    (not after STALL_SECONDS) and closes its descriptor itself."""
    path, data = blob
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    lease = http_sendfile.Lease.take(ours.fileno())
    outcome: list[BaseException | int] = []

    def pump() -> None:
        try:
            outcome.append(http_sendfile._pump(lease, str(path), len(data)))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=pump)
    try:
        thread.start()
        time.sleep(0.3)  # the socket pair is full; the thread waits in poll
        assert thread.is_alive()
        lease.abandon()
        thread.join(5)
        assert not thread.is_alive()
        assert isinstance(outcome[0], http_sendfile.ClientGone)
        check_given_back(lease)
    finally:
        ours.close()
        theirs.close()


def test_slots_are_taken_without_waiting(monkeypatch):
    monkeypatch.setattr(http_sendfile, "MAX_THREADS", 2)
    ours, theirs = socket.socketpair()
    try:
        first, second = (http_sendfile.Lease.take(ours.fileno()) for _ in range(2))
        start = time.monotonic()
        assert http_sendfile.Lease.take(ours.fileno()) is None
        assert time.monotonic() - start < 0.1
        first.end()
        third = http_sendfile.Lease.take(ours.fileno())
        assert third is not None
        for lease in (second, third):
            lease.end()
        assert all_slots_free()
    finally:
        ours.close()
        theirs.close()


# Through a real uvicorn with Packhouse's protocol, in this process, so that the test can hold
# its thread slots and watch its threads.


class Served:
    def __init__(self, server: uvicorn.Server, port: int, data: bytes) -> None:
        self.server, self.port, self.data = server, port, data
        self.url = f"http://127.0.0.1:{port}/blob"
        self.pumps: list[tuple[http_sendfile.Lease, BaseException | int]] = []


def serve(blob, monkeypatch, **options) -> Iterator[Served]:
    path, data = blob

    async def download(request):
        return FileResponse(path)

    config = uvicorn.Config(
        Starlette(routes=[Route("/blob", download)]),
        http=http_limits.LimitedHttpToolsProtocol,
        loop="uvloop",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
        **options,
    )
    server = uvicorn.Server(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    served = Served(server, listener.getsockname()[1], data)
    if "ssl_certfile" in options:
        served.url = served.url.replace("http:", "https:")
    pump = http_sendfile._pump

    def spy(lease: http_sendfile.Lease, path: str, size: int) -> int:
        try:
            sent = pump(lease, path, size)
        except BaseException as exc:
            served.pumps.append((lease, exc))
            raise
        served.pumps.append((lease, sent))
        return sent

    monkeypatch.setattr(http_sendfile, "_pump", spy)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        yield served
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture
def served(blob, monkeypatch) -> Iterator[Served]:
    yield from serve(blob, monkeypatch)


@pytest.fixture
def served_tls(blob, monkeypatch, tmp_path) -> Iterator[Served]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    yield from serve(blob, monkeypatch, ssl_keyfile=str(key), ssl_certfile=str(cert))


def slow_client(served: Served) -> tuple[socket.socket, bytes]:
    """A download whose client has a small receive buffer and has read only its first bytes."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", served.port))
    sock.sendall(b"GET /blob HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(10)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    return sock, first


def wait_for(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_with_every_thread_slot_taken_a_download_goes_out_in_chunks_at_once(served, monkeypatch):
    monkeypatch.setattr(http_sendfile, "MAX_THREADS", 1)
    sock, _ = slow_client(served)  # holds the one sendfile thread
    try:
        wait_for(lambda: not all_slots_free())
        start = time.monotonic()
        r = httpx.get(served.url, timeout=10)
        assert r.status_code == 200 and r.content == served.data
        assert time.monotonic() - start < 5  # did not wait for the thread
        assert served.pumps == []  # the held one has not ended: the second went out in chunks
    finally:
        sock.close()
    wait_for(all_slots_free)  # the held thread ended when its client went away
    assert httpx.get(served.url, timeout=10).content == served.data
    assert [sent for _, sent in served.pumps][-1] == len(served.data)  # a thread was free again


def test_the_chunk_fallback_stops_reading_when_the_client_is_gone(served, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="packhouse.files")
    monkeypatch.setattr(http_sendfile, "MAX_THREADS", 1)
    slots = http_sendfile._thread_slots()
    assert slots.acquire(blocking=False)  # no thread for the download: chunks
    try:
        sock, _ = slow_client(served)
        time.sleep(0.3)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        sock.close()

        def stopped() -> re.Match[str] | None:
            return re.search(r"stopped after (\d+) of (\d+) bytes", caplog.text)

        wait_for(stopped)
        sent, size = map(int, stopped().groups())
        assert size == len(served.data) and sent < size // 2
    finally:
        slots.release()


def test_a_download_cancelled_by_the_shutdown_timeout_stops_its_thread(served, monkeypatch):
    """uvicorn cancels the tasks still running after --timeout-graceful-shutdown: the task
    awaiting the sendfile thread shuts the socket down, and the thread ends at once and closes
    its own descriptor (the loop never closes it under the thread)."""
    monkeypatch.setattr(http_sendfile, "MAX_THREADS", 1)
    sock, first = slow_client(served)
    try:
        wait_for(lambda: not all_slots_free())  # the thread is sending, and waits for the client
        served.server.should_exit = True  # graceful shutdown: 1 s, then the task is cancelled
        wait_for(lambda: served.pumps != [], seconds=4)  # the client reads nothing: STALL_SECONDS is 60
        [(lease, outcome)] = served.pumps
        assert isinstance(outcome, http_sendfile.ClientGone)
        check_given_back(lease)
        body = first.partition(b"\r\n\r\n")[2]
        try:
            while chunk := sock.recv(MB):
                body += chunk
        except ConnectionResetError:
            pass
        assert len(body) < len(served.data) and body == served.data[: len(body)]
    finally:
        sock.close()


def test_a_tls_connection_is_never_given_to_sendfile(served_tls):
    """sendfile would write the file's plaintext into the TLS stream: chunks, encrypted."""
    r = httpx.get(served_tls.url, timeout=10, verify=False)
    assert r.status_code == 200 and r.content == served_tls.data
    assert served_tls.pumps == []
