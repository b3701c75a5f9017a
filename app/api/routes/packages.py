"""pypiserver's file URLs, ``/packages/<filename>``, kept so old requirements files still work."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.deps import DownloadIdentity, FileDep
from app.api.routes.files import _FILE_RESPONSES, deliver
from app.services.files import find_by_filename

router = APIRouter(tags=["files"])


@router.api_route("/packages/{filename}", methods=["GET", "HEAD"], responses=_FILE_RESPONSES)
async def pypiserver_file(
    request: Request, filename: str, files: FileDep, _who: DownloadIdentity
) -> Response:
    """A file by its name alone, as pypiserver served it."""
    return deliver(request, await find_by_filename(files, filename))
