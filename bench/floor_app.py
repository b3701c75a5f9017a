"""The cheapest possible upload server, for the benchmark's floor: it reads the whole request body
and answers 200, storing and checking nothing. Run under the same uvicorn (uvloop, httptools) as
Packhouse, it shows what the HTTP exchange and the benchmark's client cost on their own."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"OK\n"})
