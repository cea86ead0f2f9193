"""Errors of the web service.

Hierarchy::

    WebError                 base of everything this package raises on purpose
    ├── ConfigError          missing, unreadable, loose-permission or invalid configuration
    ├── StorageError         the web service's own database failed (HTTP 503)
    ├── AccountError         an account cannot be created or changed as asked (names the field)
    ├── SignInError          wrong user name, password or code, or a locked or disabled
    │                        account (HTTP 401; the message never says which)
    └── BackendError         a service the pages call failed or answered out of contract
                             (HTTP 502); ``status`` and ``detail`` carry its answer

No message quotes a password, a code, a bearer token or an identity.
"""

from __future__ import annotations

__all__ = [
    "AccountError",
    "BackendError",
    "ConfigError",
    "SignInError",
    "StorageError",
    "WebError",
]


class WebError(Exception):
    """Base of the web service's errors."""


class ConfigError(WebError):
    """Configuration that cannot be used."""


class StorageError(WebError):
    """The web service's own database failed."""


class AccountError(WebError):
    """An account operation that cannot be done as asked."""


class SignInError(WebError):
    """A sign-in that did not succeed."""


class BackendError(WebError):
    """A call to the linkage service, the unlock service or the audit log failed."""

    def __init__(
        self,
        message: str,
        status: int = 502,
        detail: object = None,
        field: str | None = None,
        *,
        backend: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.field = field  # the request field the service named, if it named one
        self.backend = backend  # which service failed ("linkage service", ...), for the log
