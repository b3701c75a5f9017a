"""Bodies of requests other than uploads: capped at SMALL_BODY_BYTES and timed like an upload's,
before the framework reads them whole (which it does before the login check runs)."""

from __future__ import annotations

import os
import socket
import time

import httpx

from app.api.guards import SMALL_BODY_BYTES
from tests.conftest import basic
from tests.e2e.test_integrity import read_response
from tests.support.builders import make_wheel
from tests.support.forms import upload_form
from tests.support.htpasswd import write_htpasswd

YANK = "/api/projects/demo/releases/1.0/yank"


def _raw(url: str, head: str, body: bytes) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head.replace("{host}", host).encode() + body)
    return sock


def test_an_anonymous_oversized_yank_is_413_before_it_is_read(live_server, tmp_path):
    passwords = tmp_path / "htpasswd"
    write_htpasswd(passwords, ("bcrypt",))
    server = live_server("--passwords", str(passwords), "--authenticate", "update")
    declared = 300 * 1024 * 1024
    sock = _raw(server.url, f"POST {YANK} HTTP/1.1\r\nHost: {{host}}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {declared}\r\n\r\n", b'{"reason": "')  # fmt: skip
    answer = read_response(sock)
    sock.close()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "application/problem+json" in answer and f"larger than {SMALL_BODY_BYTES} bytes" in answer
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_chunked_body_is_counted_as_it_arrives(live_server):
    server = live_server()
    sock = _raw(server.url, f"POST {YANK} HTTP/1.1\r\nHost: {{host}}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n", b"")  # fmt: skip
    block = b"x" * 16384
    try:
        for _ in range(SMALL_BODY_BYTES // len(block) + 2):
            sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = read_response(sock)
    sock.close()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "application/problem+json" in answer


def test_a_stalled_api_body_times_out_with_408(live_server):
    server = live_server(env={"PACKHOUSE_BODY_TIMEOUT": "1"})
    started = time.monotonic()
    sock = _raw(server.url, f"POST {YANK} HTTP/1.1\r\nHost: {{host}}\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n", b"{")  # fmt: skip
    answer = read_response(sock)
    sock.close()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "sent no data for 1 seconds" in answer
    assert time.monotonic() - started < 5


def test_small_bodies_and_uploads_are_untouched(live_server, tmp_path):
    server = live_server()
    wheel = make_wheel(tmp_path, "demo", "1.0", module_code=f"DATA = {os.urandom(60_000).hex()!r}\n")
    assert wheel.stat().st_size > SMALL_BODY_BYTES  # an upload larger than the cap
    data, files = upload_form(wheel)
    assert httpx.post(server.url + "/legacy/", data=data, files=files).status_code == 200
    r = httpx.post(server.url + YANK, json={"reason": "r" * 1000})
    assert r.status_code == 200, r.text
    assert r.json()["files"][0]["yanked_reason"] == "r" * 1000
    assert httpx.delete(server.url + "/api/projects/demo/releases/1.0").status_code == 200


def test_the_login_check_still_answers_a_small_anonymous_yank(live_server, tmp_path):
    passwords = tmp_path / "htpasswd"
    users = write_htpasswd(passwords, ("bcrypt",))
    server = live_server("--passwords", str(passwords), "--authenticate", "update")
    assert httpx.post(server.url + YANK, json={"reason": "x"}).status_code == 401
    user, password = users["bcrypt"]
    assert httpx.post(server.url + YANK, json={"reason": "x"}, headers=basic(user, password)).status_code == 404
