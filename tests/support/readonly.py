"""Read-only files for tests that run as root, whom file modes do not stop: ``chattr +i``."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``path`` made immutable (nobody, root included, may write it) until the block ends; the test
    is skipped where that cannot be done (not root, no chattr, a file system without the flag)."""
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("making a file read-only for root needs chattr, as root")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i {path}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
