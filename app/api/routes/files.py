"""Distribution files and their PEP 658 metadata, at stable query-free URLs."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.responses import MalformedRangeHeader

from app.api.conditional import field, none_match
from app.api.deps import DownloadIdentity, FileDep
from app.api.streaming import stream_response
from app.auth.policy import Action
from app.services.files import FileDownload
from app.storage.base import LocalPath, ObjectStream

router = APIRouter(tags=["files"])

# Files never change once published (a filename is never reused with other bytes).
FILE_CACHE_CONTROL = "public, max-age=31536000, immutable"
# When downloads need a login: kept by the client (pip's and uv's caches, a browser), never by a
# shared cache, which would hand a file fetched with a login to anyone who asks for its URL for a
# year ("public" lets a shared cache store a response to a request with credentials: RFC 9111 3.5).
PRIVATE_FILE_CACHE_CONTROL = "private, max-age=31536000, immutable"
_FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "The file.", "content": {"application/octet-stream": {}}},
    206: {"description": "Partial content (Range request)."},
    304: {"description": "Not modified."},
    404: {"description": "No such file."},
}


@dataclass(frozen=True, slots=True)
class Offload:
    """Let the front server send local files (zero-copy), set from PACKHOUSE_X_ACCEL_REDIRECT or
    PACKHOUSE_X_SENDFILE. The app still decides who may download and answers 304s; only the bytes
    move to nginx (``location /_packhouse_files/ { internal; alias <files dir>/; }``) or Apache."""

    accel_prefix: str | None = None
    sendfile: bool = False
    root: Path | None = None

    def headers(self, path: Path) -> dict[str, str] | None:
        if self.accel_prefix and self.root is not None:
            key = path.relative_to(self.root).as_posix()
            return {"X-Accel-Redirect": self.accel_prefix.rstrip("/") + "/" + quote(key)}
        if self.sendfile:
            return {"X-Sendfile": str(path)}
        return None


class LargeChunkFileResponse(FileResponse):
    # Starlette reads 64 KiB per worker-thread hop; 1 MiB makes a large download several times
    # cheaper per byte (fewer hops and fewer, larger socket writes) at a bounded 1 MiB per download.
    chunk_size = 1024 * 1024

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        """Starlette answers 400 text/plain to a Range it cannot use. RFC 9110 14.2: a server MUST
        ignore one in a unit it does not know (``items=0-1``), and MAY ignore a malformed one
        (``bytes=abc``, ``bytes=10-5``): both get the whole file (200), as from object storage
        (app/api/streaming.py). An unsatisfiable range still answers 416."""
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []  # no range: the whole file


def deliver(request: Request, found: FileDownload) -> Response:
    etag = f'"{found.sha256}"'
    private = Action.DOWNLOAD in request.app.state.policy.required
    headers = {
        "ETag": etag,
        "Cache-Control": PRIVATE_FILE_CACHE_CONTROL if private else FILE_CACHE_CONTROL,
        "Last-Modified": format_datetime(found.modified, usegmt=True),
    }
    if none_match(field(request.headers, "if-none-match"), [etag]):
        return Response(status_code=304, headers=headers)
    if found.data is not None or found.delivery is None:
        return Response(found.data, media_type="application/octet-stream", headers=headers)
    if isinstance(found.delivery, LocalPath):
        offload: Offload | None = getattr(request.app.state, "file_offload", None)
        if offload is not None and (extra := offload.headers(found.delivery.path)):
            return Response(media_type="application/octet-stream", headers={**headers, **extra})
        # FileResponse answers HEAD and Range (206) itself; never a Content-Encoding.
        return LargeChunkFileResponse(
            found.delivery.path,
            media_type="application/octet-stream",
            headers=headers,
            filename=None,
            stat_result=found.delivery.stat,
        )
    if isinstance(found.delivery, ObjectStream):
        return stream_response(request, found.delivery, headers)  # HEAD and Range handled there
    return RedirectResponse(found.delivery.url, status_code=302, headers={"Cache-Control": "no-store"})


async def download(request: Request, project: str, filename: str, files: FileDep, _who: DownloadIdentity) -> Response:
    """A distribution file, or with ``.metadata`` appended its core metadata (PEP 658).
    HEAD and Range requests (206) are answered too: uv reads wheel metadata that way."""
    return deliver(request, await files.find(project, filename))


router.add_api_route("/files/{project}/{filename}", download, methods=["GET"], responses=_FILE_RESPONSES)
router.add_api_route(
    "/files/{project}/{filename}", download, methods=["HEAD"], include_in_schema=False, operation_id="head_file"
)
