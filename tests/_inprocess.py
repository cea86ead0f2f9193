"""Sync HTTP into ASGI apps for in-process tests: one event loop in a blocking
portal runs the apps; ``PortalTransport`` lets a sync ``httpx.Client`` (a
service's own backend client, or the test's client) call them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal


class PortalTransport(httpx.BaseTransport):
    """A synchronous transport into an ASGI app running on an anyio portal's loop.

    With ``raise_app_exceptions=False`` an app exception comes back as the 500
    the server would send instead of being raised (the fuzz runs want that).
    """

    def __init__(self, app: Any, portal: BlockingPortal, *, raise_app_exceptions: bool = True):
        self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def run() -> httpx.Response:
            inner = httpx.Request(
                request.method, request.url, headers=request.headers, content=content
            )
            response = await self._asgi.handle_async_request(inner)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self._portal.call(run)


@contextmanager
def lifespans(portal: BlockingPortal, *apps: Any) -> Iterator[None]:
    """Each app's lifespan entered on the portal's loop, left in reverse order."""
    with ExitStack() as stack:
        for app in apps:
            stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        yield


__all__ = ["PortalTransport", "lifespans", "start_blocking_portal"]
