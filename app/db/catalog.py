"""Read-side queries for the browsing UI. They never commit and never load a README they don't show.

A project's "listing row" is found through its newest upload (highest file id): the project list
and search match its summary and sort by its time. It is found per project through the
(project_id, version) index, so a page of the A-to-Z list walks the unique name index and stops
after one page, however many projects there are (10,000+). The release shown for a project is its
latest, chosen as on its page and on PyPI (the newest final release not yanked, _latest_releases),
with that release's summary: a 1.0.1 backport uploaded after 2.0 leaves the project listed as 2.0.

A listed release is named as first uploaded, as on the project page and in the simple index
(dists.release_labels): a 1.0.0 file uploaded into release 1.0 is listed as 1.0. One more query per
list (_release_names) finds those names for all the rows at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from packaging.version import Version
from sqlalchemy import Select, case, distinct, func, null, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from app import dists
from app.db.models import File, Project
from app.dists import release_key


@dataclass(frozen=True, slots=True)
class ListingRow:
    name: str
    normalized_name: str
    version: str  # the release, named by its first upload's spelling
    summary: str | None
    upload_time: datetime
    status: str | None = None  # PEP 792; None is active


@dataclass(frozen=True, slots=True)
class Counts:
    projects: int
    releases: int
    files: int


async def counts(session: AsyncSession) -> Counts:
    spellings = select(File.project_id, File.version).distinct().subquery()
    row = (
        await session.execute(
            select(
                select(func.count(distinct(File.project_id))).scalar_subquery(),
                select(func.count()).select_from(spellings).scalar_subquery(),
                select(func.count(File.id)).scalar_subquery(),
            )
        )
    ).one()
    releases = (row[1] or 0) - await _merged_spellings(session)
    return Counts(projects=row[0] or 0, releases=releases, files=row[2] or 0)


async def _merged_spellings(session: AsyncSession) -> int:
    """How many of the distinct (project, version) strings name no release of their own: a 1.0.0
    beside 1.0 is release 1.0 (a release is its version under PEP 440 equality, dists.release_key).

    SQL can't compare versions, so it only narrows the search. Versions are stored canonical
    (``str(Version)``), and two canonical spellings of one version differ only in trailing ``.0``
    release parts (1 / 1.0 / 1.0.0, 2.0a1 / 2.0.0a1, 1!1.0+x / 1!1+x): with every ``.0`` deleted
    they become one string. Only a project with fewer such strings than spellings can hold one
    release under two spellings; only those projects' spellings (a few: 1.0.1 beside 1.1 is one
    too) are read and compared as versions here, not the whole index's.
    """
    key = func.replace(File.version, ".0", "")
    suspects = (
        select(File.project_id)
        .group_by(File.project_id)
        .having(func.count(distinct(File.version)) > func.count(distinct(key)))
    )
    stmt = select(File.project_id, File.version).distinct().where(File.project_id.in_(suspects))
    rows = (await session.execute(stmt)).all()
    return len(rows) - len({(project_id, release_key(version)) for project_id, version in rows})


_Row = tuple[int, str, str, str, str | None, datetime, str | None]  # project id, then ListingRow's fields


# The columns of a _Row, in its order.
_LISTING_COLUMNS = (
    File.project_id,
    Project.name,
    Project.normalized_name,
    File.version,
    File.summary,
    File.upload_time,
    Project.status,
)


def _listing() -> Select[_Row]:
    newest = select(func.max(File.id)).where(File.project_id == Project.id).correlate(Project)
    return select(*_LISTING_COLUMNS).join(File, File.id == newest.scalar_subquery())


async def _listing_rows(session: AsyncSession, rows: Sequence[_Row]) -> list[ListingRow]:
    """The rows, each version replaced by the name of its release (_release_names)."""
    names = await _release_names(session, [(row[0], row[3]) for row in rows])
    return [
        ListingRow(name, normalized, names[project_id, version], summary, time, status)
        for project_id, name, normalized, version, summary, time, status in rows
    ]


async def _release_names(session: AsyncSession, spellings: Iterable[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """(project id, version) -> the name of that version's release: the version of the release's
    first file (lowest id), as dists.release_labels names it for the project page.

    One query for every pair. SQL can't compare versions, so it narrows as _merged_spellings does:
    spellings of one version are one string with every ``.0`` deleted, so only the spellings of these
    projects that match one asked for that way are read (each with its first file's id), and
    compared as versions here (1.0.1 matches 1.1 there, but is another release).
    """
    wanted = set(spellings)
    if not wanted:
        return {}
    key = func.replace(File.version, ".0", "")
    stmt = (
        select(File.project_id, File.version, func.min(File.id))
        .where(
            File.project_id.in_(sorted({project_id for project_id, _ in wanted})),
            key.in_(sorted({version.replace(".0", "") for _, version in wanted})),
        )
        .group_by(File.project_id, File.version)
    )
    first: dict[tuple[int, Version | str], tuple[int, str]] = {}
    for project_id, version, file_id in (await session.execute(stmt)).all():
        release = (project_id, release_key(version))
        if release not in first or file_id < first[release][0]:
            first[release] = (file_id, version)
    # Each pair asked for is a file's, so its release is found. The fallback is for a release deleted
    # between a list's queries: on PostgreSQL (read committed) each query sees what has committed by then.
    return {(p, v): first.get((p, release_key(v)), (0, v))[1] for p, v in wanted}


def _matching(stmt: Select, query: str, normalized_query: str) -> Select:  # type: ignore[type-arg]
    if not query:
        return stmt
    return stmt.where(
        or_(
            Project.normalized_name.contains(normalized_query, autoescape=True),
            File.summary.icontains(query, autoescape=True),
        )
    )


async def search(
    session: AsyncSession,
    query: str,
    normalized_query: str,
    *,
    offset: int,
    limit: int,
    by_recent: bool,
    count: bool = True,
) -> tuple[int | None, list[ListingRow]]:
    """(total matches, one page of rows): name or newest summary contains the query.

    A to Z, except that the project named exactly as asked comes first. ``count=False``: no total
    (None), one scan of the index fewer."""
    stmt = _matching(_listing(), query, normalized_query)
    exact_first = case((Project.normalized_name == normalized_query, 0), else_=1)
    order = (File.id.desc(),) if by_recent else (exact_first, Project.normalized_name)
    # The total rides on the page's rows (a window over every match, counted before the LIMIT):
    # one scan of the index instead of two. A page past the end has no row to carry it.
    matches = (func.count().over() if count else null()).label("matches")
    rows = (
        await session.execute(stmt.add_columns(File.id, matches).order_by(*order).offset(offset).limit(limit))
    ).all()
    total = None
    if count:
        total = rows[0].matches if rows else 0
        if not rows and offset:
            total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    found = await _latest_releases(session, [row[0] for row in rows])
    # The fallback: a project deleted between the queries (PostgreSQL, read committed).
    latest = [found.get(row[0], (row[3], row[7])) for row in rows]
    summaries = await _summaries(
        session, [file_id for (_, file_id), row in zip(latest, rows, strict=True) if file_id != row[7]]
    )
    out = []
    for (label, file_id), row in zip(latest, rows, strict=True):
        _, name, normalized, _version, summary, time, status, _newest, _ = row
        out.append(ListingRow(name, normalized, label, summaries.get(file_id, summary), time, status))
    return total, out


async def _latest_releases(session: AsyncSession, project_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
    """project id -> (its latest release, named as first uploaded; the newest file of that release).

    The latest is chosen as on the project page (dists.pick_latest, as PyPI): the highest final
    version not yanked, else the highest not yanked, else the highest. One query, one row per
    spelling of each version of these projects (SQL can't compare versions)."""
    if not project_ids:
        return {}
    live = func.max(case((File.yanked, 0), else_=1))  # 1: a file of this spelling is not yanked
    stmt = (
        select(File.project_id, File.version, func.min(File.id), func.max(File.id), live)
        .where(File.project_id.in_(sorted(set(project_ids))))
        .group_by(File.project_id, File.version)
    )
    # (project, release) -> [its first file's id and spelling, its newest file's id, any file live]
    releases: dict[tuple[int, Version | str], tuple[int, str, int, bool]] = {}
    for project_id, version, first, newest, not_yanked in (await session.execute(stmt)).all():
        key = (project_id, release_key(version))
        seen = releases.get(key, (first, version, newest, False))
        label = (first, version) if first <= seen[0] else seen[:2]
        releases[key] = (*label, max(newest, seen[2]), seen[3] or bool(not_yanked))
    labels: dict[int, dict[str, tuple[int, bool]]] = {}  # project -> release name -> (newest, live)
    for (project_id, _key), (_first, label, newest, not_yanked) in releases.items():
        labels.setdefault(project_id, {})[label] = (newest, not_yanked)
    out = {}
    for project_id, named in labels.items():
        latest = dists.pick_latest(named, {label for label, (_, live) in named.items() if not live})
        out[project_id] = (latest, named[latest][0])
    return out


async def _summaries(session: AsyncSession, file_ids: Iterable[int]) -> dict[int, str | None]:
    ids = sorted(set(file_ids))
    if not ids:
        return {}
    return dict((await session.execute(select(File.id, File.summary).where(File.id.in_(ids)))).tuples().all())


async def recent_releases(session: AsyncSession, limit: int, window: int = 500) -> list[ListingRow]:
    """The newest releases (project + release name), newest first, by their latest upload.

    Reads only the newest ``window`` files (releases rarely have hundreds of files); falls back to
    grouping every file when that window does not hold ``limit`` releases.
    """
    rows = select(File.id, File.project_id, File.version).order_by(File.id.desc()).limit(window)
    newest = (await session.execute(rows)).all()
    # A release is its version under PEP 440 equality: files 1.0 and 1.0.0 are one release.
    ids: dict[tuple[int, Version | str], int] = {}
    for file_id, project_id, version in newest:
        ids.setdefault((project_id, release_key(version)), file_id)
    chosen = list(ids.values())[:limit]
    if len(chosen) < limit and len(newest) == window:
        chosen = await _recent_by_release(session, limit)
    stmt = (
        select(*_LISTING_COLUMNS)
        .join(File, File.project_id == Project.id)
        .where(File.id.in_(chosen))
        .order_by(File.id.desc())
    )
    return await _listing_rows(session, (await session.execute(stmt)).all())


async def _recent_by_release(session: AsyncSession, limit: int) -> list[int]:
    """The newest file of each of the ``limit`` newest releases, from every file of the index.

    SQL groups by spelling, so the groups are read newest first until ``limit`` releases are met:
    1.0 and 1.0.0 of one project are two groups but one release.
    """
    latest = func.max(File.id)
    grouped = (
        select(latest, File.project_id, File.version).group_by(File.project_id, File.version).order_by(latest.desc())
    )
    ids: dict[tuple[int, Version | str], int] = {}
    result = await session.stream(grouped)
    try:
        async for file_id, project_id, version in result:
            ids.setdefault((project_id, release_key(version)), file_id)
            if len(ids) == limit:
                break
    finally:
        await result.close()
    return list(ids.values())


async def project_by_name(session: AsyncSession, normalized_name: str) -> Project | None:
    stmt = select(Project).where(Project.normalized_name == normalized_name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def files_without_description(session: AsyncSession, project_id: int) -> Sequence[File]:
    """Every file of a project, oldest first; the README column stays in the database."""
    stmt = (
        select(File)
        .where(File.project_id == project_id)
        .options(defer(File.description, raiseload=True))
        .order_by(File.id)
    )
    return (await session.execute(stmt)).scalars().all()


async def description(session: AsyncSession, file_id: int) -> str | None:
    return (await session.execute(select(File.description).where(File.id == file_id))).scalar_one_or_none()
