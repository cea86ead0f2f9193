"""Sync HTTP into ASGI apps for in-process tests: one event loop in a blocking
portal runs the apps; ``PortalTransport`` lets a sync ``httpx.Client`` (the
web service's backends, or the test's own client) call them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal


class PortalTransport(httpx.BaseTransport):
    """A sync transport into an ASGI app running on the portal's loop."""

    def __init__(self, portal: BlockingPortal, app: Any) -> None:
        self._portal = portal
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()

        async def go() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self._portal.call(go)


@contextmanager
def lifespans(portal: BlockingPortal, *apps: Any) -> Iterator[None]:
    """Each app's lifespan entered on the portal's loop, left in reverse order."""
    with ExitStack() as stack:
        for app in apps:
            stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        yield


__all__ = ["PortalTransport", "lifespans", "start_blocking_portal"]
