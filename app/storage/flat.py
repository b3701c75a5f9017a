"""A pypiserver-compatible package folder as storage (``packhouse run PACKAGES_DIR``).

The folder stays a valid pypiserver folder: distribution files sit in it under their own names (flat,
or in the subfolders pypiserver also reads), and everything Packhouse adds lives in one hidden
subfolder, ``.packhouse/`` (temporary uploads, PEP 658 metadata files, the SQLite database), which
pypiserver ignores. Switching back to pypiserver is therefore just pointing it at the same folder.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import aiofiles.os
import anyio

from app.storage.local import LocalStorage, listed_mtime, resolve_or_missing

STATE_DIR = ".packhouse"
METADATA_SUFFIX = ".metadata"
METADATA_DIR = f"{STATE_DIR}/metadata"  # <key>.metadata: the PEP 658 metadata file of <key>


class FlatLocalStorage(LocalStorage):
    """``root`` receives uploads; ``extra_roots`` (pypiserver's further PACKAGES_DIRs) are served
    read-only, their files keyed ``@N/<relative path>`` (N from 1)."""

    stages_in_place = False  # keys are the filenames themselves; uploads are staged in .packhouse/tmp

    def __init__(self, root: Path, extra_roots: Sequence[Path] = ()) -> None:
        self.root = root.resolve()
        self.extra_roots = [r.resolve() for r in extra_roots]
        self.state = self.root / STATE_DIR
        self.tmp = self.state / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    @property
    def roots(self) -> list[Path]:
        return [self.root, *self.extra_roots]

    def _path(self, key: str) -> Path:
        # PEP 658 metadata files would look like stray files to pypiserver: keep them hidden.
        if key.endswith(METADATA_SUFFIX):
            return super()._path(f"{METADATA_DIR}/{key}")
        if key.startswith("@"):
            extra, named = self._extra(key)
            path = resolve_or_missing(named, key)
            if not path.is_relative_to(extra) or path == extra or "\0" in key:
                raise ValueError(f"storage key {key!r} resolves outside its package folder")
            return path
        path = super()._path(key)
        if path.is_relative_to(self.state):
            raise ValueError(f"storage key {key!r} is inside Packhouse's own {STATE_DIR}/ folder")
        return path

    def _place(self, key: str) -> Path:
        # Packhouse's own files (PEP 658 metadata) as LocalStorage's; the folder's, as they resolve.
        if key.endswith(METADATA_SUFFIX):
            return super()._place(f"{METADATA_DIR}/{key}")
        return self._path(key)

    def _extra(self, key: str) -> tuple[Path, Path]:
        """(its package folder, the path it names, not resolved) for a key ``@N/<relative path>``."""
        n, _, rel = key[1:].partition("/")
        if not n.isdigit() or int(n) < 1 or not rel:
            raise ValueError(f"invalid storage key {key!r}")
        if int(n) > len(self.extra_roots):  # a folder given before, not now: its files are gone
            raise FileNotFoundError(errno.ENOENT, f"package folder #{int(n) + 1} is not given any more", key)
        extra = self.extra_roots[int(n) - 1]
        return extra, extra / rel

    def _link(self, key: str) -> Path | None:
        """The path ``key`` names, not resolved, when it is a symlink (None otherwise)."""
        if key.endswith(METADATA_SUFFIX):
            return None
        link = self._extra(key)[1] if key.startswith("@") else self.root / key
        return link if link.is_symlink() else None

    async def delete(self, key: str) -> None:
        """As pypiserver: a file that is a symlink in the package folder is removed as a link; the
        file it points to stays (it may be another folder's, or the real one beside it)."""
        try:
            self._path(key)  # the same checks as for any key
            link = self._link(key)
        except FileNotFoundError:
            return
        if link is None:
            await super().delete(key)
            if key.endswith(METADATA_SUFFIX) and "/" in key:
                await anyio.to_thread.run_sync(self._prune_metadata_folders, key)
        else:
            await aiofiles.os.remove(link)

    def _prune_metadata_folders(self, key: str) -> None:
        """The subfolders of ``.packhouse/metadata/`` that a deleted metadata file leaves empty (a
        wheel in a subfolder of the package folder has its metadata file in the same subfolder
        there). One that a metadata file is written into meanwhile is not empty, and stays; a write
        that finds its folder just removed fails, and the file is built from the wheel again."""
        base = self.root / METADATA_DIR
        folder = (base / key).parent
        while folder != base and folder.is_relative_to(base):
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone): so are the ones above
                return
            folder = folder.parent

    async def keys(self) -> dict[str, float]:
        """Every file in the package folder (``_walk``), and every PEP 658 metadata file in
        ``.packhouse/metadata/`` under its key, ``<key>.metadata``: ``packhouse check`` finds
        the ones whose file has no row any more."""
        out = await super().keys()
        out.update(await anyio.to_thread.run_sync(self._metadata_keys))
        return out

    def _walk(self) -> list[str]:
        """Every file in the package folder, skipping hidden folders and files (as pypiserver does),
        and visible ``*.metadata`` files, which no key names (``<key>.metadata`` is the hidden PEP
        658 metadata file: ``_path``). Such a file is a stray file of the folder's owner, as a
        README is (pypiserver does not list it, the scan skips it), never one of Packhouse's."""
        out = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            if path.name.endswith(METADATA_SUFFIX):
                continue
            out.append(rel.as_posix())
        return out

    def _metadata_keys(self) -> dict[str, float]:
        """The PEP 658 metadata files (key -> mtime): ``.packhouse/metadata/<key>.metadata``."""
        base = self.root / METADATA_DIR
        out = {}
        for dirpath, _dirnames, filenames in os.walk(base):
            for name in filenames:
                if not name.endswith(METADATA_SUFFIX):
                    continue  # not a file any key names
                path = Path(dirpath, name)
                try:
                    out[path.relative_to(base).as_posix()] = listed_mtime(path)
                except FileNotFoundError:
                    pass  # removed meanwhile
        return out
