"""What every service's HTTP shell shares: integer bounds and the authenticated API schema.

Integer query and path parameters are bounded so that no value a database
column cannot hold reaches a query (SQLite and PostgreSQL ``BIGINT`` both stop
at 2**63 - 1; a larger value made the driver raise and the service answer 500).
Routes declare them with ``Query(ge=0, le=MAX_SQL_INT)`` or a tighter bound,
so a caller gets 422 naming the parameter.

Request bodies are capped by :class:`BodyLimit` (413 naming the limit),
counted as they arrive, so no route reads an unbounded body into memory; a
route that streams a large upload under its own cap is exempted by path.

The OpenAPI schema is served at ``/openapi.json`` only to a caller the
service's own authentication admits, and there is no HTML documentation page:
FastAPI's ``/docs`` and ``/redoc`` load their scripts from a third-party CDN.
Nothing here reads configuration or does work at import time.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["MAX_SQL_INT", "NO_PUBLIC_DOCS", "BodyLimit", "serve_openapi"]

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


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes (413), counted as they arrive.

    Paths in ``exempt`` (a streamed upload with its own cap) pass untouched, and
    so do paths under a prefix in ``exempt_prefixes`` (resumable upload chunks).
    Add it last, so it is the outermost of the app's own middleware.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        *,
        setting: str = "max_body_bytes",
        exempt: tuple[str, ...] = (),
        exempt_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.limit = limit
        self.setting = setting
        self.exempt = exempt
        self.exempt_prefixes = exempt_prefixes

    def _refusal(self) -> JSONResponse:
        return JSONResponse(
            {
                "detail": f"request body over {self.limit} bytes ({self.setting})",
                "reason": "BODY_TOO_LARGE",
            },
            status_code=413,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if (
            scope["type"] != "http"
            or path in self.exempt
            or (self.exempt_prefixes and path.startswith(self.exempt_prefixes))
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._refusal()(scope, receive, send)
            return
        # Read the (small) body here, before the app: a limit hit while the app
        # reads would surface as the framework's 400 "error parsing the body".
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nothing to answer
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._refusal()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
