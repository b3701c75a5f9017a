"""Damage real archives (from tests/support/builders.py) the ways a disk, a network or a hostile
client does: every result must be refused as an invalid distribution, never crash a reader.

Each function takes an archive's bytes and returns the damaged bytes.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile

# Offsets in a zip's local file header (PK\x03\x04) and central directory entry (PK\x01\x02).
_LOCAL, _CENTRAL = b"PK\x03\x04", b"PK\x01\x02"
_FLAGS = {_LOCAL: 6, _CENTRAL: 8}
_METHOD = {_LOCAL: 8, _CENTRAL: 10}
_NAME = {_LOCAL: (26, 30), _CENTRAL: (28, 46)}  # (offset of the name length, offset of the name)


def _headers(data: bytes, member: str) -> list[tuple[bytes, int]]:
    """(signature, position) of ``member``'s local header and central directory entry."""
    found = []
    for sig in (_LOCAL, _CENTRAL):
        pos = data.find(sig)
        while pos != -1:
            length_at, name_at = _NAME[sig]
            (length,) = struct.unpack_from("<H", data, pos + length_at)
            if data[pos + name_at : pos + name_at + length] == member.encode():
                found.append((sig, pos))
            pos = data.find(sig, pos + 4)
    assert len(found) == 2, f"{member} not found in the archive"
    return found


def zip_member_method(data: bytes, member: str, method: int = 99) -> bytes:
    """``member`` claims a compression method zipfile does not support (99: AES)."""
    out = bytearray(data)
    for sig, pos in _headers(data, member):
        struct.pack_into("<H", out, pos + _METHOD[sig], method)
    return bytes(out)


def zip_member_encrypted(data: bytes, member: str) -> bytes:
    """``member`` is flagged as encrypted (general purpose flag bit 0)."""
    out = bytearray(data)
    for sig, pos in _headers(data, member):
        (flags,) = struct.unpack_from("<H", out, pos + _FLAGS[sig])
        struct.pack_into("<H", out, pos + _FLAGS[sig], flags | 1)
    return bytes(out)


def zip_member_corrupt(data: bytes, member: str) -> bytes:
    """``member``'s deflate stream is garbled (its headers and sizes are left intact)."""
    out = bytearray(data)
    ((_, pos),) = [h for h in _headers(data, member) if h[0] == _LOCAL]
    name_len, extra_len = struct.unpack_from("<HH", out, pos + 26)
    (compressed,) = struct.unpack_from("<I", out, pos + 18)
    start = pos + 30 + name_len + extra_len
    for i in range(start, start + compressed):
        out[i] ^= 0x5A
    return bytes(out)


def targz_damaged_header(data: bytes, member_index: int = 1) -> bytes:
    """The tar inside is damaged at the header of its ``member_index``-th member (before PKG-INFO
    when that comes later); the gzip layer around it is intact."""
    raw = bytearray(gzip.decompress(data))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw)), mode="r:") as tf:
        offset = tf.getmembers()[member_index].offset
    for i in range(offset, offset + 100):  # the name, mode and size fields, and no valid checksum
        raw[i] ^= 0xA5
    return gzip.compress(bytes(raw), mtime=0)


def targz_corrupt_deflate(data: bytes) -> bytes:
    """The gzip stream is garbled right after its header: decompression fails."""
    out = bytearray(data)
    for i in range(10, min(len(out) - 8, 60)):
        out[i] ^= 0xA5
    return bytes(out)


def targz_truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def targz_pkg_info_last(data: bytes) -> bytes:
    """The same sdist with PKG-INFO moved to the end of the tar (setuptools' order), so that
    damage to an earlier member lands before it."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]  # type: ignore[union-attr]
    members.sort(key=lambda item: item[0].name.endswith("/PKG-INFO"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for member, content in members:
            tf.addfile(member, io.BytesIO(content))
    return gzip.compress(buf.getvalue(), mtime=0)


def targz_tail_corrupt(data: bytes) -> bytes:
    """The deflate data is garbled near its end, after PKG-INFO (first in ``make_sdist``'s order):
    PKG-INFO still reads; the rest of the stream does not."""
    out = bytearray(data)
    for i in range(len(out) - 40, len(out) - 12):
        out[i] ^= 0xA5
    return bytes(out)


def targz_wrong_crc(data: bytes) -> bytes:
    """Every byte decompresses, but the gzip trailer's CRC-32 does not match them."""
    out = bytearray(data)
    out[-8] ^= 0xFF
    return bytes(out)


def targz_tail_truncated(data: bytes) -> bytes:
    """The stream stops before its trailer (an interrupted copy): PKG-INFO, first, still reads."""
    return data[:-8]
