"""Errors of the unlock service.

Hierarchy::

    UnlockError                  base of everything this package raises on purpose
    ├── ConfigError              missing, unreadable, loose-permission or invalid configuration
    ├── StorageError             the service's own database failed (HTTP 503)
    ├── AuthError                no valid token, request signature or key binding (HTTP 401)
    ├── Forbidden                authenticated, but the role may not do this (HTTP 403)
    ├── NotFound                 no such professional, request or review (HTTP 404)
    ├── Conflict                 the request or grant is not in a state that allows this
    │                            (already used, expired, not pending; HTTP 409 / 410)
    ├── Refused                  the policy refused; carries the reason code, the request
    │                            id and the audit index of the logged refusal (HTTP 403,
    │                            429 for a rate limit)
    ├── LinkageError             the linkage service failed or answered out of contract (502);
    │                            ``_linkage`` adds the answers that are not failures: no
    │                            releasable attestation (403), an attestation superseded
    │                            since the grant (409), a query it refused as malformed (422)
    ├── AuditUnavailable         the audit append failed, so nothing was released (503)
    └── ReleaseError             a sealed blob did not open or did not match the attestation;
                                 nothing was released (502)

Every error carries a short upper-case ``reason`` code (the same vocabulary as
the audit log's reason codes) and a message naming what was wrong. No message
ever quotes an identity: the service never holds one outside a release.
"""

from __future__ import annotations

__all__ = [
    "AuditUnavailable",
    "AuthError",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "LinkageError",
    "NotFound",
    "Refused",
    "ReleaseError",
    "StorageError",
    "UnlockError",
]


class UnlockError(Exception):
    """Base of every error the unlock service raises deliberately."""

    status = 500
    default_reason = "ERROR"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason


class ConfigError(UnlockError):
    """Configuration is missing, unreadable, too permissive or invalid."""

    default_reason = "CONFIG"


class StorageError(UnlockError):
    """The unlock service's database failed."""

    status = 503
    default_reason = "STORAGE_UNAVAILABLE"


class AuthError(UnlockError):
    """The caller could not be authenticated (token, request signature, key binding)."""

    status = 401
    default_reason = "UNAUTHENTICATED"


class Forbidden(UnlockError):
    """The authenticated professional's role may not do this."""

    status = 403
    default_reason = "ROLE_NOT_PERMITTED"


class NotFound(UnlockError):
    """The named professional, request or review does not exist."""

    status = 404
    default_reason = "NOT_FOUND"


class Conflict(UnlockError):
    """The request or grant is in a state that does not allow this."""

    status = 409
    default_reason = "CONFLICT"

    def __init__(self, message: str, reason: str | None = None, status: int = 409) -> None:
        super().__init__(message, reason)
        self.status = status


class Refused(UnlockError):
    """The policy refused; the refusal is already in the audit log at ``audit_index``."""

    status = 403
    default_reason = "DENY_DEFAULT"

    def __init__(
        self,
        message: str,
        reason: str,
        *,
        request_id: str | None = None,
        audit_index: int | None = None,
    ) -> None:
        super().__init__(message, reason)
        self.request_id = request_id
        self.audit_index = audit_index
        if reason == "RATE_LIMITED":
            self.status = 429


class LinkageError(UnlockError):
    """The linkage service could not be reached or answered outside its contract."""

    status = 502
    default_reason = "LINKAGE_UNAVAILABLE"


class AuditUnavailable(UnlockError):
    """The decision could not be appended to the audit log: nothing was released."""

    status = 503
    default_reason = "AUDIT_UNAVAILABLE"


class ReleaseError(UnlockError):
    """A blob did not open, or did not match its attested record: nothing was released."""

    status = 502
    default_reason = "RELEASE_FAILED"
