"""Request-head limits that uvicorn's httptools protocol does not enforce by itself.

uvicorn with httptools (the fast parser ``uvicorn[standard]`` installs) accepts request heads of
any size and waits for them for ever: a client can grow the server's memory with an endless header
or hold a connection open by sending one byte now and then (slowloris). This protocol adds:

- a cap on the bytes of a request head (request line + headers), ``--max-header-size``: past it the
  client gets 431 and the connection closes, before the head is buffered any further;
- a deadline for the whole head, ``--header-timeout`` (uvicorn's keep-alive timeout, which it
  already applies between requests): a client that has not sent a complete head by then gets 408.

Both values come from uvicorn's own ``Config`` (``h11_max_incomplete_event_size`` and
``timeout_keep_alive``), so they reach every worker process the same way uvicorn's options do.
The body has its own per-chunk timeout in the upload form reader.

A pipelined request's head is timed from the moment the response before it is complete, not while
that response is still going out. And no refusal (431, 408, or uvicorn's 400 for bytes it cannot
parse) is ever written into a response that is going out, where it would land inside the body:
the connection is shut down instead, so that the client sees a body cut short (a sendfile thread
writing on its own descriptor of the socket stops too).

The same protocol class lets file responses go out with sendfile (app/http_sendfile.py), an
error's message in its status line (app/http_reason.py), and a renewed TLS certificate be served
without a restart (app/http_tls.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from app import http_reason, http_sendfile, http_tls

DEFAULT_MAX_HEAD = 64 * 1024

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools missing: uvicorn's h11 enforces the size limit
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def protocol() -> Any:
    """The ``http=`` argument for ``uvicorn.run``."""
    return LimitedHttpToolsProtocol if HttpToolsProtocol is not None else "h11"


class HeadTooLargeError(Exception):
    pass


if HttpToolsProtocol is not None:

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(config, *args, **kwargs)
            self.max_head = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD
            self.head_timeout = float(config.timeout_keep_alive)
            self.in_head = True  # waiting for (the rest of) a request head
            self.head_bytes = 0
            self.head_timer: asyncio.TimerHandle | None = None
            self.parsed_bytes = 0  # request line + headers, as the parser hands them over
            self.refusal: tuple[int, str, str] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()
            if self.config.ssl is not None:  # a renewed certificate, for the connections after this one
                http_tls.reloader(self.config).check(self.config.ssl)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            was_in_head = self.in_head
            super().data_received(data)
            if was_in_head and self.in_head and not self.transport.is_closing():
                self.head_bytes += len(data)
                if self.head_bytes > self.max_head:
                    self._refuse(
                        431,
                        "Request Header Fields Too Large",
                        f"The request line and headers exceed {self.max_head} bytes (--max-header-size).",
                    )

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.parsed_bytes, self.refusal = 0, None
            if not self.in_head:  # the next request on a kept-alive connection
                self.in_head, self.head_bytes = True, 0
                if self.cycle is None or self.cycle.response_complete:
                    self._arm()  # else once the response is out (on_response_complete)

        # A head that arrives whole in one read never looks "incomplete" above: count what the
        # parser hands over too. Raising stops the parser; uvicorn then calls send_400_response.
        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self.parsed_bytes += size
            if self.parsed_bytes > self.max_head:
                detail = f"The request line and headers exceed {self.max_head} bytes (--max-header-size)."
                self.refusal = (431, "Request Header Fields Too Large", detail)
                raise HeadTooLargeError(detail)

        def send_400_response(self, msg: str) -> None:
            if self.refusal is not None:
                self._refuse(*self.refusal)
            elif self._answering():
                self._abort(f"400 Bad Request ({msg})")
            else:
                super().send_400_response(msg)

        def on_headers_complete(self) -> None:
            self.in_head = False
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()  # starts a pipelined request, or the keep-alive timer
            waiting = self.cycle is None or self.cycle.response_complete  # no pipelined request started
            if self.in_head and waiting and not self.transport.is_closing():
                # a pipelined head that arrived in part while the response was going out: its
                # time starts now, and it replaces the keep-alive timeout
                self._unset_keepalive_if_required()
                self._arm()

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            # Files go out with sendfile (app/http_sendfile.py), when Starlette's FileResponse asks.
            http_sendfile.wrap_send(cycle)
            http_reason.wrap_send(cycle)  # an error's message in its status line
            super()._start_asgi_task(cycle, app)

        def _arm(self) -> None:
            self._disarm()
            self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _head_timed_out(self) -> None:
            self.head_timer = None
            if self.in_head and not self.transport.is_closing():
                if self.head_bytes == 0 and self.cycle is None:
                    self.transport.close()  # connected and said nothing: just hang up
                    return
                self._refuse(
                    408,
                    "Request Timeout",
                    f"The request head was not received within {self.head_timeout:g} seconds (--header-timeout).",
                )

        def _answering(self) -> bool:
            """A response is going out, or is owed to a request before the bytes being parsed:
            anything written now would land inside it or be taken for it."""
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                return False
            # Only the request whose body is being read, not answered yet, can still be refused.
            return cycle.response_started or not cycle.more_body or bool(self.pipeline)

        def _abort(self, refusal: str) -> None:
            """Close the connection without a word, mid-response: shut the socket down (on
            this thread, while the transport still owns its descriptor), which also stops a
            sendfile thread writing on a duplicate of it, then close the transport."""
            self.logger.warning("%s while a response was going out: the connection is closed instead", refusal)
            self._disarm()
            if self.transport.is_closing():
                return
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                http_sendfile.shut_down(sock.fileno())
            self.transport.close()

        def _refuse(self, status: int, phrase: str, detail: str) -> None:
            if self._answering():
                self._abort(f"{status} {phrase} ({detail})")
                return
            self.logger.warning("%s %s: %s", status, phrase, detail)
            self.transport.write(http_reason.raw_problem(status, phrase, detail))
            self.transport.close()
            self._disarm()
