"""What the container test needs from outside this machine, fetched before the test run, never
during it: ``make test`` runs ``python -m tests.support.assets`` first.

- the Debian base system of the stand-in ``python:3.11-slim`` image, built by mmdebstrap from
  Debian's mirror (no image registry is reachable here: tests/support/docker_engine.py);
- the image's locked dependencies (requirements/image.txt, and build.txt for its build backend) as
  wheels for the image's Python 3.11, from the package registry: the test serves them to
  ``docker build`` from a Packhouse on the host.

Both are cached under PACKHOUSE_TEST_CACHE (default ~/.cache/packhouse-test); run again, this does
nothing. The tests only read the cache, and fail saying how to fill it when it is not there.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.docker_engine import CACHE

ROOT = Path(__file__).resolve().parents[2]
HOW = "run 'make test' (its first step fetches it), or '.venv/bin/python -m tests.support.assets'"


def rootfs() -> Path:
    return CACHE / "bookworm-python.tar"


LOCKS = (ROOT / "requirements" / "image.txt", ROOT / "requirements" / "build.txt")


def wheels() -> Path:
    """The wheelhouse for the image's lock files (a new folder when they change)."""
    key = hashlib.sha256(b"".join(lock.read_bytes() for lock in LOCKS)).hexdigest()[:12]
    return CACHE / f"wheels-{key}"


def required(path: Path, what: str) -> Path:
    """``path`` if fetched; else the test fails saying how to fetch it."""
    if not path.exists() or (path.is_dir() and not (path / ".complete").exists()):
        pytest.fail(f"{what} is not in {CACHE}: {HOW}")
    return path


def fetch_rootfs() -> None:
    if rootfs().exists():
        return
    mmdebstrap = shutil.which("mmdebstrap") or "/usr/bin/mmdebstrap"
    if not Path(mmdebstrap).exists():
        print("tests.support.assets: mmdebstrap is not installed (apt-get install mmdebstrap): the container "
              "test will fail", file=sys.stderr)  # fmt: skip
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    part = CACHE / "bookworm-python.part.tar"
    print("tests.support.assets: building the container test's Debian base system (mmdebstrap)", flush=True)
    subprocess.run(
        [mmdebstrap, "--variant=minbase", "--include=python3,python3-pip,python3-venv,python-is-python3,"
         "ca-certificates", "bookworm", str(part)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    part.rename(rootfs())


def fetch_wheels() -> None:
    cache = wheels()
    if (cache / ".complete").exists():
        return
    cache.mkdir(parents=True, exist_ok=True)
    print("tests.support.assets: downloading the image's locked dependencies as wheels", flush=True)
    # The machine's own pip configuration applies here (it names the reachable registry); the
    # hashes are checked as the image's build will check them.
    for lock in LOCKS:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
             "--require-hashes", "--dest", str(cache), "--python-version", "3.11", "--implementation", "cp",
             "--abi", "cp311", "--abi", "abi3", "--abi", "none", "--platform", "manylinux_2_28_x86_64",
             "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "any",
             "-r", str(lock)],
            check=True, timeout=300,
        )  # fmt: skip
    (cache / ".complete").write_text("ok")


if __name__ == "__main__":
    fetch_wheels()
    fetch_rootfs()
