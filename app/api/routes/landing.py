"""``GET /``: a short page with the pip, uv and twine set-up for this very server."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

router = APIRouter(tags=["web"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[2] / "web" / "templates")


@router.get("/", response_class=HTMLResponse, summary="Landing page with client set-up snippets")
async def landing(request: Request) -> HTMLResponse:
    base = str(request.base_url)
    if not base.endswith("/"):
        base += "/"
    host = request.url.hostname or "localhost"
    return templates.TemplateResponse(
        request,
        "landing.html",
        {
            "version": request.app.version,
            "base_url": base.rstrip("/"),
            "simple_url": base + "simple/",
            "upload_url": base + "legacy/",
            "trusted_host": host if request.url.scheme == "http" else None,
            "projects": None,
        },
    )
