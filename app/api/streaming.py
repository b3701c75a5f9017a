"""Serve an ``ObjectStream`` (bytes streamed from object storage) with HEAD and Range support.

Starlette's FileResponse does this for local files; object-store bytes need it done here. One
range per request (RFC 9110 section 14.2 lets a server ignore a multi-range request and answer
200), which is all pip and uv ask for: uv reads a wheel's central directory with
``Range: bytes=-N`` and then single ranges.
"""

from __future__ import annotations

from typing import Literal

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from app.storage.base import ObjectStream

MEDIA_TYPE = "application/octet-stream"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | Literal[False]:
    """A single ``bytes=`` range -> (first, last) inclusive; None: serve everything;
    False: unsatisfiable (416)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = (part.strip() for part in spec.partition("-"))
    if not dash or not (first_text or last_text) or not all(t.isdigit() for t in (first_text, last_text) if t):
        return None  # malformed: ignore the header (RFC 9110 allows it)
    if not first_text:  # suffix: the last N bytes
        length = int(last_text)
        return (max(0, size - length), size - 1) if length else False
    first, last = int(first_text), int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        return False
    return first, min(last, size - 1)


def stream_response(request: Request, stream: ObjectStream, headers: dict[str, str]) -> Response:
    headers = {**headers, "Accept-Ranges": "bytes"}
    wanted = parse_range(request.headers.get("range"), stream.size)
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range != headers.get("ETag"):
        wanted = None  # the client's copy is another version: send the whole file
    if wanted is False:
        headers["Content-Range"] = f"bytes */{stream.size}"
        return Response(status_code=416, headers=headers)
    status, (first, last) = (200, (0, stream.size - 1)) if wanted is None else (206, wanted)
    if status == 206:
        headers["Content-Range"] = f"bytes {first}-{last}/{stream.size}"
    headers["Content-Length"] = str(last - first + 1)
    if request.method == "HEAD" or last < first:
        return Response(status_code=status, headers=headers, media_type=MEDIA_TYPE)
    return StreamingResponse(stream.read(first, last), status_code=status, headers=headers, media_type=MEDIA_TYPE)
