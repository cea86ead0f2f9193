"""Exceptions raised by the audit_log package.

Every error the package raises on purpose derives from one base class, so a
caller (the unlock service, the CLI) can catch ``AuditLogError`` and know it
caught only our own failures. Third-party errors are translated at the
boundary with ``raise ... from exc``. Messages name the thing that was wrong:
the index, the line, the key name, what was expected and what was found.

Hierarchy::

    AuditLogError
    ├── ProofError        a Merkle inclusion/consistency proof is malformed or
    │                     does not verify, or a tree was asked for a proof it
    │                     cannot give (index or size out of range)
    ├── NoteError         a signed note is malformed, unsigned by any known key,
    │                     or carries a bad signature from a known key
    ├── CheckpointError   a checkpoint, cosignature or tlog-proof body is
    │                     malformed or does not match what it claims
    └── WitnessError      the witness refuses a checkpoint; ``status`` is the
        │                 HTTP status the tlog-witness spec assigns
        └── WitnessConflict  the caller's old size is not the witness's size;
                          ``size`` carries the witness's current size (409)

This module must never import anything beyond the standard library: every
other module imports it.
"""

from __future__ import annotations

__all__ = [
    "AuditLogError",
    "CheckpointError",
    "NoteError",
    "ProofError",
    "WitnessConflict",
    "WitnessError",
]


class AuditLogError(Exception):
    """Base class of every error the audit_log package raises on purpose."""


class ProofError(AuditLogError):
    """A Merkle proof is malformed or fails, or a proof was asked out of range."""


class NoteError(AuditLogError):
    """A signed note is malformed or not verified by any known key."""


class CheckpointError(AuditLogError):
    """A checkpoint, cosignature or tlog-proof is malformed or inconsistent."""


class WitnessError(AuditLogError):
    """The witness refused a checkpoint; ``status`` is the HTTP status to report."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class WitnessConflict(WitnessError):
    """The submitted old size differs from the witness's recorded size."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message, status=409)
        self.size = size
