"""The house rules that tools can check: layering (import-linter), lint and layout (ruff)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_imports_point_down_and_only_api_knows_the_web_framework():
    proc = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean():
    proc = subprocess.run(
        [str(BIN / "ruff"), "check", "app", "tests", "migrations", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean():
    """One layout, the formatter's (``ruff format .``); a line it must not touch says ``# fmt: skip``."""
    proc = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", "app", "tests", "migrations", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
