"""``packhouse check``: the database rows and the stored bytes agree.

Every file row must have its bytes in storage with the recorded sha256 (and, when its PEP 658
metadata is advertised, a metadata file with the recorded sha256, or a wheel that gives those
bytes: the local store writes the file on the first request for it); every stored blob must belong
to a row (in a pypiserver package folder, only the PEP 658 metadata files Packhouse keeps there:
its other files are their owner's, see ``package_folder``). ``repair`` removes orphan blobs, yanks
rows whose bytes are missing or damaged (so installers skip them, with a reason that says why)
and rebuilds damaged metadata files from their wheel (or, if the wheel cannot give the same
bytes, stops advertising them). Each repair
that changes what clients see is journaled; a rebuilt metadata file changes nothing they see, and is only reported.

Orphans are normal after a crash between "store" and "insert" (DESIGN rule 7), or a delete that
died before removing the bytes. ``--repair`` is safe while the server runs: a blob whose row is
about to commit looks like an orphan for a moment, so only orphans older than ``--grace`` (15
minutes in the CLI) are removed, and each is re-checked against the database just before.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import repo
from app.db.models import File, Project
from app.services.manage import check_actor
from app.services.metadata import METADATA_SUFFIX, core_metadata, wheel_gives
from app.services.stored import UnreadableFileError, stored_sha256
from app.storage.base import Storage

BROKEN_PREFIX = "packhouse check:"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # missing | corrupt | missing-metadata | corrupt-metadata | orphan
    key: str
    filename: str | None
    detail: str
    repaired: bool = False


@dataclass(slots=True)
class CheckReport:
    files: int = 0
    blobs: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unrepaired(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]


class CheckService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], storage: Storage, *, package_folder: bool = False
    ) -> None:
        """``package_folder``: the storage is a pypiserver package folder served in place. Its files
        belong to whoever put them there: one without a row is waiting for the next rescan (or is
        not a distribution at all), never an orphan to remove. Only the PEP 658 metadata files
        Packhouse keeps in its hidden ``.packhouse/metadata/`` (keys ``<key>.metadata``) can be
        orphans there: the metadata file of a file deleted by hand, left by a crash or by a
        version that did not remove it."""
        self.sessions = sessions
        self.storage = storage
        self.package_folder = package_folder

    async def run(self, *, grace: float, repair: bool = False, actor: str | None = None) -> CheckReport:
        """Check every row and every stored blob; with ``repair``, fix what can be fixed (journaled).
        An orphan stored less than ``grace`` seconds ago is reported and kept: an upload stores its
        bytes just before its row commits, so a young orphan may be one in flight.

        Raises:
            PermissionDeniedError: with ``repair``, an ``actor`` the journal cannot record.
        """
        if repair:
            check_actor(actor)
        report = CheckReport()
        async with self.sessions() as session:
            rows = await repo.all_files(session)
        known: set[str] = set()
        for row in rows:
            report.files += 1
            known.add(row.storage_key)
            known.add(row.storage_key + METADATA_SUFFIX)
            for problem in await self._check_row(row):
                if _marked(row, problem):
                    note = f"{problem.detail}; yanked by an earlier check (delete or re-upload it)"
                    problem = Problem(problem.kind, problem.key, row.filename, note, repaired=True)
                elif repair:
                    problem = await self._repair_row(row, problem, actor)
                report.problems.append(problem)
        stored = await self.storage.keys()
        report.blobs = len(stored)
        now = time.time()
        for key, stored_at in sorted(stored.items()):
            if key in known or (self.package_folder and not key.endswith(METADATA_SUFFIX)):
                continue
            detail, age = f"stored blob {key} belongs to no file row", now - stored_at
            if age < grace:
                detail += (
                    f", stored {max(age, 0):.0f} s ago: kept for now, an upload may still be committing its "
                    f"row (--repair removes it once older than --grace {grace:g} s)"
                )
                report.problems.append(Problem("orphan", key, None, detail))
            elif not repair:
                report.problems.append(Problem("orphan", key, None, detail))
            elif (removed := await self._remove_orphan(Problem("orphan", key, None, detail))) is not None:
                report.problems.append(removed)
        return report

    async def _check_row(self, row: File) -> list[Problem]:
        problems = []
        actual = await self._sha256(row.storage_key)
        if actual is None:
            problems.append(Problem("missing", row.storage_key, row.filename, "stored bytes are missing"))
        elif isinstance(actual, UnreadableFileError):
            detail = f"the stored file cannot be read: it is {actual}"
            problems.append(Problem("corrupt", row.storage_key, row.filename, detail))
        elif actual != row.sha256:
            problems.append(
                Problem(
                    "corrupt",
                    row.storage_key,
                    row.filename,
                    f"stored bytes have sha256 {actual}, the row records {row.sha256}",
                )
            )
        if row.metadata_sha256:
            key = row.storage_key + METADATA_SUFFIX
            meta = await self._sha256(key)
            if meta is None:
                # The local store writes it on the first request for it (app/services/metadata.py):
                # a problem only if the wheel cannot give it either.
                if not await wheel_gives(self.storage, row.storage_key, row.filename, row.metadata_sha256):
                    detail = "PEP 658 metadata is missing, and the wheel does not give it"
                    problems.append(Problem("missing-metadata", key, row.filename, detail))
            elif isinstance(meta, UnreadableFileError):
                detail = f"the PEP 658 metadata file cannot be read: it is {meta}"
                problems.append(Problem("corrupt-metadata", key, row.filename, detail))
            elif meta != row.metadata_sha256:
                problems.append(Problem("corrupt-metadata", key, row.filename, f"PEP 658 metadata has sha256 {meta}"))
        return problems

    async def _sha256(self, key: str) -> str | UnreadableFileError | None:
        """The stored bytes' sha256; None if missing; why not, if something else is there (a
        directory, a FIFO, a symlink loop: put there by hand), never waiting on it."""
        try:
            return await stored_sha256(self.storage, key)
        except FileNotFoundError:
            return None
        except UnreadableFileError as exc:
            return exc

    async def _repair_row(self, row: File, problem: Problem, actor: str | None) -> Problem:
        if problem.kind.endswith("metadata") and row.metadata_sha256:
            # Derived data: rebuilt from the wheel when it gives the bytes the row records, as a
            # download would do too (app/services/metadata.py).
            with contextlib.suppress(FileNotFoundError):
                await core_metadata(
                    self.storage, row.storage_key, row.filename, row.metadata_sha256, store_back=self.sessions
                )
                if await self._sha256(problem.key) not in (row.metadata_sha256, None):
                    # What is there could not be replaced (a directory, a symlink out of the
                    # store): downloads are served from the wheel, but it stays a problem.
                    detail = f"{problem.detail}; it could not be replaced with the wheel's: remove it by hand"
                    return Problem(problem.kind, problem.key, problem.filename, detail)
                detail = f"{problem.detail}; rebuilt from the wheel"
                return Problem(problem.kind, problem.key, problem.filename, detail, True)
        async with self.sessions() as session, session.begin():
            current = await session.run_sync(repo.file_by_filename, row.filename)
            if current is None or current.id != row.id:
                return problem  # deleted or replaced meanwhile
            if problem.kind.endswith("metadata"):
                current.metadata_sha256 = None  # clients fall back to reading the wheel itself
                what = "stopped advertising its PEP 658 metadata"
            else:
                current.yanked = True
                current.yanked_reason = f"{BROKEN_PREFIX} {problem.detail}; re-upload or delete it"
                what = "yanked it"
            await session.run_sync(
                repo.record_event,
                current.project_id,
                action="check-broken",
                project=await _project_name(session, current.project_id),
                version=current.version,
                filename=current.filename,
                sha256=current.sha256,
                actor=actor,
                detail=f"{problem.detail}; {what}",
            )
        return Problem(problem.kind, problem.key, problem.filename, f"{problem.detail}; {what}", True)

    async def _remove_orphan(self, problem: Problem) -> Problem | None:
        data_key = problem.key.removesuffix(METADATA_SUFFIX)
        async with self.sessions() as session:
            if await repo.storage_key_in_use(session, data_key):
                return None  # its row committed meanwhile: not an orphan after all
        await self.storage.delete(problem.key)
        return Problem(problem.kind, problem.key, None, f"{problem.detail}; removed", True)


async def _project_name(session: AsyncSession, project_id: int) -> str:
    project = await session.get(Project, project_id)
    return project.normalized_name if project else "?"


def _marked(row: File, problem: Problem) -> bool:
    """A broken row that an earlier ``--repair`` already yanked counts as handled."""
    return problem.kind in ("missing", "corrupt") and (row.yanked_reason or "").startswith(BROKEN_PREFIX)
