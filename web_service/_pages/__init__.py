"""The pages, one router per role: ``coordinator``, ``professional``, ``ig``."""

from __future__ import annotations

from fastapi import FastAPI

from . import coordinator, professional

__all__ = ["register"]


def register(app: FastAPI) -> None:
    """Add every page router to ``app``."""
    app.include_router(coordinator.router)
    app.include_router(professional.router)
