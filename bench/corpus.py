"""A deterministic corpus of real-looking wheels and sdists (same bytes on every run).

Every archive is built with fixed timestamps and seeded contents, so two runs (and two machines)
benchmark the same bytes. Each file carries the core metadata a real one has (METADATA in
``<name>-<version>.dist-info/``, PKG-INFO in ``<name>-<version>/``), so the servers' upload
validation and the resolvers (pip, uv) treat them like packages from PyPI.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

ZIP_TIME = (2024, 1, 1, 0, 0, 0)
CLIENT_PACKAGES = [f"phx-{c}" for c in "abcdefghij"]  # the 10 packages the resolvers install


@dataclass(frozen=True)
class Dist:
    project: str  # display name
    normalized: str
    version: str
    filename: str
    filetype: str  # bdist_wheel | sdist
    pyversion: str
    size: int
    sha256: str
    md5: str
    blake2_256: str
    metadata: str  # METADATA / PKG-INFO text
    requires_python: str | None
    requires_dist: list[str]
    summary: str

    @property
    def metadata_sha256(self) -> str | None:
        if self.filetype != "bdist_wheel":
            return None
        return hashlib.sha256(self.metadata.encode()).hexdigest()


def _metadata(name: str, version: str, requires: list[str], summary: str) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary}",
        "Home-page: https://example.invalid/" + name,
        "Author: Bench Corp",
        "License: MIT",
        "Classifier: Programming Language :: Python :: 3",
        "Requires-Python: >=3.8",
        *[f"Requires-Dist: {r}" for r in requires],
        "Description-Content-Type: text/markdown",
        "",
        f"# {name}\n\nA benchmark package ({summary}).\n",
    ]
    return "\n".join(lines)


def _zinfo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _wheel(name: str, version: str, tag: str, metadata: str, payload: bytes) -> tuple[str, bytes]:
    under = name.replace("-", "_")
    filename = f"{under}-{version}-{tag}.whl"
    info_dir = f"{under}-{version}.dist-info"
    members = {
        f"{under}/__init__.py": f'"""{name}"""\n__version__ = "{version}"\n'.encode(),
        f"{info_dir}/METADATA": metadata.encode(),
        f"{info_dir}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()),
    }
    if payload:
        members[f"{under}/_data.bin"] = payload
    record = "".join(f"{path},,\n" for path in members) + f"{info_dir}/RECORD,,\n"
    members[f"{info_dir}/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in members.items():
            info = _zinfo(path)
            if path.endswith("_data.bin"):
                info.compress_type = zipfile.ZIP_STORED  # random bytes do not compress
            zf.writestr(info, data)
    return filename, buf.getvalue()


def _sdist(name: str, version: str, metadata: str) -> tuple[str, bytes]:
    under = name.replace("-", "_")
    top = f"{under}-{version}"
    members = {
        f"{top}/PKG-INFO": metadata.encode(),
        f"{top}/pyproject.toml": f'[project]\nname = "{name}"\nversion = "{version}"\n'.encode(),
        f"{top}/src/{under}/__init__.py": f'__version__ = "{version}"\n'.encode(),
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tf.addfile(info, io.BytesIO(data))
    import gzip

    return f"{top}.tar.gz", gzip.compress(raw.getvalue(), mtime=0)


def _record(
    out: Path,
    name: str,
    version: str,
    filename: str,
    data: bytes,
    kind: str,
    meta: str,
    requires: list[str],
    summary: str,
) -> Dist:
    (out / filename).write_bytes(data)
    return Dist(
        project=name,
        normalized=name.lower().replace("_", "-").replace(".", "-"),
        version=version,
        filename=filename,
        filetype=kind,
        pyversion="py3" if kind == "bdist_wheel" else "source",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        blake2_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
        metadata=meta,
        requires_python=">=3.8",
        requires_dist=requires,
        summary=summary,
    )


def make_dist(
    out: Path,
    name: str,
    version: str,
    kind: str,
    *,
    requires: list[str] | None = None,
    tag: str = "py3-none-any",
    payload: bytes = b"",
) -> Dist:
    requires = requires or []
    summary = f"{name} {version}"
    meta = _metadata(name, version, requires, summary)
    if kind == "bdist_wheel":
        filename, data = _wheel(name, version, tag, meta, payload)
    else:
        filename, data = _sdist(name, version, meta)
    return _record(out, name, version, filename, data, kind, meta, requires, summary)


def build(out: Path, *, projects: int, versions: int, many_versions: int, big_mb: int) -> list[Dist]:
    """The index corpus: client packages, one project with 3*many_versions files, one big file,
    and ``projects`` filler projects of ``versions`` versions (wheel for each, sdist for the first)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.json"
    key = {"projects": projects, "versions": versions, "many": many_versions, "big_mb": big_mb, "v": 2}
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved["key"] == key:
            return [Dist(**d) for d in saved["dists"]]
    dists: list[Dist] = []
    # The resolver workload: 10 packages, 5 versions each, chained dependencies.
    for i, name in enumerate(CLIENT_PACKAGES):
        for minor in range(5):
            deps = [f"{CLIENT_PACKAGES[i + 1]}>=1.1"] if i + 1 < len(CLIENT_PACKAGES) else []
            version = f"1.{minor}.0"
            dists.append(make_dist(out, name, version, "bdist_wheel", requires=deps))
            dists.append(make_dist(out, name, version, "sdist", requires=deps))
    # One project with many files: a pure wheel, a binary wheel and an sdist per version.
    for v in range(many_versions):
        version = f"{v // 10}.{v % 10}.0"
        dists.append(make_dist(out, "phx-many", version, "bdist_wheel"))
        dists.append(make_dist(out, "phx-many", version, "bdist_wheel", tag="cp311-cp311-manylinux_2_17_x86_64"))
        dists.append(make_dist(out, "phx-many", version, "sdist"))
    # One big file (random bytes, stored: a realistic compiled wheel does not compress either).
    payload = random.Random(50).randbytes(big_mb * 1024 * 1024)
    dists.append(make_dist(out, "phx-huge", "1.0.0", "bdist_wheel", payload=payload))
    for p in range(projects):
        name = f"filler-{p:05d}"
        for v in range(versions):
            dists.append(make_dist(out, name, f"{v}.1.0", "bdist_wheel"))
            if v == 0:
                dists.append(make_dist(out, name, f"{v}.1.0", "sdist"))
    manifest.write_text(json.dumps({"key": key, "dists": [asdict(d) for d in dists]}))
    return dists


def build_uploads(out: Path, *, big: int, big_mb: int, small: int, huge_bytes: int = 0) -> dict[str, list[Dist]]:
    """Files that are uploaded during the run (not in the index beforehand)."""
    out.mkdir(parents=True, exist_ok=True)
    big_files = [
        make_dist(
            out,
            "phx-upload-big",
            f"1.0.{i}",
            "bdist_wheel",
            payload=random.Random(i).randbytes(big_mb * 1024 * 1024),
        )
        for i in range(big)
    ]
    small_files = [make_dist(out, "phx-upload-small", f"1.0.{i}", "bdist_wheel") for i in range(small)]
    huge = []
    if huge_bytes:
        huge = [make_dist(out, "phx-upload-huge", "1.0.0", "bdist_wheel", payload=_zeros_like(huge_bytes))]
    return {"big": big_files, "small": small_files, "huge": huge}


def _zeros_like(n: int) -> bytes:
    # Content does not matter for the memory test; a repeated random block keeps it cheap to make.
    block = random.Random(1).randbytes(1024 * 1024)
    return (block * (n // len(block) + 1))[:n]
