"""An error response's status line carries its message, as PyPI's does.

PyPI answers a refused upload with the reason in the status line ("400 File already exists ...").
The upload clients print that phrase and not the body:

- twine prints the status and, on the next line, the reason phrase; the body only with --verbose;
- pip, poetry and flit (for every refusal but a 400) show requests' ``HTTPError``,
  "409 Client Error: <reason phrase> for url: ...".

With the standard phrase they can only say "403 Forbidden". ASGI has no field for the phrase, and
uvicorn writes the standard one. So an error response (``app.api.errors.problem``) puts its message
in the ``http.response.start`` message under ``REASON``, a key other servers ignore. Under
Packhouse's own uvicorn protocol (``app/http_limits.py``), ``wrap_send`` writes the status line
with that message instead.

The message is made safe for a status line (RFC 9112 4: HTAB, SP, visible characters):
- anything else becomes "?";
- it is cut to ``MAX_REASON`` characters, at a space, ending with "...".

If uvicorn writes its status line in a way this module does not expect, the standard phrase goes
out and nothing breaks.
"""

from __future__ import annotations

import json
import re
from typing import Any

REASON = "packhouse.reason"
MAX_REASON = 1024  # http.client and h11 read status lines of up to 64 KiB

try:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE
except ImportError:  # pragma: no cover - no httptools: the h11 protocol writes its own phrases
    STATUS_LINE = {}

_UNSAFE = re.compile(r"[^\t\x20-\x7e]")


def phrase(message: str) -> bytes:
    """``message`` as a reason phrase: one line of printable ASCII, at most MAX_REASON long."""
    text = " ".join(message.split())  # newlines and runs of spaces: one space
    text = _UNSAFE.sub("?", text)
    if len(text) > MAX_REASON:
        cut = text[: MAX_REASON - 3]
        text = (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "..."
    return text.encode("ascii")


def raw_problem(status: int, title: str, detail: str) -> bytes:
    """A whole ``application/problem+json`` response, closing the connection, with ``detail`` as
    its reason phrase: for what the protocol answers itself, outside the app (app/http_limits.py's
    431 and 408, app/http_tls.py's 400 to plain HTTP on an HTTPS port)."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, phrase(detail), len(body))
    )
    return head + body


def wrap_send(cycle: Any) -> None:
    """Make ``cycle.send`` (uvicorn's httptools ``RequestResponseCycle``) write the ``REASON`` of an
    ``http.response.start`` message in the status line."""
    if not hasattr(cycle, "transport") or not STATUS_LINE:
        return
    send = cycle.send

    async def send_with_reason(message: Any) -> None:
        if message["type"] != "http.response.start" or not (reason := message.get(REASON)):
            await send(message)
            return
        standard = STATUS_LINE.get(message["status"])
        if standard is None:  # a status uvicorn has no line for: its own handling
            await send(message)
            return
        custom = b"%s %d %s\r\n" % (standard.split(b" ", 1)[0], message["status"], phrase(reason))
        transport = cycle.transport
        cycle.transport = _Rephrased(transport, standard, custom)
        try:
            await send(message)
        finally:
            cycle.transport = transport

    cycle.send = send_with_reason


class _Rephrased:
    """The connection's transport, writing ``custom`` for the status line ``standard`` once."""

    def __init__(self, transport: Any, standard: bytes, custom: bytes) -> None:
        self._transport = transport
        self._standard = standard
        self._custom = custom

    def write(self, data: bytes) -> None:
        if self._custom and data.startswith(self._standard):
            data = self._custom + data[len(self._standard) :]
        self._custom = b""
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
