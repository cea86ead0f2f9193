"""Calls to the other services, always with the signed-in user's own credential.

``Backend`` is one shared ``httpx.Client`` per service (connection pooling);
every call passes the session's bearer token, so the web service can do no
more than the user could with the CLI. Errors become ``BackendError`` with the
service's status and its ``detail`` (403 stays 403: the page says the user may
not do this). ``relay`` forwards a request the professional's browser signed to
the unlock service unchanged: the method, the path and query, the body bytes,
the bearer JWT and the ``Unlock-Signature`` header.
"""

from __future__ import annotations

from typing import Any

import httpx

from service_common import traced_transport

from ._errors import BackendError

__all__ = ["Backend", "RelayAnswer"]


class RelayAnswer:
    """What the unlock service answered a relayed request."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type


class Backend:
    """One service the pages call."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float,
        verify: str | bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=traced_transport(transport or httpx.HTTPTransport(verify=verify)),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def call(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """``method path`` with ``token``; the response if 2xx, BackendError otherwise."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = self._client.request(method, path, headers=headers, params=clean, json=json)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"the {self.name} did not answer: {type(exc).__name__}", backend=self.name
            ) from exc
        if response.is_success:
            return response
        detail: object
        field: object = None
        try:
            answer = response.json()
            detail = answer.get("detail", response.text[:300])
            field = answer.get("field")
        except (ValueError, AttributeError):
            detail = response.text[:300]
        raise BackendError(
            f"the {self.name} answered {response.status_code}: {detail}",
            status=response.status_code,
            detail=detail,
            field=field if isinstance(field, str) else None,
            backend=self.name,
        )

    def get_json(self, path: str, token: str | None, **params: Any) -> Any:
        """GET ``path`` and decode its JSON body."""
        return self.call("GET", path, token, params=params).json()

    def post_json(self, path: str, token: str | None, body: Any) -> Any:
        """POST ``body`` as JSON and decode the JSON answer."""
        return self.call("POST", path, token, json=body).json()

    def relay(
        self, method: str, target: str, body: bytes, authorization: str, signature: str
    ) -> RelayAnswer:
        """Forward a browser-signed request unchanged; the answer whatever its status."""
        headers = {"Authorization": authorization, "Unlock-Signature": signature}
        if body:
            headers["Content-Type"] = "application/json"
        try:
            response = self._client.request(method, target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BackendError(
                f"the {self.name} did not answer: {type(exc).__name__}", backend=self.name
            ) from exc
        return RelayAnswer(
            response.status_code,
            response.content,
            response.headers.get("content-type", "application/json"),
        )
