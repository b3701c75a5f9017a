"""htpasswd files written by Apache's own tool (the oracle), one user per hash format."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# htpasswd flag -> (user, password, expected hash prefix)
FORMATS = {
    "bcrypt": ("-B", "bea", "bcrypt-pw-1", "$2y$"),
    "sha1": ("-s", "sam", "sha1 pw 2", "{SHA}"),
    "apr1": ("-m", "amy", "apr1:pw:3", "$apr1$"),
}


def htpasswd_bin() -> str:
    path = shutil.which("htpasswd")
    assert path, "htpasswd (Debian package apache2-utils) is needed; .ci/run installs it"
    return path


def write_htpasswd(path: Path, formats: tuple[str, ...] = tuple(FORMATS)) -> dict[str, tuple[str, str]]:
    """Create ``path`` with one user per format; return {format: (user, password)}."""
    users = {}
    for i, fmt in enumerate(formats):
        flag, user, password, prefix = FORMATS[fmt]
        create = ["-c"] if i == 0 else []
        subprocess.run(
            [htpasswd_bin(), *create, "-b", flag, str(path), user, password], check=True, capture_output=True
        )
        assert prefix in path.read_text()
        users[fmt] = (user, password)
    return users
