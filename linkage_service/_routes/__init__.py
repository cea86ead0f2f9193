"""The linkage service's routes: one ``APIRouter`` per resource, shared dependencies in ``deps``.

Each module holds one resource's routes and only parses, authorises, calls one
plain function (``LinkageService``, a store read, a programme function) and
answers a pydantic model (read views from ``protocols``); ``_api.create_app``
includes the routers in :data:`ROUTERS`. No SQL here: reads go through the
store modules.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import (
    claims,
    export,
    extracts,
    families,
    health,
    households,
    ids,
    persons,
    programme,
    reports,
    restrictions,
    review,
    runs,
    subject,
    uploads,
)

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    extracts.router,
    uploads.router,
    persons.router,
    ids.router,
    households.router,
    review.router,
    runs.router,
    programme.router,
    families.router,
    claims.router,
    restrictions.router,
    subject.router,
    reports.router,
    export.router,
    health.router,
)
