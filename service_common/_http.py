"""What every service's HTTP shell shares: integer bounds and the authenticated API schema.

Integer query and path parameters are bounded so that no value a database
column cannot hold reaches a query (SQLite and PostgreSQL ``BIGINT`` both stop
at 2**63 - 1; a larger value made the driver raise and the service answer 500).
Routes declare them with ``Query(ge=0, le=MAX_SQL_INT)`` or a tighter bound,
so a caller gets 422 naming the parameter.

The OpenAPI schema is served at ``/openapi.json`` only to a caller the
service's own authentication admits, and there is no HTML documentation page:
FastAPI's ``/docs`` and ``/redoc`` load their scripts from a third-party CDN.
Nothing here reads configuration or does work at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

__all__ = ["MAX_SQL_INT", "NO_PUBLIC_DOCS", "serve_openapi"]

MAX_SQL_INT = 2**63 - 1
# Keyword arguments for ``FastAPI(...)``: no public schema, no CDN-backed pages.
NO_PUBLIC_DOCS: dict[str, Any] = {"docs_url": None, "redoc_url": None, "openapi_url": None}


def serve_openapi(app: FastAPI, authenticate: Callable[..., Any]) -> None:
    """Serve ``app``'s OpenAPI schema at ``/openapi.json`` to callers ``authenticate`` admits.

    ``app`` must have been created with :data:`NO_PUBLIC_DOCS`; ``authenticate``
    is the service's own dependency and raises (401) for anyone else.
    """

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authenticate)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())
