"""pypiserver's fallback: send clients asking for an unknown project to another index.

Off unless ``--fallback-url`` is given. pypiserver redirects to PyPI by default, which is a
dependency-confusion trap: anyone who registers your private project's name on the public index gets
their code installed by your clients. Turn it on only towards an index you control.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from app.api.errors import problem
from app.errors import ProjectNotFoundError


def install_fallback(app: FastAPI, fallback_url: str) -> None:
    base = fallback_url.rstrip("/")

    async def on_unknown_project(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProjectNotFoundError)
        project = request.path_params.get("project")
        if not project:
            return problem(404, exc.title, exc.detail)
        return RedirectResponse(f"{base}/{quote(project)}/", status_code=302)

    app.add_exception_handler(ProjectNotFoundError, on_unknown_project)
