"""pypiserver's file URLs, ``/packages/<filename>``, kept so old requirements files still work."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import DownloadIdentity, FileDep
from app.api.routes.files import _FILE_RESPONSES, deliver
from app.services.files import find_by_filename

router = APIRouter(tags=["files"])


async def pypiserver_file(
    request: Request, filename: str, files: FileDep, _who: DownloadIdentity
) -> Response:
    """A file by its name alone, as pypiserver served it."""
    return deliver(request, await find_by_filename(files, filename))


router.add_api_route("/packages/{filename}", pypiserver_file, methods=["GET"], responses=_FILE_RESPONSES)
router.add_api_route(
    "/packages/{filename}",
    pypiserver_file,
    methods=["HEAD"],
    include_in_schema=False,
    operation_id="head_pypiserver_file",
)
