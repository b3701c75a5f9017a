"""PEP 658 metadata files: read them checked against the row, build them from the wheel.

A wheel's metadata file (``<storage key>.metadata``) is the wheel's own ``METADATA``, byte for
byte, and the file's row records its sha256 (the simple pages advertise it, and pip and uv check
it). It is derived data. The local store does not write it at upload (``UploadService``): the
first request for it reads it from the wheel, on the same disk, and writes it. Other stores get
it with the upload (an object store would otherwise fetch the whole wheel to build it). Either
way a crash may lose it or cut it short, and an operator may delete it: every reader checks the
bytes against the row, and a missing or damaged one is built from the wheel, which is durable once
its row is, and written back.

Writing it back races with a delete of the file (``ManageService.delete``: the API, the CLI,
pypiserver's remove_pkg), which commits the row's deletion, then removes the wheel and its
metadata file. A reader that read the row before that commit and the wheel before its removal
could write the metadata file after the delete removed it: a file no row refers to, left forever.
So the row is looked up again after every write, and the write undone if it is gone
(``_store_back``).
"""

from __future__ import annotations

import logging
import tempfile
from hashlib import sha256
from pathlib import Path

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import dists
from app.db import repo
from app.errors import InvalidDistributionError
from app.services.stored import UnreadableFileError, read_stored
from app.storage.base import LocalPath, Storage

log = logging.getLogger("packhouse.metadata")

METADATA_SUFFIX = ".metadata"


async def core_metadata(
    storage: Storage,
    storage_key: str,
    filename: str,
    metadata_sha256: str,
    *,
    store_back: async_sessionmaker[AsyncSession] | None,
) -> bytes:
    """The PEP 658 metadata of the stored wheel ``filename`` (under ``storage_key``), whose row
    records ``metadata_sha256``: the stored metadata file if it hashes to that, else the wheel's
    METADATA read from it. With ``store_back`` (the sessions of the database that holds the row),
    those bytes are stored too, unless the row is deleted meanwhile; None reads only.

    Raises:
        FileNotFoundError: neither the metadata file nor the wheel gives those bytes (the wheel
            is missing or damaged too: ``packhouse check`` reports it).
    """
    key = storage_key + METADATA_SUFFIX
    try:
        data = await read_stored(storage, key)
    except FileNotFoundError:
        data = None
    except UnreadableFileError as exc:  # a directory, a FIFO, a symlink loop, ...: as if missing
        log.warning("the PEP 658 metadata file of %s cannot be read (it is %s): built from the wheel", filename, exc)
        data = None
    if data is not None and sha256(data).hexdigest() == metadata_sha256:
        return data
    rebuilt = await _rebuild(storage, storage_key, filename)
    if rebuilt is None or sha256(rebuilt).hexdigest() != metadata_sha256:
        raise FileNotFoundError(key)
    if store_back is not None and await _store_back(storage, store_back, storage_key, filename, rebuilt):
        if data is None:  # not written yet (a local upload), or lost
            log.debug("wrote the PEP 658 metadata of %s from the wheel", filename)
    if data is not None:
        log.warning("rebuilt the PEP 658 metadata of %s from the wheel (the stored copy was damaged)", filename)
    return rebuilt


async def _store_back(
    storage: Storage, sessions: async_sessionmaker[AsyncSession], storage_key: str, filename: str, data: bytes
) -> bool:
    """Store ``data`` as the metadata file of ``storage_key``, and keep it only if a row still
    refers to that key once it is written. Whether it was kept.

    The caller read the row, then the wheel; a delete may have committed since, and removed the
    wheel and the metadata file before this write. It commits before it removes them, so the row
    is looked up after the write: either that sees the deletion (and this removes what it wrote),
    or the delete committed later and removes it itself. That holds across workers and replicas,
    which share only the database and the store. Shielded: a client that hangs up must not leave
    the write done and the check undone.
    """
    key = storage_key + METADATA_SUFFIX
    with anyio.CancelScope(shield=True):
        try:
            await storage.put_bytes(key, data)
        # A full or read-only disk, a directory in the way, a symlink that leads out of the store
        # (ValueError) or loops (RuntimeError, from pathlib): the bytes are served all the same.
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("could not store the PEP 658 metadata of %s: %s", filename, exc)
            return False
        async with sessions() as session:
            in_use = await repo.storage_key_in_use(session, storage_key)
        if not in_use:
            await storage.delete(key)
            log.info("%s was deleted while its PEP 658 metadata was being stored: removed it again", filename)
    return in_use


async def wheel_gives(storage: Storage, storage_key: str, filename: str, metadata_sha256: str) -> bool:
    """Whether the stored wheel's METADATA is the metadata its row records (the metadata file
    itself is known to be missing: ``packhouse check``)."""
    rebuilt = await _rebuild(storage, storage_key, filename)
    return rebuilt is not None and sha256(rebuilt).hexdigest() == metadata_sha256


async def _rebuild(storage: Storage, storage_key: str, filename: str) -> bytes | None:
    """The METADATA inside the stored wheel, or None if the wheel is missing or unreadable."""
    try:
        dist = dists.parse_dist_filename(filename)
    except InvalidDistributionError:
        return None
    if dist.kind is not dists.DistKind.WHEEL:
        return None
    try:
        delivery = await storage.delivery(storage_key)
        if isinstance(delivery, LocalPath):
            meta = await anyio.to_thread.run_sync(dists.read_metadata, delivery.path, dist, filename)
        else:  # an object store: the wheel is fetched into a scratch file (a rare repair)
            with tempfile.TemporaryDirectory(prefix="packhouse-metadata-") as scratch:
                path = Path(scratch) / "wheel"
                with path.open("wb") as fh:
                    async for chunk in storage.open(storage_key):
                        await anyio.to_thread.run_sync(fh.write, chunk)
                meta = await anyio.to_thread.run_sync(dists.read_metadata, path, dist, filename)
    # Missing (or not a regular file: delivery) or damaged; or a symlink put there by hand that
    # leads out of the store (ValueError) or loops (RuntimeError, from pathlib's resolve).
    except (FileNotFoundError, ValueError, RuntimeError, InvalidDistributionError):
        return None
    return meta.raw
