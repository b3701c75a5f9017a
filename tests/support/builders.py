"""Build real, installable wheels and sdists locally (no network, no build backend needed)."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name


def _escape(name: str) -> str:
    return canonicalize_name(name).replace("-", "_")


def metadata_text(
    name: str,
    version: str,
    *,
    summary: str = "A test package",
    requires_dist: tuple[str, ...] = (),
    requires_python: str | None = None,
    description: str = "",
    extra_headers: str = "",
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {r}" for r in requires_dist]
    lines.append("Description-Content-Type: text/markdown")
    text = "\n".join(lines) + "\n" + extra_headers
    return text + "\n" + description


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(
    out_dir: Path,
    name: str,
    version: str,
    *,
    module_code: str | None = None,
    metadata: str | None = None,
    tag: str = "py3-none-any",
    filename: str | None = None,
    extra_files: dict[str, bytes] | None = None,
    **meta: object,
) -> Path:
    """A pure-Python wheel with one module named after the project, importable after install."""
    dist = f"{_escape(name)}-{version}"
    module = _escape(name)
    files: dict[str, bytes] = {
        f"{module}/__init__.py": (module_code or f"__version__ = {version!r}\n").encode(),
        f"{dist}.dist-info/METADATA": (metadata or metadata_text(name, version, **meta)).encode(),  # type: ignore[arg-type]
        f"{dist}.dist-info/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: packhouse-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
        ).encode(),
    }
    files.update(extra_files or {})
    record = [_record_line(p, d) for p, d in files.items()] + [f"{dist}.dist-info/RECORD,,"]
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    path = out_dir / (filename or f"{dist}-{tag}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p, d in files.items():
            info = zipfile.ZipInfo(p, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, d)
    return path


def make_sdist(
    out_dir: Path,
    name: str,
    version: str,
    *,
    metadata: str | None = None,
    filename: str | None = None,
    **meta: object,
) -> Path:
    base = f"{_escape(name)}-{version}"
    pkg_info = (metadata or metadata_text(name, version, **meta)).encode()  # type: ignore[arg-type]
    pyproject = (
        f'[build-system]\nrequires = ["flit_core>=3.2"]\nbuild-backend = "flit_core.buildapi"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\ndescription = "test"\n'
    ).encode()
    members = {
        f"{base}/PKG-INFO": pkg_info,
        f"{base}/pyproject.toml": pyproject,
        f"{base}/{_escape(name)}/__init__.py": f"__version__ = {version!r}\n".encode(),
    }
    path = out_dir / (filename or f"{base}.tar.gz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        for p, d in members.items():
            info = tarfile.TarInfo(p)
            info.size = len(d)
            info.mtime = 1704067200
            tf.addfile(info, io.BytesIO(d))
    path.write_bytes(buf.getvalue())
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive of exactly these members (for wheels and zip sdists laid out by hand)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
