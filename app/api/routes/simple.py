"""PEP 503 / PEP 691 simple pages, under /simple/ and (pypiserver-style) at the root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import Headers

from app import dists
from app.api.conditional import accepts_coding, any_tag, field, none_match
from app.api.deps import IndexDep, ListIdentity
from app.api.errors import problem_response
from app.errors import InvalidDistributionError, NotFoundError
from app.services.index import IndexService, Page
from app.simple.negotiate import MediaType, negotiate

router = APIRouter(tags=["simple"])

PAGE_CACHE_CONTROL = "max-age=0, must-revalidate"  # cheap to revalidate: 304 from the serial
FormatQuery = Query(
    None,
    alias="format",
    description="Override content negotiation with a media type.",
    json_schema_extra={
        "enum": [m.value for m in MediaType] + [f"application/vnd.pypi.simple.latest+{k}" for k in ("json", "html")]
    },
)  # documented values; anything else answers 406

_SIMPLE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "PEP 503 HTML or PEP 691 JSON, chosen by the Accept header or ?format=.",
        "content": {m.value: {} for m in MediaType},
    },
    301: {"description": "Redirect to the normalised project URL (PEP 503)."},
    304: {"description": "Not modified (If-None-Match matched the ETag)."},
    401: problem_response("Credentials required or wrong."),
    403: problem_response("Not allowed."),
    404: problem_response("No such project."),
    406: problem_response("None of the requested media types is available."),
    422: problem_response("Invalid query parameter."),
}


def _fmt(request: Request, format_: str | None) -> MediaType:
    return negotiate(field(request.headers, "accept"), format_)


def _gzip_etag(etag: str) -> str:
    """The gzip form's tag: a content coding is another representation, with a strong tag of its
    own (RFC 9110 8.8.3.3 gives this very example: "xyzzy" and "xyzzy-gzip")."""
    return etag[:-1] + '-gzip"'


def _takes_gzip(request_headers: Headers) -> bool:
    return accepts_coding(field(request_headers, "accept-encoding"), "gzip")


def _sent_etag(request_headers: Headers, page: Page) -> str:
    """The tag of the form of ``page`` this client is sent: the gzip form exists only for pages
    large enough to be worth compressing (app/services/index.py)."""
    return _gzip_etag(page.etag) if page.gzipped is not None and _takes_gzip(request_headers) else page.etag


async def _not_modified(
    request_headers: Headers, etag: str | None, page: Callable[[], Awaitable[Page]]
) -> Response | None:
    """304 when the client holds the page as it is now, in a form it would be sent now: the gzip
    form's tag counts only if it takes gzip (a client that does not would get the other form).
    The 304 carries the tag the client holds; for ``*`` (any form), the tag of the form it would
    be sent, which needs the page (cached, and ``*`` is rare): only pages of 1 KiB or more have a
    gzip form."""
    if etag is None:
        return None
    if_none_match = field(request_headers, "if-none-match")
    if not _takes_gzip(request_headers):
        held = none_match(if_none_match, [etag])
    elif any_tag(if_none_match):
        held = _sent_etag(request_headers, await page())
    else:
        held = none_match(if_none_match, [_gzip_etag(etag), etag])
    return None if held is None else Response(status_code=304, headers=_headers(held))


def _headers(etag: str) -> dict[str, str]:
    return {"ETag": etag, "Vary": "Accept, Accept-Encoding", "Cache-Control": PAGE_CACHE_CONTROL}


def render(request: Request, page: Page) -> Response:
    return _render(request.headers, page)


def _render(request_headers: Headers, page: Page) -> Response:
    if page.gzipped is not None and _takes_gzip(request_headers):
        headers = _headers(_gzip_etag(page.etag))
        headers["Content-Encoding"] = "gzip"
        return Response(page.gzipped, media_type=page.media_type.value, headers=headers)
    return Response(page.body, media_type=page.media_type.value, headers=_headers(page.etag))


@router.get("/simple/", responses=_SIMPLE_RESPONSES, summary="Project list (PEP 503 / PEP 691)")
async def simple_index(
    request: Request, index: IndexDep, _who: ListIdentity, format: str | None = FormatQuery
) -> Response:
    fmt = _fmt(request, format)
    if "if-none-match" in request.headers and (
        not_modified := await _not_modified(
            request.headers, await index.index_etag(fmt), partial(index.index_page, fmt)
        )
    ):
        return not_modified
    return render(request, await index.index_page(fmt))


def _normalized(project: str) -> str:
    """The project's normalised name (PEP 503).

    Raises:
        NotFoundError: not a valid project name (``favicon.ico`` is, ``..`` is not): no project
            is ever called that, and no redirect would lead to one.
    """
    try:
        return dists.check_project_name(project)
    except InvalidDistributionError:
        raise NotFoundError(
            f"No project named {project!r} on this index: project names are ASCII letters, digits, "
            "'.', '-' and '_', starting and ending with a letter or digit."
        ) from None


def query_suffix(request: Request) -> str:
    return f"?{request.url.query}" if request.url.query else ""


async def _project(request: Request, index: IndexDep, project: str, format: str | None, base: str) -> Response:
    if (name := _normalized(project)) != project:
        # PEP 503: redirect to the normalised URL (relative, so it survives reverse proxies).
        return RedirectResponse(f"../{name}/{query_suffix(request)}", status_code=301)
    return await project_response(index, request.headers, name, _fmt(request, format), base)


async def project_response(
    index: IndexService, request_headers: Headers, name: str, fmt: MediaType, base: str
) -> Response:
    """A normalised project's page, or 304 (the route, and the fast path in app/api/fastpath.py).

    Raises:
        ProjectNotFoundError: no such project (-> 404).
    """
    if "if-none-match" in request_headers and (
        not_modified := await _not_modified(
            request_headers, await index.project_etag(name, fmt, base), partial(index.project_page, name, fmt, base)
        )
    ):
        return not_modified
    return _render(request_headers, await index.project_page(name, fmt, base))


@router.get("/simple/{project}/", responses=_SIMPLE_RESPONSES, summary="Project page (PEP 503 / PEP 691)")
async def simple_project(
    request: Request, project: str, index: IndexDep, _who: ListIdentity, format: str | None = FormatQuery
) -> Response:
    return await _project(request, index, project, format, "../../files/")


@router.get("/simple", include_in_schema=False)
async def simple_no_slash(request: Request) -> Response:
    return RedirectResponse(f"simple/{query_suffix(request)}", status_code=301)


@router.get("/simple/{project}", include_in_schema=False)
async def simple_project_no_slash(request: Request, project: str) -> Response:
    return RedirectResponse(f"{_normalized(project)}/{query_suffix(request)}", status_code=301)


root_router = APIRouter(tags=["simple"])


@root_router.get(
    "/{project}/", responses=_SIMPLE_RESPONSES, summary="Project page at the root (pypiserver compatibility)"
)
async def root_project(
    request: Request, project: str, index: IndexDep, _who: ListIdentity, format: str | None = FormatQuery
) -> Response:
    """``pip install --index-url http://host:port`` (no /simple/) asks for ``/<project>/``."""
    return await _project(request, index, project, format, "../files/")


@root_router.get("/{project}", include_in_schema=False)
async def root_project_no_slash(request: Request, project: str) -> Response:
    return RedirectResponse(f"{_normalized(project)}/{query_suffix(request)}", status_code=301)
