"""Helpers for integrity tests: a fingerprint of everything stored, and hand-made multipart bodies."""

from __future__ import annotations

import hashlib
from pathlib import Path

from app.storage.local import is_spare_part
from tests.support import dbaccess

TABLES = ("projects", "files", "events")


def fingerprint(root: Path, db: Path | None = None) -> dict[str, object]:
    """sha256 of every file under ``root`` (the database file aside) plus every row of every table.

    Two equal fingerprints mean: no stored byte changed, nothing was written anywhere under
    ``root`` (temporary files included), and no database row changed. The local store's spare part
    files (empty, created ahead of uploads: LocalStorage.replenish) are not data and are left out."""
    files = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not p.name.startswith("packhouse.db")
        and not p.name.endswith(".log")
        and not is_spare_part(p.name)
    }
    db = db or root / "data" / "packhouse.db"
    rows = {t: db_rows(db, t) for t in TABLES}
    return {"files": files, "rows": rows}


def db_rows(db: Path, table: str) -> list[tuple]:
    """Rows of ``table`` in the database beside ``db`` (the SQLite path names the data folder; on the
    PostgreSQL variant the same folder's database is read)."""
    return dbaccess.query(f"SELECT * FROM {table} ORDER BY id", db.parent)  # noqa: S608


BOUNDARY = "packhouse-test-boundary-7d1f"


def multipart(
    fields: dict[str, str],
    filename: bytes | None = None,
    content: bytes = b"",
    boundary: str = BOUNDARY,
) -> tuple[bytes, str]:
    """(body, content_type), built byte by byte so the filename goes out exactly as given."""
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    if filename is not None:
        out += f"--{boundary}\r\n".encode()
        out += b'Content-Disposition: form-data; name="content"; filename="' + filename + b'"\r\n'
        out += b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def digest_fields(content: bytes) -> dict[str, str]:
    return {
        "md5_digest": hashlib.md5(content).hexdigest(),
        "sha256_digest": hashlib.sha256(content).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(content, digest_size=32).hexdigest(),
    }
