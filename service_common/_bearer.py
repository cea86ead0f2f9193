"""Bearer-token authentication and role checks for FastAPI routes.

The linkage service and the audit log authenticate callers the same way: a
``protocols.TokenTable`` on ``app.state.tokens`` (SHA-256 digests from a 0600
token file) and a role per token. These dependencies reject a missing or
unknown token with 401 and a known caller without one of the route's roles
with 403. The unlock service authenticates professionals differently (signed
JWTs and request signatures) and does not use this.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request

from protocols import Caller, TokenTable

__all__ = ["bearer_caller", "require_roles"]


def bearer_caller(request: Request) -> Caller:
    """The caller the request's bearer token names; 401 if none does."""
    tokens: TokenTable = request.app.state.tokens
    caller = tokens.authenticate(request.headers.get("authorization"))
    if caller is None:
        raise HTTPException(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
    return caller


def require_roles(*roles: str) -> Callable[[Request], Caller]:
    """A dependency that admits only callers holding one of ``roles`` (403 otherwise)."""

    def check(request: Request) -> Caller:
        caller = bearer_caller(request)
        if caller.role not in roles:
            raise HTTPException(403, f"role {caller.role!r} may not do this")
        return caller

    return check
