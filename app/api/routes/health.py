"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str
    detail: str | None = None


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health(request: Request) -> Health:
    return Health(status="ok", version=request.app.version)


@router.get(
    "/ready",
    response_model=Health,
    summary="Readiness: database and storage reachable",
    responses={503: {"model": Health, "description": "Database or storage unreachable."}},
)
async def ready(request: Request) -> Health | JSONResponse:
    problem = await request.app.state.readiness()
    if problem:
        body = Health(status="unavailable", version=request.app.version, detail=problem)
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", version=request.app.version)
