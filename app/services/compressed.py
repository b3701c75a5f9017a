"""Bytes kept in memory and sent many times (simple pages, JSON API answers, the UI's pages and
assets): their gzip form, made once, and a weak ETag of their content."""

from __future__ import annotations

import gzip
import hashlib


def gzip_bytes(body: bytes) -> bytes:
    """Level 6 (zlib's default: most of level 9's gain for a third of its time), and no timestamp,
    so the same body always compresses to the same bytes."""
    return gzip.compress(body, compresslevel=6, mtime=0)


def weak_etag(body: bytes) -> str:
    """A weak ETag of a body: its gzip and plain forms are the same content."""
    return f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
