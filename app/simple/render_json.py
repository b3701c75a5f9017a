"""PEP 691 JSON (PEP 700 fields, PEP 792 status markers). Pure functions: model -> bytes."""

from __future__ import annotations

import json
from typing import Any

from app.simple.model import API_VERSION, DistFile, ProjectDetail, ProjectList

_META = {"api-version": API_VERSION}


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def index(page: ProjectList) -> bytes:
    return _dump({"meta": _META, "projects": [{"name": p.name} for p in page.projects]})


def _file(f: DistFile) -> dict[str, Any]:
    out: dict[str, Any] = {
        "filename": f.filename,
        "url": f.url,
        "hashes": {"sha256": f.sha256},
    }
    if f.requires_python:
        out["requires-python"] = f.requires_python
    # PEP 714: "core-metadata" is the key. The old "dist-info-metadata" key is NOT emitted in JSON:
    # pip 22.3-23.1 crash on it ("unhashable type: 'dict'"), and pip 23.0.1 is Debian 12's python3-pip;
    # PEP 714 says servers should not emit it in JSON unless no such pip can reach them.
    metadata: dict[str, str] | bool = {"sha256": f.core_metadata_sha256} if f.core_metadata_sha256 else False
    out["core-metadata"] = metadata
    out["yanked"] = f.yanked
    out["size"] = f.size
    out["upload-time"] = f.upload_time
    return out


def detail(page: ProjectDetail) -> bytes:
    out: dict[str, Any] = {"meta": _META, "name": page.name}
    if page.status is not None:  # PEP 792: absent means active
        status = {"status": page.status}
        if page.status_reason:
            status["reason"] = page.status_reason
        out["project-status"] = status
    out["versions"] = list(page.versions)
    out["files"] = [_file(f) for f in page.files]
    return _dump(out)
