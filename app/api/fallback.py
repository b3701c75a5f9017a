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
from app.errors import NotFoundError, ProjectNotFoundError

#: The routes of the simple project pages, which the other index answers in kind. The browsing UI
#: and the JSON API (a yank or delete included) answer their own 404 for an unknown project.
SIMPLE_PAGES = ("/simple/{project}/", "/{project}/")


def install_fallback(app: FastAPI, fallback_url: str) -> None:
    base = fallback_url.rstrip("/")

    async def on_unknown_project(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProjectNotFoundError)
        project = request.path_params.get("project")
        if not project or getattr(request.scope.get("route"), "path", None) not in SIMPLE_PAGES:
            if (not_found := request.app.exception_handlers.get(NotFoundError)) is not None:
                return await not_found(request, exc)  # type: ignore[no-any-return]
            return problem(404, exc.title, exc.detail)
        return RedirectResponse(f"{base}/{quote(project)}/", status_code=302)

    app.add_exception_handler(ProjectNotFoundError, on_unknown_project)
