"""An error's message in its status line (app/http_reason.py), on a live `packhouse serve`: the
reason phrase that twine, pip, flit and poetry print instead of the body."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from app.http_reason import MAX_REASON, phrase
from tests.support.builders import make_wheel
from tests.support.forms import post_upload

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("File already exists: a.whl", b"File already exists: a.whl"),
        ("two\nlines\r\n  and\ttabs", b"two lines and tabs"),  # no CR/LF can end the status line early
        ("caf\u00e9 \u2603 \x00\x7f", b"caf? ? ??"),  # RFC 9112: visible ASCII only
        ("", b""),
    ],
)
def test_a_message_becomes_one_safe_line(message, expected):
    assert phrase(message) == expected


def test_a_long_message_is_cut_at_a_space():
    words = phrase("word " * 1000)
    assert len(words) <= MAX_REASON and words.endswith(b"word...")
    unbroken = phrase("x" * 5000)
    assert len(unbroken) == MAX_REASON and unbroken.endswith(b"...")


def status_lines(port: int, *paths: bytes) -> list[bytes]:
    """The status lines of GETs of ``paths``, pipelined on one connection (the last closes it)."""
    get = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(get % (p, b"Connection: close\r\n" if p is paths[-1] else b"") for p in paths))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", data)  # a body does not end with CRLF


def test_error_status_lines_carry_the_message(live_server, tmp_path):
    server = live_server()
    with httpx.Client(base_url=server.url) as http:
        missing = http.get("/simple/no-such-project/")
        assert missing.status_code == 404
        assert missing.reason_phrase == missing.json()["detail"] == "No project named 'no-such-project' on this index."
        # Errors of the framework's own (no route) and of validation too.
        assert http.get("/no/such/page").reason_phrase == "Not Found"
        bad = http.put("/api/projects/x/status", json={"status": "bogus"})
        assert bad.status_code == 422 and bad.reason_phrase == bad.json()["detail"]
        assert "'archived'" in bad.reason_phrase

        wheel = make_wheel(tmp_path, "reason-demo", "1.0")
        assert post_upload(http, wheel).status_code == 200
        (tmp_path / "other").mkdir()
        other = make_wheel(tmp_path / "other", "reason-demo", "1.0", module_code="x = 2\n")
        conflict = post_upload(http, other)
        assert conflict.status_code == 409
        assert conflict.reason_phrase.startswith("File already exists: reason_demo-1.0-py3-none-any.whl")

        # A non-ASCII file name in the URL: the phrase stays ASCII, the body keeps the name.
        odd = http.get("/files/reason-demo/caf%C3%A9.whl")
        assert odd.status_code == 404 and "café.whl" in odd.json()["detail"]
        assert odd.reason_phrase == "No file 'caf?.whl' in project 'reason-demo'."

        # Success keeps the standard phrases, and so does a HEAD of a missing file.
        ok = http.get("/simple/reason-demo/")
        assert ok.reason_phrase == "OK"
        assert http.get("/simple/reason-demo/", headers={"If-None-Match": ok.headers["etag"]}).reason_phrase == (
            "Not Modified"
        )
        head = http.head("/files/reason-demo/nothing.whl")
        assert head.status_code == 404 and head.reason_phrase == "No file 'nothing.whl' in project 'reason-demo'."

    # On one kept-alive connection, the response after an error has its own status line.
    assert status_lines(server.port, b"/simple/nope/", b"/health", b"/simple/nope2/") == [
        b"HTTP/1.1 404 No project named 'nope' on this index.",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 404 No project named 'nope2' on this index.",
    ]
