"""Bytes pipelined behind a download that sendfile is sending (app/http_sendfile.py) never end up
inside its body (app/http_limits.py): a partial head waits for the download to finish before its
--header-timeout starts; bytes the server must refuse (a 400, a 431) while the body is going out
close the connection, so the client sees a body cut short, never a body of the right length
with other bytes in it."""

from __future__ import annotations

import os
import re
import socket
import time

import httpx
import pytest

from tests.support.builders import make_wheel
from tests.support.forms import upload_form

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


def _serve_big(live_server, tmp_path, *args: str, env: dict[str, str] | None = None):
    """A server holding a 16 MB wheel: more than loopback buffers when the client reads slowly."""
    server = live_server(*args, env=env)
    path = make_wheel(tmp_path, "big", "1.0", extra_files={"big/blob.bin": os.urandom(16 * MB)})
    data, files = upload_form(path)
    r = httpx.post(server.url + "/legacy/", data=data, files=files, timeout=60)
    assert r.status_code == 200, r.text
    return server, path


def _slow_download(server, path) -> tuple[socket.socket, bytes]:
    """A download whose client has a small receive buffer and has read only its first bytes (also
    returned): the server's sendfile thread waits for it to read on."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET /files/big/{path.name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.settimeout(30)
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    time.sleep(0.3)  # the socket buffers fill
    return sock, first


def _read_to_close(sock: socket.socket, first: bytes = b"") -> bytes:
    chunks = [first]
    while chunk := sock.recv(4 * MB):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_partial_pipelined_head_waits_for_the_download_before_it_times_out(live_server, tmp_path):
    server, path = _serve_big(live_server, tmp_path, "--header-timeout", "1")
    data = path.read_bytes()
    sock, first = _slow_download(server, path)
    try:
        sock.sendall(b"GET /simple/big/ HTTP/1.1\r\nHo")  # the next request, in part
        time.sleep(2)  # twice --header-timeout, the download held all along
        raw = _read_to_close(sock, first)
    finally:
        sock.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert int(re.search(rb"content-length: (\d+)", head, re.I).group(1)) == len(data)
    assert rest[: len(data)] == data  # the whole file, nothing inside it
    after = rest[len(data) :]
    assert after.startswith(b"HTTP/1.1 408"), after[:200]  # then, timed from the end of the body
    assert b"--header-timeout" in after


@pytest.mark.parametrize(
    ("pipelined", "logged"),
    [
        ([b"\x00garbage\r\n\r\n"], "400 Bad Request"),  # bytes the parser rejects
        ([b"GET /simple/big/ HTTP/1.1\r\nX-Pad: ", b"a" * 20000], "431 Request Header Fields Too Large"),
    ],
    ids=["unparsable", "head-too-large"],
)
def test_a_refusal_during_a_download_cuts_the_body_short(live_server, tmp_path, pipelined, logged):
    server, path = _serve_big(live_server, tmp_path, env={"PACKHOUSE_MAX_HEADER_SIZE": "16K"})
    data = path.read_bytes()
    sock, first = _slow_download(server, path)
    try:
        for part in pipelined:
            sock.sendall(part)
            time.sleep(0.3)
        raw = _read_to_close(sock, first)
    finally:
        sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert int(re.search(rb"content-length: (\d+)", head, re.I).group(1)) == len(data)
    assert len(body) < len(data) and body == data[: len(body)]  # cut short, nothing else in it
    log = server.log()
    assert f"{logged} (" in log and "while a response was going out" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    r = httpx.get(f"{server.url}/files/big/{path.name}", timeout=30)
    assert r.status_code == 200 and r.content == data


def test_pipelined_requests_behind_a_download_are_answered_in_order(live_server, tmp_path):
    server, path = _serve_big(live_server, tmp_path, "--header-timeout", "1")
    data = path.read_bytes()
    get = f"GET /files/big/{path.name} HTTP/1.1\r\nHost: x\r\n"
    requests = [get + "\r\n", "GET /simple/big/ HTTP/1.1\r\nHost: x\r\n\r\n", get + "Connection: close\r\n\r\n"]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall("".join(requests).encode())
        sock.settimeout(30)
        raw = _read_to_close(sock)
    answers = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        answers.append((head.split(b"\r\n")[0], raw[:length]))
        raw = raw[length:]
    assert [status for status, _ in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert answers[0][1] == data and answers[2][1] == data
    assert b"big-1.0-py3-none-any.whl" in answers[1][1]
