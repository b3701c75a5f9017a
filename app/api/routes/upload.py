"""The legacy upload API (``POST /`` and ``POST /legacy/``), as twine, flit, uv, hatch and poetry use it.

The upload URL answers directly and never redirects: twine and poetry abort on any 3xx, and
flit's requests would turn a redirected POST into a GET.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.background import BackgroundTask

from app.api.deps import UploadDep, UploadIdentity
from app.auth.policy import Identity
from app.services.upload import UploadService

router = APIRouter(tags=["upload"])

_FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [":action", "protocol_version", "name", "version", "content"],
                    "properties": {
                        ":action": {"type": "string", "enum": ["file_upload", "remove_pkg"]},
                        "protocol_version": {"type": "string", "enum": ["1"]},
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "filetype": {"type": "string", "enum": ["bdist_wheel", "sdist"]},
                        "pyversion": {"type": "string"},
                        "metadata_version": {"type": "string"},
                        "md5_digest": {"type": "string"},
                        "sha256_digest": {"type": "string"},
                        "blake2_256_digest": {"type": "string"},
                        "content": {"type": "string", "format": "binary"},
                    },
                }
            }
        },
    }
}
_UPLOAD_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "Stored (or an identical file was already stored).", "content": {"text/plain": {}}},
    400: {"description": "Invalid form, filename, digest or distribution (problem+json)."},
    401: {"description": "Credentials required or wrong."},
    403: {"description": "Uploads are not allowed for this user or anonymously."},
    404: {"description": "remove_pkg: no such project or release."},
    408: {"description": "The client stopped sending the body (--body-timeout)."},
    409: {"description": "File already exists with other contents."},
    410: {"description": "Unsupported legacy action (doc_upload, submit_pkg_info)."},
    413: {"description": "Upload larger than --max-upload-size."},
    415: {"description": "Not multipart/form-data."},
}


async def upload(request: Request, uploads: UploadDep, who: UploadIdentity) -> Response:
    """Upload one distribution file (``:action=file_upload``)."""
    return await upload_response(uploads, request, who)


async def upload_response(uploads: UploadService, request: Request, who: Identity | None) -> Response:
    """The route's answer (and app/api/fastpath.py's, which calls it before FastAPI routes).

    Raises:
        PackageIndexError subclasses (the error table maps them), ClientDisconnect.
    """
    uploads.check_content_length(request.headers.get("content-length"))
    result = await uploads.handle(request.headers.get("content-type"), request.stream(), who.username if who else None)
    # Once the answer is sent, the store prepares for the next upload (Storage.replenish).
    return PlainTextResponse(result.message, background=BackgroundTask(uploads.replenish))


for path, in_schema in (("/", True), ("/legacy/", True), ("/legacy", False)):
    router.add_api_route(
        path,
        upload,
        methods=["POST"],
        summary="Upload a distribution (legacy upload API)",
        responses=_UPLOAD_RESPONSES,
        openapi_extra=_FORM_SCHEMA,
        include_in_schema=in_schema,
        operation_id=f"upload_{path.strip('/') or 'root'}",
    )
