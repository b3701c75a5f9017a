"""Real Packhouse server processes for end-to-end tests, on 127.0.0.1 and a free port.

``ServerProcess`` holds the start / wait-until-ready / stop / SIGKILL logic; ``RunServer`` is
``packhouse run ...`` (pypiserver's command line) and conftest's ``LiveServer`` is ``packhouse serve``.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """Needs ``env``, ``port``, ``log_path``, ``proc`` and ``_log`` attributes, and ``command()``."""

    env: dict[str, str]
    port: int
    log_path: Path | None
    proc: subprocess.Popen[bytes] | None
    _log: object
    ready_path = "/health"
    ca: str | None = None  # the CA of the server's TLS certificate (--ssl-certfile): https URLs

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify`` for this server: its CA, when it serves HTTPS."""
        return ssl.create_default_context(cafile=self.ca) if self.ca else True

    def start(self, timeout: float = 20.0):  # noqa: ANN201 - returns self (either subclass)
        assert self.log_path is not None
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)  # type: ignore[arg-type]
        name = " ".join(self.command()[2:4])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1, verify=self.verify).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def _close_log(self) -> None:
        if self._log:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close_log()


@dataclass
class RunServer(ServerProcess):
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    _log: object = field(default=None, repr=False)
    ready_path = "/ready"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "app", "run", "-i", "127.0.0.1", "-p", str(self.port), *self.args]
