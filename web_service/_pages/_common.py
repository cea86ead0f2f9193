"""What every page module uses: role dependencies and the user's backends."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .._app import role
from .._backends import Backend
from .._sessions import Session

__all__ = ["CoordinatorSession", "IgSession", "ProfessionalSession", "backend"]

CoordinatorSession = Annotated[Session, Depends(role("coordinator"))]
ProfessionalSession = Annotated[Session, Depends(role("professional", "ig_officer"))]
IgSession = Annotated[Session, Depends(role("ig_officer"))]


def backend(request: Request, name: str) -> Backend:
    """The shared client of ``linkage``, ``unlock`` or ``audit``."""
    found: Backend = request.app.state.backends[name]
    return found
