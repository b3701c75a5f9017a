"""The browsing UI's read side: counts, search, project and release views, rendered READMEs.

Everything a template shows comes from here as frozen data; the templates autoescape every value.
The one piece of HTML produced here is the README, and it is sanitised with nh3 (an allow-list
HTML sanitiser) after readme_renderer, so a README can't carry scripts, event handlers, styles or
``javascript:`` links into the page. Link URLs from metadata are kept only for http(s) and mailto.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from urllib.parse import quote, urlsplit

import anyio
import nh3
from packaging.metadata import parse_email
from packaging.version import InvalidVersion, Version
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import dists
from app.db import catalog, repo
from app.db.base import as_utc
from app.db.models import File, Project
from app.db.serials import Serials, SessionSerials
from app.errors import NotFoundError, ProjectNotFoundError
from app.services.compressed import gzip_bytes, weak_etag
from app.services.lru import Lru
from app.services.metadata import core_metadata
from app.storage.base import Storage

log = logging.getLogger("packhouse.catalog")

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
MAX_PER_PAGE = 100
_README_TAGS = nh3.ALLOWED_TAGS | {"input"}  # GFM task lists
_README_ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "code": {"class"},
    "pre": {"class"},
    "span": {"class"},
    "div": {"class"},
    "input": {"type", "checked", "disabled"},
    "th": {"align"},
    "td": {"align"},
    "a": {"href", "hreflang", "id"},
    "h1": {"id"},
    "h2": {"id"},
    "h3": {"id"},
    "h4": {"id"},
}


@dataclass(frozen=True, slots=True)
class Listing:
    name: str
    normalized_name: str
    version: str  # the release, named as first uploaded (1.0, for a 1.0.0 file in release 1.0)
    summary: str | None
    upload_time: datetime
    status: str = "active"  # PEP 792


@dataclass(frozen=True, slots=True)
class Home:
    projects: int
    releases: int
    files: int
    recent: tuple[Listing, ...]


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str
    page: int
    per_page: int
    total: int
    sort: str
    results: tuple[Listing, ...]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True, slots=True)
class FileView:
    filename: str
    path: str  # URL path below the server root, already quoted: files/<project>/<filename>
    kind: str  # wheel | sdist
    size: int
    sha256: str
    upload_time: datetime
    requires_python: str | None
    yanked: bool
    yanked_reason: str | None


@dataclass(frozen=True, slots=True)
class ReleaseView:
    version: str
    upload_time: datetime  # first upload of this version
    yanked: bool  # every file of it is yanked (PEP 592)
    yanked_reason: str | None
    prerelease: bool


@dataclass(frozen=True, slots=True)
class ProjectView:
    name: str
    normalized_name: str
    version: str  # the release shown
    latest_version: str
    summary: str | None
    readme_html: str | None  # sanitised HTML
    requires_python: str | None
    dependencies: tuple[str, ...]
    urls: tuple[tuple[str, str], ...]  # (label, http(s)/mailto URL)
    uploader: str | None
    release: ReleaseView
    releases: tuple[ReleaseView, ...]  # newest version first
    files: tuple[FileView, ...]  # of the release shown
    status: str = "active"  # PEP 792
    status_reason: str | None = None

    @property
    def is_latest(self) -> bool:
        return self.version == self.latest_version


@dataclass(frozen=True, slots=True)
class ProjectJson:
    """What the PyPI-style JSON API (``/pypi/<project>/json``) says about a project or a release."""

    name: str
    normalized_name: str
    serial: int
    version: str  # the release described (the latest, or the one asked for)
    latest_version: str
    main: File  # the file whose metadata describes the release (a wheel's, if it has one)
    description: str | None
    metadata: dict[str, object]  # core metadata fields read from the stored METADATA (wheels only)
    release: ReleaseView
    releases: dict[str, tuple[File, ...]]  # every release, oldest version first -> its files
    files: tuple[File, ...]  # of the release described
    status: str = "active"  # PEP 792: a quarantined project's files are not offered


#: Bytes of JSON API answers kept per process (a 200-file project's is ~160 KB with its gzip form).
JSON_PAGES_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class JsonPage:
    """A JSON API answer as sent: its bytes, their gzip form and an ETag, for one project serial."""

    serial: int
    body: bytes
    gzipped: bytes
    etag: str

    def weight(self) -> int:
        """Its bytes in memory, as the JSON pages' budget counts them."""
        return len(self.body) + len(self.gzipped)


#: Core metadata fields the JSON API reports from a wheel's stored METADATA, as PyPI's names them
#: (packaging's RawMetadata keys; ``platforms`` is PyPI's ``platform``).
JSON_METADATA_FIELDS = (
    "author", "author_email", "maintainer", "maintainer_email", "license", "license_expression",
    "keywords", "classifiers", "home_page", "download_url", "platforms", "provides_extra", "project_urls",
)  # fmt: skip


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _version_key(text: str) -> tuple[int, Version | str]:
    parsed = _version(text)
    return (1, parsed) if parsed is not None else (0, text)


def _clean_query(query: str) -> str:
    """A search's text: whitespace runs made one space, at most 200 characters."""
    return " ".join(query.split())[:200]


def _listing(row: catalog.ListingRow) -> Listing:
    status = row.status or "active"
    return Listing(row.name, row.normalized_name, row.version, row.summary, as_utc(row.upload_time), status)


#: Longest README rendered as reStructuredText / markdown; a longer one is shown as plain text.
#: docutils holds the GIL throughout (~1 s per 128 KB here, 32 s for 2.4 MB), so its worker
#: thread would stall the whole server; markdown is ~50x faster.
RST_RENDER_LIMIT = 64 * 1024
MARKDOWN_RENDER_LIMIT = 1024 * 1024


#: Limits of the markdown READMEs that are rendered; beyond them a README is shown as plain text.
#: Measured on comrak (readme_renderer's markdown) and nh3, which run in a thread that cannot be
#: stopped: comrak's time grows with the square of the number of HTML tags in one HTML block
#: (40,000 lines of ``<div>x</div>``, 520 KB: 11.8 s; 10,000 tags: 0.18 s), and sanitising with the
#: nesting depth (``> `` repeated 16,000 times, 32 KB: 1.4 s; 200,000 times: minutes). Real READMEs
#: have a few hundred tags and nest a dozen levels at most. comrak also gives each heading an id
#: that no earlier heading has, trying "-1", "-2"... in turn: time grows with the square of the
#: headings of one text (8,000 "# h": 1.6 s; 250,000: more than ten minutes).
README_MAX_DEPTH = 100
README_MAX_TAGS = 10_000
README_MAX_HEADINGS = 2_000

_QUOTES = re.compile(r"^[ \t]*(?:>[ \t]*)+", re.MULTILINE)
# ATX headings ("# title"), and the underlines of setext ones (counted with "---" rules: an overestimate).
_HEADINGS = re.compile(r"^[ >\t]*(?:#{1,6}(?:[ \t]|$)|=+[ \t]*$|-+[ \t]*$)", re.MULTILINE)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*?(/?)>")
# Elements that never hold others, or whose end tag is implied by the next one of their kind.
_FLAT_TAGS = frozenset(
    "area base br col dd dt embed hr img input li link meta option p param source td th tr track wbr".split()
)


def markdown_complexity(text: str) -> tuple[int, int]:
    """(how deep a markdown README nests, at most; how many HTML tags it has). The depth is its
    deepest run of ``>`` markers plus its deepest nesting of raw HTML elements (an overestimate
    where HTML leaves elements open)."""
    quotes = max((match.group().count(">") for match in _QUOTES.finditer(text)), default=0)
    depth = deepest = tags = 0
    for match in _TAG.finditer(text):
        tags += 1
        closing, name, self_closing = match.groups()
        if self_closing or name.lower() in _FLAT_TAGS:
            continue
        depth = max(depth - 1, 0) if closing else depth + 1
        deepest = max(deepest, depth)
    return quotes + deepest, tags


def _too_complex(text: str) -> str | None:
    """Why a markdown README is not rendered (a note for the page), or None."""
    depth, tags = markdown_complexity(text)
    if depth > README_MAX_DEPTH:
        return f"This README nests {depth:,} levels deep, too deep to render: it is shown as plain text."
    if tags > README_MAX_TAGS:
        return f"This README has {tags:,} HTML tags, too many to render: it is shown as plain text."
    if (headings := len(_HEADINGS.findall(text))) > README_MAX_HEADINGS:
        return f"This README has {headings:,} headings, too many to render: it is shown as plain text."
    return None


def render_readme(text: str, content_type: str | None) -> str:
    """README -> sanitised HTML, the way PyPI does it: markdown or reStructuredText, else plain
    text (and plain text too beyond RST_RENDER_LIMIT / MARKDOWN_RENDER_LIMIT characters)."""
    # Imported here: docutils and markdown take ~35 ms to import, a twentieth of the server's cold
    # start, and only a project page of the browsing UI needs them.
    import readme_renderer.markdown
    import readme_renderer.rst
    import readme_renderer.txt

    msg = Message()
    msg["content-type"] = content_type or "text/x-rst"
    kind = msg.get_content_type()
    html: str | None = None
    limit = MARKDOWN_RENDER_LIMIT if kind == "text/markdown" else RST_RENDER_LIMIT
    note = None
    if kind == "text/plain":
        pass
    elif len(text) > limit:
        note = f"This README has {len(text):,} characters, too many to render: it is shown as plain text."
    elif kind == "text/markdown" and (note := _too_complex(text)):
        pass
    else:
        try:
            if kind == "text/markdown":
                html = readme_renderer.markdown.render(text, variant=msg.get_param("variant") or "GFM")  # type: ignore[arg-type]
            else:
                html = readme_renderer.rst.render(text)  # None when the reST does not parse
        except RecursionError:  # docutils, on deeply nested reST (its traceback is thousands of lines)
            log.warning("a %s README nests too deeply to render; shown as plain text", kind)
            note = "This README nests too deeply to render: it is shown as plain text."
        except Exception:  # noqa: BLE001 - any other renderer failure: the page still shows the text
            log.warning("rendering a %s README failed; shown as plain text", kind, exc_info=True)
            note = "This README could not be rendered: it is shown as plain text."
    if html is None:
        html = readme_renderer.txt.render(text)
        if note:
            html = f"<p><em>{note}</em></p>{html}"
    return nh3.clean(
        html,
        tags=_README_TAGS,
        attributes=_README_ATTRIBUTES,
        attribute_filter=_readme_attribute,
        # GFM task-list boxes: never a live field, and labelled for screen readers.
        set_tag_attribute_values={"input": {"disabled": "", "aria-label": "task"}},
        url_schemes=set(SAFE_SCHEMES),
        link_rel="nofollow noopener noreferrer",
    )


def _readme_attribute(tag: str, attribute: str, value: str) -> str | None:
    # GitHub-style heading anchors are empty links (no accessible name), and ``lang="python"`` on
    # code blocks is not a language tag: both fail accessibility checks, neither is needed.
    if tag == "a" and attribute == "href" and value.startswith("#user-content-"):
        return None
    if attribute == "lang":
        return None
    # Raw HTML in a README may name any id, such as the page's own "main" (the skip link's target)
    # or "live" (where the page's script announces): prefixed as the renderer's own ids are, so a
    # README's element can never stand in for one of the page's.
    if attribute == "id" and not value.startswith("user-content-"):
        return "user-content-" + value
    return value


def safe_url(url: str) -> str | None:
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in SAFE_SCHEMES else None


def project_urls(raw: bytes) -> tuple[tuple[str, str], ...]:
    """Home-page, Download-URL and Project-URL entries from core metadata; only safe schemes."""
    try:
        parsed, _ = parse_email(raw.decode("utf-8", "replace"))
    except ValueError:
        return ()
    found: list[tuple[str, str]] = []
    if home := parsed.get("home_page"):
        found.append(("Homepage", home))
    found += list((parsed.get("project_urls") or {}).items())
    if download := parsed.get("download_url"):
        found.append(("Download", download))
    out: list[tuple[str, str]] = []
    for label, url in found:
        if (good := safe_url(url)) and (label, good) not in out:
            out.append((label, good))
    return tuple(out)


def _file_view(f: File, project: str) -> FileView:
    return FileView(
        filename=f.filename,
        path=f"files/{quote(project)}/{quote(f.filename)}",
        kind="wheel" if f.filename.endswith(".whl") else "sdist",
        size=f.size,
        sha256=f.sha256,
        upload_time=as_utc(f.upload_time),
        requires_python=f.requires_python,
        yanked=f.yanked,
        yanked_reason=f.yanked_reason,
    )


def _releases(files: list[File], labels: dict[str, str]) -> list[ReleaseView]:
    """One view per release; ``labels`` (dists.release_labels) puts 1.0.0 files in release 1.0."""
    by_version: dict[str, list[File]] = {}
    for f in files:
        by_version.setdefault(labels[f.version], []).append(f)
    out = []
    for version, group in by_version.items():
        yanked = all(f.yanked for f in group)
        reason = next((f.yanked_reason for f in group if f.yanked_reason), None) if yanked else None
        parsed = _version(version)
        first = min(as_utc(f.upload_time) for f in group)
        out.append(ReleaseView(version, first, yanked, reason, bool(parsed and parsed.is_prerelease)))
    return sorted(out, key=lambda r: _version_key(r.version), reverse=True)


def _describing(files: list[File]) -> File:
    """The file whose README and metadata describe a release (its project page, the JSON API's
    ``info``): a wheel's, which has stored METADATA, else the last one uploaded."""
    return next((f for f in files if f.metadata_sha256), files[-1])


class CatalogService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        cache_size: int = 512,
        serials: Serials | None = None,
    ) -> None:
        self.sessions = sessions
        self.storage = storage
        self.serials: Serials = serials or SessionSerials(sessions)
        # JSON API answers by (project, version asked for, variant): reused while the project's
        # serial is the one they were made at, as the simple pages are (app/services/index.py).
        self._json_pages: Lru[tuple[str, str | None, str], JsonPage] = Lru(JSON_PAGES_BYTES, JsonPage.weight)
        # Keyed by (file id, sha256): a file row never changes, and an id reused after a deletion
        # comes with other bytes.
        self._readmes: Lru[tuple[int, str], str | None] = Lru(cache_size)  # -> sanitised HTML
        self._urls: Lru[tuple[int, str], tuple[tuple[str, str], ...]] = Lru(cache_size)
        self._json_fields: Lru[tuple[int, str], dict[str, object]] = Lru(cache_size)
        self._home: tuple[int, int, Home] | None = None  # (journal serial, recent, the page's figures)

    async def home(self, recent: int = 10) -> Home:
        """The home page's counts and newest releases, computed again only after the journal moved:
        every change to the files (upload, yank, delete, a folder rescan) is a journal entry, and
        counting releases under PEP 440 equality reads every file's version (~25 ms at 39,000 files)."""
        async with self.sessions() as session:
            serial = await repo.last_serial(session)
            if (cached := self._home) is not None and cached[:2] == (serial, recent):
                return cached[2]
            counts = await catalog.counts(session)
            rows = await catalog.recent_releases(session, recent)
        home = Home(counts.projects, counts.releases, counts.files, tuple(_listing(r) for r in rows))
        self._home = (serial, recent, home)
        return home

    async def search(self, query: str, page: int = 1, per_page: int = 50, sort: str = "name") -> SearchResult:
        """Projects whose name or summary contains ``query``, by name (or most recently updated)."""
        query = _clean_query(query)
        per_page = min(max(per_page, 1), MAX_PER_PAGE)
        page = max(page, 1)
        sort = "updated" if sort == "updated" else "name"
        total, rows = await self._search(query, (page - 1) * per_page, per_page, by_recent=sort == "updated")
        assert total is not None
        return SearchResult(query, page, per_page, total, sort, tuple(rows))

    async def _search(
        self, query: str, offset: int, limit: int, *, by_recent: bool, count: bool = True
    ) -> tuple[int | None, list[Listing]]:
        async with self.sessions() as session:
            total, rows = await catalog.search(
                session,
                query,
                dists.normalize(query) if query else "",
                offset=offset,
                limit=limit,
                by_recent=by_recent,
                count=count,
            )
        return total, [_listing(r) for r in rows]

    async def search_terms(self, terms: list[str], *, any_term: bool, limit: int = 1000) -> list[Listing]:
        """The projects that any (or every) term finds by name or summary, as ``search`` finds
        them, ordered by normalised name; at most ``limit`` a term (``pip search``)."""
        found: list[dict[str, Listing]] = []
        for term in terms:
            # One query for up to ``limit`` hits, and no total: each query scans the index once.
            _, rows = await self._search(_clean_query(term), 0, limit, by_recent=False, count=False)
            found.append({listing.normalized_name: listing for listing in rows})
        if not found:
            return []
        if any_term:
            merged = {key: listing for hits in found for key, listing in hits.items()}
        else:
            merged = {key: listing for key, listing in found[0].items() if all(key in hits for hits in found)}
        return [merged[key] for key in sorted(merged)]

    @staticmethod
    async def _find(
        session: AsyncSession, name: str, version: str | None
    ) -> tuple[Project, list[File], dict[str, str], list[ReleaseView], str, ReleaseView]:
        """A project's files (oldest first), their release labels, its releases (newest first),
        its latest release, and the release asked for (``version``; None: the latest).

        Raises:
            ProjectNotFoundError: no such project, or it has no files.
            NotFoundError: the project has no such version.
        """
        project = await catalog.project_by_name(session, name)
        files = list(await catalog.files_without_description(session, project.id)) if project else []
        if project is None or not files:
            raise ProjectNotFoundError(f"No project named {name!r} on this index.")
        # Files come oldest first: a release is named as first uploaded (dists.release_labels).
        labels = dists.release_labels(f.version for f in files)
        releases = _releases(files, labels)
        latest = dists.pick_latest([r.version for r in releases], {r.version for r in releases if r.yanked})
        shown = version or latest
        wanted = _version(shown)  # 1.0 finds 1.0.0: PEP 440 equality, not string equality
        release = next((r for r in releases if r.version == shown or _version(r.version) == wanted), None)
        if release is None:
            raise NotFoundError(f"{project.name} has no version {version!r} on this index.")
        return project, files, labels, releases, latest, release

    async def project(self, name: str, version: str | None = None) -> ProjectView:
        """The project page (latest release) or a release page.

        Raises:
            ProjectNotFoundError: no such project, or it has no files.
            NotFoundError: the project has no such version.
        """
        async with self.sessions() as session:
            project, files, labels, releases, latest, release = await self._find(session, name, version)
            shown = release.version
            chosen = [f for f in files if labels[f.version] == shown]
            main = _describing(chosen)
            readme = await self._readme(session, main)
        urls = await self._project_urls(main)
        return ProjectView(
            name=project.name,
            normalized_name=project.normalized_name,
            version=shown,
            latest_version=latest,
            summary=main.summary,
            readme_html=readme,
            requires_python=main.requires_python,
            dependencies=tuple(json.loads(main.requires_dist or "[]")),
            urls=urls,
            uploader=main.uploader,
            release=release,
            releases=tuple(releases),
            files=tuple(_file_view(f, project.normalized_name) for f in chosen),
            status=project.status or "active",
            status_reason=project.status_reason,
        )

    async def json_api(self, name: str, version: str | None = None) -> ProjectJson:
        """A project (its latest release) or one release, for the JSON API.

        Raises:
            ProjectNotFoundError: no such project, or it has no files.
            NotFoundError: the project has no such version.
        """
        async with self.sessions() as session:
            project, files, labels, releases, latest, release = await self._find(session, name, version)
            grouped: dict[str, list[File]] = {r.version: [] for r in reversed(releases)}
            for f in files:
                grouped[labels[f.version]].append(f)
            chosen = grouped[release.version]
            main = _describing(chosen)
            description = await catalog.description(session, main.id)
        return ProjectJson(
            name=project.name,
            normalized_name=project.normalized_name,
            serial=project.serial,
            version=release.version,
            latest_version=latest,
            main=main,
            description=description,
            metadata=await self._json_metadata(main),
            release=release,
            releases={label: tuple(group) for label, group in grouped.items()},
            files=tuple(chosen),
            status=project.status or "active",
        )

    async def json_page(
        self, name: str, version: str | None, variant: str, render: Callable[[ProjectJson], bytes]
    ) -> JsonPage:
        """``render(json_api(name, version))``, made once per project serial: a 200-file project's
        answer takes ~100 ms to read and build, its serial a few microseconds. ``variant`` names
        what else ``render`` depends on (the base URL the links are made from, say).

        Raises:
            ProjectNotFoundError, NotFoundError: as json_api.
        """
        key = (name, version, variant)
        serial = await self.serials.project(name)
        if serial is not None and (page := self._json_pages.recall(key)) is not None and page.serial == serial:
            return page
        view = await self.json_api(name, version)
        body = render(view)
        page = JsonPage(view.serial, body, gzip_bytes(body), weak_etag(body))
        # A wheel whose METADATA could not be read gave no fields: not kept, the bytes may come back.
        if view.metadata or not view.main.metadata_sha256:
            self._json_pages.remember(key, page)
        return page

    async def _json_metadata(self, f: File) -> dict[str, object]:
        if (key := (f.id, f.sha256)) in self._json_fields:
            return self._json_fields[key]
        if not f.metadata_sha256:
            return {}
        try:
            raw = await core_metadata(
                self.storage, f.storage_key, f.filename, f.metadata_sha256, store_back=self.sessions
            )
        except FileNotFoundError:
            return {}  # not cached: the bytes may come back (`packhouse check`)
        try:
            parsed, _unparsed = parse_email(raw.decode("utf-8", "replace"))
        except ValueError:
            parsed = {}  # type: ignore[typeddict-item]
        fields = {name: parsed.get(name) for name in JSON_METADATA_FIELDS}  # type: ignore[misc]
        return self._json_fields.remember(key, fields)

    async def _readme(self, session: AsyncSession, f: File) -> str | None:
        if (key := (f.id, f.sha256)) in self._readmes:
            return self._readmes[key]
        text = await catalog.description(session, f.id)
        html = None
        if text and text.strip():  # docutils on a long README takes a while: keep the loop free
            html = await anyio.to_thread.run_sync(render_readme, text, f.description_content_type)
        return self._readmes.remember(key, html)

    async def _project_urls(self, f: File) -> tuple[tuple[str, str], ...]:
        if (key := (f.id, f.sha256)) in self._urls:
            return self._urls[key]
        if not f.metadata_sha256:
            return ()
        try:
            raw = await core_metadata(
                self.storage, f.storage_key, f.filename, f.metadata_sha256, store_back=self.sessions
            )
        except FileNotFoundError:
            return ()  # not cached: the bytes may come back (`packhouse check`)
        return self._urls.remember(key, project_urls(raw))
