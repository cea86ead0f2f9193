"""Coordinator pages: the work list of families."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .._app import render
from ._common import CoordinatorSession, backend

__all__ = ["router"]

router = APIRouter()
PAGE = 50


@router.get("/families", response_class=HTMLResponse)
def families(
    request: Request,
    session: CoordinatorSession,
    eligible: str = "yes",
    status: str | None = None,
    offset: int = 0,
) -> HTMLResponse:
    """The latest cycle's families, highest score first."""
    linkage = backend(request, "linkage")
    answer = linkage.get_json(
        "/families",
        session.user.credential,
        eligible={"yes": "true", "no": "false"}.get(eligible),
        status=status or None,
        offset=max(0, offset),
        limit=PAGE,
    )
    return render(
        request,
        "coordinator/families.html",
        title="Families",
        cycle=answer.get("cycle"),
        families=answer.get("families", []),
        next_offset=answer.get("next_offset"),
        offset=offset,
        eligible=eligible,
        status=status or "",
    )
