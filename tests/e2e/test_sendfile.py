"""Downloads through a real uvicorn, where files go out with sendfile (app/http_sendfile.py): whole,
on kept-alive connections, counted, and still whole when more clients download at once than there
are sendfile threads, or when a client stops reading or goes away."""

from __future__ import annotations

import hashlib
import os
import re
import socket

import httpx
import pytest

from app import http_sendfile
from tests.support.builders import make_wheel
from tests.support.forms import upload_form

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


@pytest.fixture
def big(live_server, tmp_path):
    """A server holding a 32 MB wheel (random bytes: larger than loopback's socket buffers, so a
    client that does not read holds its download mid-way)."""
    server = live_server()
    path = make_wheel(tmp_path, "big", "1.0", extra_files={"big/blob.bin": os.urandom(32 * MB)})
    data, files = upload_form(path)
    r = httpx.post(server.url + "/legacy/", data=data, files=files, timeout=60)
    assert r.status_code == 200, r.text
    return server, path


def served_bytes(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return float(re.search(r"^packhouse_bytes_served_total (\S+)$", text, re.M).group(1))


def test_a_large_file_is_sent_whole_on_a_kept_alive_connection(big):
    server, path = big
    data = path.read_bytes()
    url = f"{server.url}/files/big/{path.name}"
    before = served_bytes(server.url)
    with httpx.Client(timeout=60) as http:
        for _ in range(2):
            r = http.get(url)
            assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
            assert hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
        # the same connection goes on serving after two sendfile bodies
        assert http.get(server.url + "/simple/big/").status_code == 200
        head = http.head(url)
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))
        part = http.get(url, headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == data[1000:2000]
        assert http.get(url, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
        again = http.get(url)
        assert again.content == data
    assert served_bytes(server.url) - before == 3 * len(data) + 1000  # /metrics counts the sendfile bodies


def _request(server, path) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"GET /files/big/{path.name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    sock.settimeout(60)
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    chunks = [body]
    got = len(body)
    while got < length:
        chunk = sock.recv(4 * MB)
        assert chunk, f"connection closed after {got} of {length} bytes"
        chunks.append(chunk)
        got += len(chunk)
    return head, b"".join(chunks)


def test_more_downloads_than_sendfile_threads_all_arrive_whole(big):
    """Every sendfile thread is held by a client that does not read; the next downloads go out in
    chunks meanwhile, at once (neither waiting for a thread nor blocking the event loop), and the
    held ones complete once their clients read."""
    server, path = big
    data = path.read_bytes()
    digest = hashlib.sha256(data).digest()
    held = [_request(server, path) for _ in range(http_sendfile.MAX_THREADS + 2)]
    try:
        for sock in held:  # each has its answer under way
            sock.settimeout(30)
            assert sock.recv(12).startswith(b"HTTP/1.1 200")
        r = httpx.get(f"{server.url}/files/big/{path.name}", timeout=30)
        assert r.status_code == 200 and hashlib.sha256(r.content).digest() == digest
        assert httpx.get(server.url + "/simple/big/", timeout=10).status_code == 200
        for sock in held:
            head, body = _read_response(sock)
            assert hashlib.sha256(body).digest() == digest
    finally:
        for sock in held:
            sock.close()


def test_a_client_that_goes_away_mid_download_leaves_the_server_serving(big):
    server, path = big
    for _ in range(http_sendfile.MAX_THREADS + 4):  # more than the threads: none is kept
        sock = _request(server, path)
        sock.settimeout(30)
        assert sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        sock.close()
    r = httpx.get(f"{server.url}/files/big/{path.name}", timeout=30)
    assert r.status_code == 200 and r.content == path.read_bytes()
    log = server.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
