"""A throwaway Docker engine and a Debian stand-in base image for the container test (RECIPES.md).

No image registry is reachable on the CI machine, so ``python:3.11-slim`` cannot be pulled: the base
is built from Debian's packages with mmdebstrap before the test run (tests/support/assets.py) and imported.
The engine gets its own socket, pid file, data root and bridge, so it never meddles with another.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("PACKHOUSE_TEST_CACHE", Path.home() / ".cache" / "packhouse-test"))
BASE_IMAGE = "packhouse-test-base:bookworm"
NAME = "packhouse-test-docker"
BRIDGE = "phtestbr0"
SUBNET = "172.30.254.1/24"
POOL = "base=172.30.0.0/16,size=24"


class EngineUnavailableError(RuntimeError):
    pass


@dataclass
class Engine:
    host: str  # DOCKER_HOST
    started: bool
    proc: subprocess.Popen[bytes] | None = None

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**(base if base is not None else os.environ), "DOCKER_HOST": self.host}

    def docker(self, *args: str, timeout: float = 300, check: bool = True, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker", *args], env=self.env(), capture_output=True, text=True, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if not path:
        raise EngineUnavailableError(
            f"{tool} is missing: install it with 'apt-get install -y {package}' (.ci/run does this)"
        )
    return path


def start_engine(workdir: Path) -> Engine:
    _need("docker", "docker.io")
    dockerd = _need("dockerd", "docker.io")
    if os.geteuid() != 0:
        raise EngineUnavailableError("the container test starts its own dockerd and needs root")
    run_dir = Path("/run") / NAME
    run_dir.mkdir(parents=True, exist_ok=True)
    host = f"unix://{run_dir}/docker.sock"
    engine = Engine(host, started=False)
    if engine.docker("version", check=False, timeout=10).returncode == 0:
        return engine  # left running by an interrupted run: reuse it
    bridge_args = ["--bridge", BRIDGE]
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
        made = subprocess.run(
            f"ip link add name {BRIDGE} type bridge && ip addr add {SUBNET} dev {BRIDGE} && "
            f"ip link set {BRIDGE} up",
            shell=True, capture_output=True,
        )  # fmt: skip
        if made.returncode != 0:
            bridge_args = []  # no iproute2 privileges: Docker's default bridge then
    with (workdir / "dockerd.log").open("ab") as log:
        engine.proc = subprocess.Popen(
            [dockerd, "--host", host, "--pidfile", str(run_dir / "docker.pid"),
             "--exec-root", str(run_dir / "exec"), "--data-root", str(CACHE / "docker-data"),
             "--default-address-pool", POOL, *bridge_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if engine.docker("version", check=False, timeout=10).returncode == 0:
            engine.started = True
            return engine
        if engine.proc.poll() is not None:
            break
        time.sleep(0.5)
    stop_engine(engine)
    raise EngineUnavailableError(f"dockerd did not start; see {workdir / 'dockerd.log'}")


def stop_engine(engine: Engine) -> None:
    """Stop the dockerd this run started (by its own process handle), never another one."""
    if engine.proc is None:
        return
    engine.proc.terminate()
    try:
        engine.proc.wait(30)
    except subprocess.TimeoutExpired:
        engine.proc.kill()
        engine.proc.wait()


def ensure_base_image(engine: Engine) -> str:
    """The stand-in base image, imported from the Debian base system fetched before the test run
    (tests/support/assets.py)."""
    from tests.support import assets

    if engine.docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    rootfs = assets.required(assets.rootfs(), "The Debian base system of the stand-in image")
    with rootfs.open("rb") as fh:
        engine.docker("import", "-", BASE_IMAGE, stdin=fh, timeout=300)
    return BASE_IMAGE
