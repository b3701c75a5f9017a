"""app/http_sendfile._pump on real sockets and files: the whole file, a reader that stops, a reader
that is gone."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from app import http_sendfile

MB = 1024 * 1024


@pytest.fixture
def blob(tmp_path):
    path = tmp_path / "blob.bin"
    data = os.urandom(24 * MB)  # more than a socket pair buffers
    path.write_bytes(data)
    return path, data


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
        assert http_sendfile._pump(ours.fileno(), str(path), len(data)) == len(data)
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
        with pytest.raises(http_sendfile.ClientGone, match="read nothing"):
            http_sendfile._pump(ours.fileno(), str(path), len(data))
        assert time.monotonic() - start < 5
    finally:
        ours.close()
        theirs.close()


def test_a_reader_that_is_gone_ends_it(blob):
    path, data = blob
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.close()
    try:
        with pytest.raises(http_sendfile.ClientGone):
            http_sendfile._pump(ours.fileno(), str(path), len(data))
    finally:
        ours.close()


def test_a_file_shorter_than_announced_ends_it(blob):
    path, data = blob
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    drain = threading.Thread(target=lambda: [None for _ in iter(lambda: theirs.recv(MB), b"")])
    drain.start()
    try:
        with pytest.raises(http_sendfile.ClientGone, match="shorter"):
            http_sendfile._pump(ours.fileno(), str(path), len(data) + 10)
    finally:
        ours.close()
        drain.join(30)
        theirs.close()
