"""The test servers' ports (tests/support/ports.py): each pytest-xdist worker has its own range,
and a port something holds is passed over."""

from __future__ import annotations

import socket

from tests.support import ports


def test_workers_take_ports_from_ranges_of_their_own(monkeypatch):
    taken = {}
    for worker in ("gw0", "gw1", "gw11"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        taken[worker] = {ports.free_port() for _ in range(5)}
    assert all(20000 <= p < 21000 for p in taken["gw0"])
    assert all(21000 <= p < 22000 for p in taken["gw1"])
    assert all(31000 <= p < 32000 for p in taken["gw11"])
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert 20000 <= ports.free_port() < 21000  # one process: the first range


def test_a_port_in_use_is_passed_over(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw5")
    with socket.socket() as held:
        port = ports.free_port()
        held.bind(("127.0.0.1", port + 1))  # the next one in turn
        held.listen()
        assert ports.free_port() == port + 2
