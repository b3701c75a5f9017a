"""Reading stored bytes that may have been damaged by hand.

A package folder (``packhouse run DIR``) and the files folder are ordinary folders: an operator
may put a directory, a FIFO or a symlink (a loop, or one to a file elsewhere) where a stored file
or its PEP 658 metadata file should be. Reading one must never fail with a traceback (or a 500),
nor wait forever: a FIFO opened for reading waits for a writer, and a worker thread stuck there
holds up even a shutdown. So a local store's file is opened only if it is a regular file
(``open_regular_file``); what is there otherwise is reported as ``UnreadableFileError``, saying
what it is. Other stores (S3) hold only objects, read as before.

(``LocalStorage.get_bytes`` and ``open`` should open their files this way themselves; until they
do, the local store's files are opened here, by their path.)
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path

import anyio

from app.storage.base import NotRegularFileError, Storage, open_regular_file
from app.storage.local import CHUNK, LocalStorage


class UnreadableFileError(OSError):
    """Something is stored under the key, but not bytes that can be read: ``str()`` says what
    (a directory, a FIFO, a symlink loop, a symlink out of the store, no permission, ...)."""


async def read_stored(storage: Storage, key: str) -> bytes:
    """The bytes stored under ``key``.

    Raises:
        FileNotFoundError: nothing is stored under ``key``.
        UnreadableFileError: something is, but it is not a regular file that can be read.
    """
    if not isinstance(storage, LocalStorage):
        return await storage.get_bytes(key)
    path = _local_path(storage, key)
    return await anyio.to_thread.run_sync(_read, path, None)


async def stored_sha256(storage: Storage, key: str) -> str:
    """The sha256 (hex) of the bytes stored under ``key``.

    Raises:
        FileNotFoundError: nothing is stored under ``key``.
        UnreadableFileError: something is, but it is not a regular file that can be read.
    """
    if not isinstance(storage, LocalStorage):
        digest = sha256()
        async for chunk in storage.open(key):
            digest.update(chunk)
        return digest.hexdigest()
    path = _local_path(storage, key)
    digest = sha256()
    await anyio.to_thread.run_sync(_read, path, digest.update)  # one thread hop per file
    return digest.hexdigest()


def _local_path(storage: LocalStorage, key: str) -> Path:
    try:
        return storage._path(key)  # refuses a key (or a symlink) that leads outside the store
    except FileNotFoundError as exc:
        if exc.errno == errno.ELOOP:  # the store's resolve_or_missing: missing for a download
            raise UnreadableFileError("a symbolic link loop") from None
        raise
    except RuntimeError:  # pathlib's resolve() on a symlink loop (Python < 3.13)
        raise UnreadableFileError("a symbolic link loop") from None
    except ValueError:
        raise UnreadableFileError("a symbolic link that leads outside the storage folder") from None


def _read(path: Path, consume: Callable[[bytes], object] | None) -> bytes:
    """The file's bytes; or, given ``consume``, each chunk passed to it (and b"" returned)."""
    try:
        with open_regular_file(path) as fh:
            if consume is None:
                return fh.read()
            while chunk := fh.read(CHUNK):
                consume(chunk)
            return b""
    except FileNotFoundError:
        raise
    except NotRegularFileError as exc:
        raise UnreadableFileError(str(exc)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFileError("a symbolic link loop") from None
        raise UnreadableFileError(f"it cannot be read ({exc.strerror or exc})") from None
