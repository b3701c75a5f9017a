"""The legacy upload API, as PyPI's forklift implements it.

Order (DESIGN rule 7): stream to a staged file while hashing and counting; validate the form, the
filename, the digests and the metadata inside the archive; store; insert the row in one
transaction, committed only once the stored bytes are durable (on SQLite the row's statements run
while the store's fsyncs do). A file is visible only once its row commits; the filename's unique
constraint decides races. Every upload stores its bytes under a key of its own, never reused (its
sha256 and a random part, see new_storage_key; or, for an upload the local store staged in place,
the store's own random key): stored bytes are never overwritten, and removing what a deleted or
failed row referred to never removes what another row refers to.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from functools import partial

import anyio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app import dists
from app.db import limits, repo
from app.db.models import File
from app.db.units import FileRef, SessionUnits, Units, run_with_file_commit
from app.errors import (
    DigestMismatchError,
    FileExistsInIndexError,
    GoneError,
    InvalidDistributionError,
    InvalidRequestError,
    StorageFullError,
    UploadTooLargeError,
)
from app.services.form import FileDigests, FormLimits, UploadForm, read_upload_form
from app.services.manage import ManageService, check_actor
from app.storage.base import Storage

log = logging.getLogger("packhouse.upload")


@dataclass(frozen=True, slots=True)
class UploadResult:
    filename: str
    created: bool  # False: the identical file was already there (a re-run of twine upload)

    @property
    def message(self) -> str:
        return f"{'Stored' if self.created else 'Already stored, identical'}: {self.filename}\n"


@dataclass(frozen=True, slots=True)
class RemovalResult:
    """pypiserver's ``:action=remove_pkg``: every file of one release was deleted."""

    filenames: tuple[str, ...]

    @property
    def message(self) -> str:
        return "".join(f"Deleted: {name}\n" for name in self.filenames)


@dataclass(frozen=True, slots=True)
class RegisterResult:
    """``:action=submit`` or ``verify`` (``twine register``, ``setup.py register``): accepted and
    ignored, as pypiserver does, so that scripts registering before they upload keep working."""

    action: str

    @property
    def message(self) -> str:
        return (
            f"Nothing to register ({self.action!r} is accepted and ignored): this index creates a "
            "project with its first upload.\n"
        )


# Archives up to this size are read on the event loop (see _check_file).
INLINE_ARCHIVE_BYTES = 64 * 1024
#: --overwrite: the tries of an upload whose filename a racing upload took first, to replace it.
RACED_OVERWRITE_TRIES = 5


def new_storage_key(sha256_hex: str, filename: str) -> str:
    """A fresh key for one upload's bytes: sha256[:2]/sha256[2:4]/sha256[4:]/<16 hex>/filename.

    Content-addressed as PyPI's, plus 64 random bits of this upload's own. Content-addressed
    alone, a delete racing a re-upload of the very same file (allowed: the same bytes may come
    back) could remove the object the new row points at: the delete checks that no row refers to
    the key, then the upload writes the same key and commits its row, then the delete removes the
    object. No lock in one process prevents that across replicas. With a key per upload, a delete
    (or a failed upload's cleanup) only ever removes the bytes its own row pointed at. The filename
    stays the last part, as clients see it in a presigned URL. Keys of files uploaded by earlier
    versions (without the random part) stay valid: the row records each file's key.
    """
    return f"{sha256_hex[:2]}/{sha256_hex[2:4]}/{sha256_hex[4:]}/{secrets.token_hex(8)}/{filename}"


class UploadService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        *,
        max_upload_size: int,
        overwrite: bool = False,
        body_timeout: float = 60.0,
        flat: bool = False,
        units: Units | None = None,
    ) -> None:
        self.sessions = sessions
        # The upload's check and insert each run as one unit (app/db/units.py).
        self.units = units or SessionUnits(sessions, sessions)
        self.storage = storage
        self.limits = FormLimits(max_file_bytes=max_upload_size, chunk_timeout=body_timeout)
        self.overwrite = overwrite
        self.manage = ManageService(sessions, storage)
        # pypiserver mode: files are stored as PACKAGES_DIR/<filename>, so the folder stays one that
        # pypiserver (and a human) can read; filenames are unique in the index, so keys are too.
        self.flat = flat

    async def replenish(self) -> None:
        """Run after an upload's answer is sent: the store prepares for the next one (blocking and
        short, on the event loop, while the client reads the answer)."""
        try:
            self.storage.replenish()
        except Exception:  # an upload then simply prepares its own file
            log.exception("preparing for the next upload failed")

    def check_content_length(self, content_length: str | None) -> None:
        """Refuse an announced oversized body before reading any of it (-> 413)."""
        if content_length and content_length.isdigit():
            # The form's other fields add a little; allow them on top of the file limit.
            if int(content_length) > self.limits.max_file_bytes + self.limits.max_fields_total:
                raise UploadTooLargeError(
                    f"The upload is {content_length} bytes, over this server's limit of "
                    f"{self.limits.max_file_bytes} bytes (--max-upload-size)."
                )

    async def handle(
        self, content_type: str | None, chunks: AsyncIterator[bytes], uploader: str | None
    ) -> UploadResult | RemovalResult | RegisterResult:
        """Read the form and dispatch on ``:action`` (file_upload; pypiserver's remove_pkg).

        Raises:
            InvalidRequestError, InvalidDistributionError, DigestMismatchError (-> 400),
            GoneError (-> 410), FileExistsInIndexError (-> 409), UploadTooLargeError (-> 413),
            PermissionDeniedError (-> 403, a user name the journal cannot record), NotFoundError
            (-> 404, remove_pkg of an unknown release), RequestTimeoutError (-> 408),
            StorageFullError (-> 507, the disk or the database is full: the database's from app/db/engine.py).
        """
        check_actor(uploader)  # before reading the body: the upload could not be recorded
        try:
            return await self._handle(content_type, chunks, uploader)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise StorageFullError(
                f"The server's disk is full ({exc.strerror}): nothing was stored. Ask the server's operator "
                "to free space, then try again."
            ) from exc

    async def _handle(
        self, content_type: str | None, chunks: AsyncIterator[bytes], uploader: str | None
    ) -> UploadResult | RemovalResult | RegisterResult:
        form = await read_upload_form(content_type, chunks, self.storage, self.limits)
        try:
            action = form.get(":action")
            if action == "file_upload":
                return await self._file_upload(form, uploader)
            if action == "remove_pkg":
                return await self._remove_pkg(form, uploader)
            if action in ("submit", "verify"):
                log.info(
                    "ignored :action=%s for %r (projects are created by their first upload)", action, form.get("name")
                )
                return RegisterResult(action)
            if action in ("doc_upload", "submit_pkg_info"):
                raise GoneError(
                    f"The {action!r} action is not supported (PyPI removed it too): upload "
                    "distribution files with :action=file_upload."
                )
            if action is None:
                raise InvalidRequestError("The form has no ':action' field; use :action=file_upload.")
            raise InvalidRequestError(
                f"Unknown :action {action!r}; use :action=file_upload (or remove_pkg with name and version)."
            )
        finally:
            if form.staged is not None:
                with anyio.CancelScope(shield=True):
                    await self.storage.discard(form.staged)

    async def _remove_pkg(self, form: UploadForm, uploader: str | None) -> RemovalResult:
        """pypiserver compatibility: ``:action=remove_pkg`` with ``name`` and ``version``."""
        name, version = form.get("name"), form.get("version")
        if not name or not version:
            raise InvalidRequestError("remove_pkg needs the 'name' and 'version' fields.")
        change = await self.manage.delete(name, version=version, actor=uploader)
        return RemovalResult(tuple(f.filename for f in change.files))

    async def _file_upload(self, form: UploadForm, uploader: str | None) -> UploadResult:
        if form.staged is None or form.filename is None or form.digests is None:
            raise InvalidRequestError("The form has no file: send the distribution in the 'content' field.")
        # The file is made durable (fsync) while it is checked and the filename is looked up: the
        # store's commit waits for that fsync to finish (Staged.finish() is idempotent), and so
        # does everything here before it returns (nothing is discarded while it runs). A large
        # file's fsync runs in a worker thread of its own; a small one's in the store's fsync pool
        # (Staged.start_finish), which the event loop does not wait on: its check runs right here.
        durable, started = None, None
        if form.digests.size > INLINE_ARCHIVE_BYTES:
            durable = asyncio.ensure_future(anyio.to_thread.run_sync(form.staged.finish))
        else:
            started = form.staged.start_finish()
        try:
            checked = await self._check_file(form)
            if isinstance(checked, UploadResult):
                return checked
            return await self._store(form, uploader, *checked)
        finally:
            if durable is not None:
                with anyio.CancelScope(shield=True):
                    await durable
            elif started is not None and not started.done():  # done by now after a commit
                # Only waited for: a commit's own finish() raises what the fsync raised.
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await asyncio.wrap_future(started)

    async def _check_file(
        self, form: UploadForm
    ) -> UploadResult | tuple[dists.DistFilename, dists.CoreMetadata, FileRef | None]:
        """Validate the staged file and apply the filename rules. Returns the answer for an identical
        re-upload, or what storing needs: the parsed filename, the metadata, the row to replace."""
        assert form.staged is not None and form.filename is not None and form.digests is not None
        filename, digests = form.filename, form.digests
        dist = dists.parse_dist_filename(filename)
        _check_form_identity(form, dist)
        if digests.size == 0:
            raise InvalidDistributionError(f"{filename} is empty (0 bytes); rebuild it and upload again.")
        _check_digests(form, digests)

        meta: dists.CoreMetadata | BaseException
        reuse: tuple[FileRef | None, UploadResult | None] | BaseException
        if digests.size <= INLINE_ARCHIVE_BYTES:
            # A small archive is read right here (~0.1 ms: less than a hop to a worker thread and
            # back), then the filename is looked up.
            meta = dists.read_metadata(form.staged.path, dist, filename, whole=True)
            reuse = await self._check_reuse(filename, digests)
        else:
            # A larger one is read in a worker thread while the filename is looked up.
            meta, reuse = await asyncio.gather(
                anyio.to_thread.run_sync(partial(dists.read_metadata, whole=True), form.staged.path, dist, filename),
                self._check_reuse(filename, digests),
                return_exceptions=True,
            )
            if isinstance(meta, BaseException):
                raise meta  # a broken archive is reported before any filename conflict
        if dists.normalize(meta.name) != dist.name or dists.parse_version(meta.version) != dist.version:
            raise InvalidDistributionError(
                f"The metadata inside {filename} says {meta.name} {meta.version}, which does not "
                "match the filename; rebuild the distribution."
            )
        if problem := dists.requires_python_problem(meta.requires_python):
            raise InvalidDistributionError(
                f"The metadata inside {filename} has Requires-Python {meta.requires_python!r}, which is "
                f"not a PEP 440 version specifier ({problem}); installers would refuse it. Fix "
                "requires-python in pyproject.toml and rebuild the distribution."
            )
        if isinstance(reuse, BaseException):
            raise reuse
        existing, answer = reuse
        if answer is not None:
            # The very file is in the index already (stored before these rules existed, perhaps):
            # re-running an upload still answers 200.
            return answer
        _check_metadata(filename, meta)
        return dist, meta, existing

    async def _store(
        self,
        form: UploadForm,
        uploader: str | None,
        dist: dists.DistFilename,
        meta: dists.CoreMetadata,
        existing: FileRef | None,
    ) -> UploadResult:
        """Store the checked file and insert its row (one transaction)."""
        assert form.staged is not None and form.filename is not None and form.digests is not None
        filename, digests = form.filename, form.digests
        # The local store stages an upload in place, under a key of its own (LocalStorage.stage);
        # otherwise the key is made for this upload alone (new_storage_key: never shared with
        # another row, so no cleanup of another row's bytes can remove this one's).
        key = filename if self.flat else form.staged.key or new_storage_key(digests.sha256, filename)
        # The filename's own spelling is the version. A file whose version equals an existing
        # release's under PEP 440 (1.0.0 when 1.0 is there) is accepted into that release, as PyPI
        # does: releases are matched by Version equality wherever they are read, yanked or deleted
        # (dists.release_key), so it is listed, yanked and deleted with release 1.0.
        row = {
            **repo.file_columns(dist, filename, key, meta, **asdict(digests)),
            "pyversion": _pyversion(form, dist),
            "uploader": uploader,
        }
        sidecars = {}
        staged = form.staged
        if dist.kind is dists.DistKind.WHEEL and staged.key is None:
            # PEP 658: the wheel's METADATA, byte for byte, served at <file URL>.metadata; the row
            # records its sha256. An upload the local store staged in place gets no metadata file
            # now: the first request for it reads it from the wheel, beside it on the same disk,
            # and writes it (app/services/metadata.py). Creating that file was a third of a small
            # upload's disk work. Other stores (an object store, the flat folder) get it now.
            sidecars[key + ".metadata"] = meta.raw
        event = {
            "action": "upload", "project": dist.name, "version": str(dist.version), "filename": filename,
            "sha256": digests.sha256, "actor": uploader,
        }  # fmt: skip
        # meta.name: the project's name as the author wrote it (twine sends the same).
        upload = repo.NewUpload(meta.name, dist.name, row, event)
        _check_lengths(filename, upload)  # before anything is stored

        # An upload the local store staged in place is committed in the worker thread that runs
        # the row's transaction (SQLite): its fsyncs run while the row's statements do, and the row
        # commits once they are done. One thread hop instead of two, and the disk's wait overlaps
        # the SQL. Otherwise the file is committed first, then the row.
        together = staged.key is not None and self.units.in_thread
        if together:
            pass  # below, in the row's transaction
        elif self.flat:
            # Flat names are not content-addressed: claim the name atomically, so two racing uploads
            # (or a file copied in by hand) can never have their bytes replaced.
            form.staged = None  # commit removes it, whatever happens
            try:
                await self.storage.commit(staged, key, sidecars=sidecars, exclusive=existing is None)  # type: ignore[call-arg]
            except FileExistsError:
                raise FileExistsInIndexError(
                    f"File already exists: {filename} is already in the package folder (copied there by "
                    "hand, or being uploaded right now); it is listed after the next rescan."
                ) from None
        else:
            await self.storage.commit(staged, key, sidecars=sidecars)
            form.staged = None  # moved; until then, handle() discards it on any error

        # Started in the transaction's thread before its first statement (BEGIN IMMEDIATE takes the
        # lock then), waited for before it commits.
        commit_file = (lambda: self.storage.start_commit(staged, sidecars)) if together else None

        def replace_and_insert(session: Session, old: FileRef) -> str | None:
            project_id = repo.ensure_project(session, upload.name, upload.normalized_name)
            replaced = self._replace(session, old, project_id, dist.name, uploader)
            repo.add_upload(session, upload, project_id)
            return replaced

        try:
            try:
                if existing is None:
                    await self.units.add_upload(upload, commit_file)
                    replaced = None
                else:
                    replaced = await self.units.write(
                        lambda session: run_with_file_commit(commit_file, lambda: replace_and_insert(session, existing))
                    )
            except BaseException as exc:
                if not isinstance(exc, IntegrityError):
                    await self._forget_stored(key, sidecars, rolled_back=together)
                raise
            form.staged = None  # committed (a worker thread's result comes back even if cancelled)
        except IntegrityError:
            # Another upload of the same filename committed first: same bytes is fine, else 409 (or,
            # under --overwrite, this one replaces it: _replace_raced).
            winner = await self.units.read(lambda session: repo.file_ref(session, filename))
            if winner is None:  # another constraint: nothing refers to what was stored either
                await self._forget_stored(key, sidecars, rolled_back=together)
                raise
            inserted, replaced = False, None
            if winner.storage_key != key and self.overwrite and winner.sha256 != digests.sha256:
                inserted, replaced, winner = await self._replace_raced(key, digests, winner, replace_and_insert)
            if not inserted:
                if winner.storage_key != key:
                    # Our copy lost the race: keep no orphan (identical bytes too: every upload has
                    # a key of its own).
                    await self.manage.forget_blobs([key])
                return self._duplicate(winner, digests, raced=True)
            form.staged = None  # its row is in, under this key: handle() must not remove it
        if replaced is not None:
            await self.manage.forget_blobs([replaced])
        log.info("upload %s (%d bytes, sha256 %s) by %s", filename, digests.size, digests.sha256, uploader or "-")
        return UploadResult(filename, created=True)

    async def _replace_raced(
        self,
        key: str,
        digests: FileDigests,
        winner: FileRef,
        replace_and_insert: Callable[[Session, FileRef], str | None],
    ) -> tuple[bool, str | None, FileRef]:
        """--overwrite: another upload of the same filename committed its row (``winner``) while
        this one was stored under ``key``, which is durable by now. This one, the later, replaces
        it, as it would have a moment later: both clients get their 200 and the file is the last
        one's (a client told to upload again would only have replaced it then).

        Tried a few times: on PostgreSQL two replacements can race in turn. Returns whether this
        upload's row is in, the key of the row it replaced (None if that was deleted meanwhile:
        ``_replace`` finds no row to replace, and the insert alone goes in), and the row that won
        last (the caller answers for it when this one's is not in: the same bytes, or every try
        lost)."""
        filename = winner.filename
        for _ in range(RACED_OVERWRITE_TRIES):
            try:
                replaced = await self.units.write(partial(replace_and_insert, old=winner))
                return True, replaced, winner
            except IntegrityError:
                found = await self.units.read(lambda session: repo.file_ref(session, filename))
                if found is not None and found.sha256 == digests.sha256:
                    return False, None, found  # the same bytes are in: this upload's answer is theirs
                winner = found or winner  # deleted meanwhile: the next try only inserts
            except BaseException:
                await self._forget_stored(key, {}, rolled_back=False)
                raise
        return False, None, winner

    async def _forget_stored(self, key: str, sidecars: dict[str, bytes], *, rolled_back: bool) -> None:
        """The row's insert failed after the store wrote the file: remove what no row refers to.
        ``rolled_back``: the file was committed in the row's own thread (an upload staged in place,
        under a key of its own) and the transaction surely did not commit: its sidecars are removed
        without asking the database, and the file itself by handle(), with ``form.staged``."""
        with anyio.CancelScope(shield=True):
            try:
                if rolled_back:
                    for sidecar in sidecars:
                        await self.storage.delete(sidecar)
                else:
                    await self.manage.forget_blobs([key])
            except Exception:
                log.exception("could not remove %s after its row failed to commit", key)

    async def _check_reuse(self, filename: str, digests: FileDigests) -> tuple[FileRef | None, UploadResult | None]:
        """The filename rules, applied before anything is stored. Returns the row that --overwrite
        will replace, or the answer for an identical re-upload.

        A filename never comes back with other bytes, even after it was deleted (PyPI's rule; the
        journal keeps the deleted sha256). The very bytes that were deleted may come back: that
        restores the file and cannot mislead anyone who pinned its hash. --overwrite lifts both.

        Raises:
            FileExistsInIndexError: other bytes under a live or deleted filename (-> 409).
        """

        existing, deleted = await self.units.lookup(filename)
        if existing is not None and (not self.overwrite or existing.sha256 == digests.sha256):
            return None, self._duplicate(existing, digests)
        if deleted is not None and deleted.sha256 != digests.sha256 and not self.overwrite:
            raise FileExistsInIndexError(
                f"File already exists: {filename} was deleted on {deleted.time:%Y-%m-%d} (sha256 "
                f"{deleted.sha256}) and a filename is never reused with other contents. Bump the "
                "version (or add a build tag to the wheel) and upload again."
            )
        return existing, None

    @staticmethod
    def _replace(session: Session, old: FileRef, project_id: int, project: str, uploader: str | None) -> str | None:
        """--overwrite: drop the old row (its sha256 stays in the journal); return its storage key."""
        current = repo.file_by_filename(session, old.filename)
        if current is None:
            return None
        repo.delete_file(session, current.id)
        repo.record_event(
            session,
            project_id,
            action="overwrite",
            project=project,
            version=current.version,
            filename=current.filename,
            sha256=current.sha256,
            actor=uploader,
            detail=f"replaced {current.filename} (sha256 {current.sha256}) under --overwrite",
        )
        return current.storage_key

    def _duplicate(self, existing: FileRef, digests: FileDigests, *, raced: bool = False) -> UploadResult:
        """``raced``: ``existing`` is another upload's, whose row committed while this one was stored."""
        if hmac.compare_digest(existing.sha256, digests.sha256):
            return UploadResult(existing.filename, created=False)
        if raced and self.overwrite:
            raise FileExistsInIndexError(
                f"File already exists: another upload of {existing.filename} (sha256 {existing.sha256}) "
                "was stored at the same moment as this one, and came first. This server replaces files "
                "(--overwrite): upload again to replace it."
            )
        raise FileExistsInIndexError(
            f"File already exists: {existing.filename} was uploaded before with other contents "
            f"(sha256 {existing.sha256}). A published file never changes: bump the version (or add a "
            "build tag to the wheel) and upload again. (Uploading the same bytes again succeeds, so "
            "re-running an upload of unchanged files works; 'poetry publish --skip-existing' skips changed ones.)"
        )


def _check_form_identity(form: UploadForm, dist: dists.DistFilename) -> None:
    name, version = form.get("name"), form.get("version")
    if not name or not version:
        raise InvalidRequestError("The form needs 'name' and 'version' fields (as twine and flit send).")
    if dists.check_project_name(name) != dist.name:
        raise InvalidDistributionError(
            f"The filename {form.filename} is for project {dist.name!r}, but the form says {name!r}."
        )
    if dists.parse_version(version) != dist.version:
        raise InvalidDistributionError(
            f"The filename {form.filename} is for version {dist.version}, but the form says {version!r}."
        )
    # PyPI refuses a filetype that contradicts the file's extension (forklift/legacy.py,
    # _validate_filename). twine, uv, flit, hatch and poetry derive it from the filename; a form
    # without it (curl, scripts written for pypiserver) is accepted: the filename says what it is.
    filetype = form.get("filetype")
    if filetype and filetype != dist.kind.value:
        kind = "a wheel" if dist.kind is dists.DistKind.WHEEL else "a source distribution"
        shown = filetype if len(filetype) <= 40 else filetype[:30] + "..."
        raise InvalidRequestError(
            f"The form says filetype {shown!r}, but {form.filename} is {kind}: send "
            f"filetype={dist.kind.value} (or leave the field out)."
        )


def _check_metadata(filename: str, meta: dists.CoreMetadata) -> None:
    """What PyPI refuses in core metadata and no current build tool writes. For uploads only: a
    file found in a package folder is indexed as it is (app/services/scan.py)."""
    if problem := dists.metadata_version_problem(meta.metadata_version):
        raise InvalidDistributionError(
            f"The metadata inside {filename} is not valid core metadata: {problem}. Rebuild the "
            "distribution with a current build backend (python -m build, uv build, ...) and upload it again."
        )
    if problem := dists.summary_problem(meta.summary):
        raise InvalidDistributionError(
            f"The metadata inside {filename} is refused: {problem}. A Summary is one line of at most "
            f"{dists.MAX_SUMMARY_CHARS} characters (PyPI's rule too): shorten the project's description "
            "(description in pyproject.toml's [project] table, or setup()'s description=) and rebuild."
        )


def _pyversion(form: UploadForm, dist: dists.DistFilename) -> str | None:
    """The form's pyversion, unless it is too long to store. It is informational (nothing reads it
    back; the filename's tags are what installers use) and the uploading tool writes it from the
    filename, not the author: PyPI stores any length. So an over-long one is not refused; the
    filename's own Python tag is kept instead, if that fits, else none."""
    assert form.filename is not None
    given = form.get("pyversion") or ("source" if dist.kind is dists.DistKind.SDIST else None)
    if limits.fits(File.pyversion, given):
        return given
    own = dists.python_tag(form.filename, dist)
    return own if limits.fits(File.pyversion, own) else None


#: How to fix a value too long to store, by column (the others cannot be too long by then: the
#: filename was checked, keys and digests are made here, the Metadata-Version was validated).
_LENGTH_FIXES = {
    "projects.normalized_name": "choose a shorter project name (name in pyproject.toml's [project] table)",
    "projects.name": "write the name without runs of '.', '-' or '_' (name in pyproject.toml's [project] table)",
    "files.version": "use a shorter version (a local version label, after the '+', is the usual reason)",
    "files.requires_python": "shorten requires-python in pyproject.toml (e.g. '!=3.8.*' instead of many '!=3.8.N')",
    "files.description_content_type": (
        "give the readme a plain content type such as text/markdown (the readme's content-type in pyproject.toml)"
    ),
}


def _check_lengths(filename: str, upload: repo.NewUpload) -> None:
    """Refuse a value too long for its column (PostgreSQL would refuse the row: a 500), on every
    database alike. PyPI keeps these values as unbounded text (and refuses local versions
    outright); the limits are far beyond what build tools write, and each can be fixed by the
    author. pyversion, which the tool writes, is fitted instead (_pyversion)."""
    project = {"normalized_name": upload.normalized_name, "name": upload.name}
    found = [
        *limits.overflows(limits.PROJECTS, project),
        *limits.overflows(limits.FILES, upload.file),
        *limits.overflows(limits.EVENTS, upload.event),
    ]
    if found:
        o = found[0]
        fix = _LENGTH_FIXES.get(o.key, f"shorten the {o.label}")
        raise InvalidDistributionError(
            f"{filename} cannot be stored: {o.describe()}. To upload it, {fix}, "
            "then rebuild the distribution and upload it again."
        )


def _check_digests(form: UploadForm, digests: FileDigests) -> None:
    """Every digest the form sent that was computed must match. SHA-256 is always computed; md5 and
    blake2b-256 only when the form named no sha256_digest before the file (app/services/form.py):
    next to a verified SHA-256 they add nothing."""
    given = {
        "md5_digest": (form.get("md5_digest"), digests.md5),
        "sha256_digest": (form.get("sha256_digest"), digests.sha256),
        "blake2_256_digest": (form.get("blake2_256_digest"), digests.blake2_256),
    }
    if not any(value for value, _ in given.values()):
        raise DigestMismatchError(
            "The form has no digest: send at least one of md5_digest, sha256_digest or blake2_256_digest "
            "(twine, uv, flit, hatch and poetry do). With curl, add "
            "-F sha256_digest=$(sha256sum FILE | cut -d' ' -f1) to the command."
        )
    for field_name, (value, actual) in given.items():
        if value and actual is not None and not hmac.compare_digest(value.strip().lower().encode(), actual.encode()):
            raise DigestMismatchError(
                f"The {field_name} sent ({value}) does not match the received file ({actual}): the "
                "file was damaged in transit or changed after hashing; upload it again."
            )
