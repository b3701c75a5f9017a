"""Build legacy-upload forms the way twine does, for protocol-level tests with httpx."""

from __future__ import annotations

import hashlib
from pathlib import Path

from packaging.utils import parse_sdist_filename, parse_wheel_filename


def upload_form(path: Path, *, content: bytes | None = None, **overrides: str | None) -> tuple[dict, dict]:
    """(data, files) for ``client.post("/legacy/", data=data, files=files)``.

    ``overrides`` replace fields; a value of None removes the field."""
    data_bytes = path.read_bytes() if content is None else content
    if path.name.endswith(".whl"):
        name, version, _b, _t = parse_wheel_filename(path.name)
        filetype, pyversion = "bdist_wheel", "py3"
    else:
        name, version = parse_sdist_filename(path.name)
        filetype, pyversion = "sdist", "source"
    data: dict[str, str | None] = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": str(name),
        "version": str(version),
        "filetype": filetype,
        "pyversion": pyversion,
        "md5_digest": hashlib.md5(data_bytes).hexdigest(),
        "sha256_digest": hashlib.sha256(data_bytes).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(data_bytes, digest_size=32).hexdigest(),
    }
    data.update(overrides)
    files = {"content": (path.name, data_bytes, "application/octet-stream")}
    return {k: v for k, v in data.items() if v is not None}, files


def post_upload(client, path: Path, **kw):  # type: ignore[no-untyped-def]
    """Upload ``path`` to ``client`` (an httpx or Starlette test client) as twine would; ``kw``
    goes to ``client.post`` (headers, say)."""
    data, files = upload_form(path)
    return client.post("/legacy/", data=data, files=files, **kw)
