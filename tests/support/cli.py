"""The ``packhouse`` command line, run in the test process or as a process of its own.

``python -m app ARGS`` is ``raise SystemExit(app.cli.main(ARGS))``; each process of it spends 1.5 s
of CPU importing the app before it does anything (more on a slow CI machine), and the suite ran
hundreds of them. ``packhouse(..., process=False)`` calls ``main`` here instead, with the
command's environment, its standard output and error captured, and returns what
``subprocess.run`` would: the exit status, stdout, stderr. The command still opens the database
and the storage itself, from its own settings, exactly as in a process of its own (the tests'
servers hold no state it could share: their caches live in their app's state).

A real process is kept where the process is the point: arguments that only a process receives
as bytes, a command that must finish within a time limit, ``serve``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def packhouse(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    process: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``packhouse ARGS`` with ``env`` added to this process's environment; in a process of its
    own if ``process`` or a ``timeout`` is given."""
    argv = [sys.executable, "-m", "app", *args]
    if process or timeout is not None:
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout or 120,
                              env={**os.environ, **(env or {})})  # fmt: skip
    from app.cli import main

    out, err = io.StringIO(), io.StringIO()
    # A process of its own prints warnings and errors that nothing configured a handler for on
    # stderr (logging's last resort): so does this, or a logged traceback would go unseen.
    stderr_log = logging.StreamHandler(err)
    stderr_log.setLevel(logging.WARNING)
    logging.getLogger().addHandler(stderr_log)
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's usage errors (status 2), --help
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        logging.getLogger().removeHandler(stderr_log)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
