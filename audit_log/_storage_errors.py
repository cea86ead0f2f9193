"""Errors of the durable log, its entries and its HTTP/CLI shells.

They extend the package hierarchy in ``_errors.py`` (owned by the crypto core)
without editing it::

    AuditLogError
    ├── EntryError      an entry or leaf record is malformed (names the field)
    ├── StorageError    the database refused or failed an operation
    ├── TamperError     stored data does not match the signed history;
    │                   ``index`` is the first bad entry index (or None when
    │                   only a checkpoint is bad), ``size`` the checkpoint size
    └── ConfigError     missing, placeholder or unsafe configuration (fail closed)

This module must never import anything beyond the standard library and
``_errors``.
"""

from __future__ import annotations

from ._errors import AuditLogError

__all__ = ["ConfigError", "EntryError", "StorageError", "TamperError"]


class EntryError(AuditLogError):
    """An audit entry or leaf record is malformed."""


class StorageError(AuditLogError):
    """The database refused or failed an operation."""


class TamperError(AuditLogError):
    """Stored data does not match the signed history; ``index`` is the first bad entry."""

    def __init__(self, message: str, index: int | None = None, size: int | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.size = size


class ConfigError(AuditLogError):
    """Configuration is missing, a placeholder, or unsafe."""
