"""pypiserver's file URLs, kept so old requirements files and ``pip --find-links`` lines still work:
``/packages/<filename>``, ``/packages/<subfolder>/<filename>`` (a file in a subfolder of a package
folder) and ``/packages/`` (every file, as ``<a href="<path>#sha256=...">`` anchors)."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.api.deps import DownloadIdentity, FileDep, IndexDep, ListIdentity
from app.api.routes import simple
from app.api.routes.files import _FILE_RESPONSES, deliver
from app.services.files import find_by_filename, find_by_path, folder_links, serves_folders

router = APIRouter(tags=["files"])
_YANKED = ' data-yanked=""'  # PEP 592, which pip honours on --find-links pages too


async def pypiserver_file(request: Request, filename: str, files: FileDep, _who: DownloadIdentity) -> Response:
    """A file by its name alone, as pypiserver served it."""
    return deliver(request, await find_by_filename(files, filename))


async def pypiserver_nested_file(
    request: Request, subdir: str, filename: str, files: FileDep, _who: DownloadIdentity
) -> Response:
    """A file in a subfolder of a package folder (``packhouse run``), at the path pypiserver gave it."""
    return deliver(request, await find_by_path(files, f"{subdir}/{filename}"))


async def pypiserver_listing(request: Request, files: FileDep, index: IndexDep, who: ListIdentity) -> Response:
    """Every file of the package folders (``packhouse run``), as pypiserver listed them: for
    ``pip install --find-links http://host/packages/``. With ``packhouse serve`` there are no
    package folders, and the path is the root-style page of a project named "packages"."""
    if not serves_folders(files):
        return await simple.root_project(request, "packages", index, who, None)
    links = "".join(
        f'<a href="{escape(quote(path))}#sha256={sha256}"{_YANKED if yanked else ""}>{escape(path)}</a><br>\n'
        for path, sha256, yanked in await folder_links(files)
    )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of packages</title></head>\n'
        f"<body><h1>Index of packages</h1>\n{links}</body></html>\n"
    )
    return HTMLResponse(page, headers={"Cache-Control": simple.PAGE_CACHE_CONTROL})


router.add_api_route(
    "/packages/",
    pypiserver_listing,
    methods=["GET"],
    response_class=HTMLResponse,
    responses={k: v for k, v in simple._SIMPLE_RESPONSES.items() if k not in (301, 422)},  # serve: as /{project}/
)
router.add_api_route("/packages/{filename}", pypiserver_file, methods=["GET"], responses=_FILE_RESPONSES)
router.add_api_route(
    "/packages/{filename}",
    pypiserver_file,
    methods=["HEAD"],
    include_in_schema=False,
    operation_id="head_pypiserver_file",
)
router.add_api_route(
    "/packages/{subdir:path}/{filename}", pypiserver_nested_file, methods=["GET"], responses=_FILE_RESPONSES
)
router.add_api_route(
    "/packages/{subdir:path}/{filename}",
    pypiserver_nested_file,
    methods=["HEAD"],
    include_in_schema=False,
    operation_id="head_pypiserver_nested_file",
)
