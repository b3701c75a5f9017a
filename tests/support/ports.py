"""Free TCP ports on 127.0.0.1 for the servers the tests start, one range per pytest-xdist worker.

A port asked of the kernel (bind to port 0) is free when asked, but the server that is then
started binds it a second or so later: with several workers, another worker's bind to port 0
could be handed the same port meanwhile, and its test would fail to start its server, or talk to
the wrong one. Each worker therefore takes ports in turn from a range of its own, below the
kernel's ephemeral range (32768-60999), so no client connection's port is taken either.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading

_BASE, _SPAN, _SLOTS = 20000, 1000, 12  # ports 20000-31999: up to 12 workers, 1000 ports each

_lock = threading.Lock()
_next = itertools.count()


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # set by pytest-xdist in its workers
    digits = worker[2:] if worker.startswith("gw") else ""
    return int(digits) % _SLOTS if digits.isdigit() else 0


def free_port() -> int:
    """The next port of this worker's range that nothing holds (listening, or in TIME_WAIT after
    a server of an earlier test: the bind below, without SO_REUSEADDR, refuses those too)."""
    first = _BASE + _worker_index() * _SPAN
    with _lock:
        for _ in range(_SPAN):
            port = first + next(_next) % _SPAN
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port in {first}-{first + _SPAN - 1}")
