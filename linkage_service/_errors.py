"""Errors of the linkage service.

Hierarchy::

    LinkageError                 base of everything this package raises on purpose
    ├── ConfigError              missing, unreadable, loose-permission or invalid configuration
    │   └── RulesetError         a ruleset or risk model file is invalid (names file and rule)
    ├── StorageError             the database refused or failed (maps to HTTP 503)
    ├── AuthError                the caller may not do this (maps to HTTP 403)
    ├── NotFound                 no such person, household, record or agency (HTTP 404)
    │   └── Superseded           an id re-linking retired: names the ids it lives on as (410)
    ├── ConflictError            not possible in the current state: a status move that is not
    │                            allowed, a double claim, a family below threshold (HTTP 409)
    ├── FieldError               a request's field holds a value refused here (HTTP 422);
    │                            carries the field: an attachment date in the future
    ├── EngineError              the linkage engine failed while applying an extract (HTTP 500)
    └── IngestError              an extract was refused (HTTP 400); carries line and field
        ├── ReplayError          extract id already seen with different bytes (HTTP 409)
        ├── SchemaError          stale or mismatched schema fingerprint (HTTP 400)
        ├── SignatureError       signature, key id, count or digest does not verify (HTTP 400)
        ├── TooLarge             body or line bigger than allowed (HTTP 413)
        └── UploadError          a resumable upload's chunk or whole does not match what was
                                 declared: digest, size, offset header (HTTP 422)

Messages name what was wrong (agency, extract id, line, field, expected value)
and never quote record content beyond record refs.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "ConflictError",
    "EngineError",
    "FieldError",
    "IngestError",
    "LinkageError",
    "NotFound",
    "ReplayError",
    "RulesetError",
    "SchemaError",
    "SignatureError",
    "StorageError",
    "Superseded",
    "TooLarge",
    "UploadError",
]


class LinkageError(Exception):
    """Base of every error the linkage service raises deliberately."""


class ConfigError(LinkageError):
    """Configuration is missing, unreadable, too permissive or invalid."""


class RulesetError(ConfigError):
    """A ruleset or risk model file is unreadable or invalid; names the file and the rule."""


class StorageError(LinkageError):
    """The database failed; nothing was half-applied."""


class AuthError(LinkageError):
    """The authenticated caller may not do this."""


class NotFound(LinkageError):
    """The named person, household, record or agency does not exist."""


class Superseded(NotFound):
    """The id was issued but re-linking retired it; ``current`` are the ids it lives on as."""

    def __init__(self, message: str, current: list[str]) -> None:
        super().__init__(message)
        self.current = current


class ConflictError(LinkageError):
    """The request cannot be done in the current state (the message says why)."""


class FieldError(LinkageError):
    """A request's ``field`` holds a value the service refuses (the message says why)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class EngineError(LinkageError):
    """The linkage engine failed; the extract was rolled back."""


class IngestError(LinkageError):
    """An extract was refused; ``line`` and ``field`` say where, when known."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None):
        where = ""
        if line is not None:
            where = f"line {line}"
            if field is not None:
                where += f", field {field!r}"
            where += ": "
        super().__init__(where + message)
        self.line = line
        self.field = field


class ReplayError(IngestError):
    """The extract id was seen before with different content."""


class SchemaError(IngestError):
    """The extract's schema fingerprint is not one the service accepts."""


class SignatureError(IngestError):
    """The extract's key id, record count, digest or signature does not verify."""


class TooLarge(IngestError):
    """The upload or one of its lines is larger than the configured limit."""


class UploadError(IngestError):
    """A chunk or a whole resumable upload does not match its declared digest or size."""
