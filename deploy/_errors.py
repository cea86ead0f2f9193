"""Errors of ``deploy``.

Hierarchy::

    DeployError
    └── CeremonyError   a key cannot be made or placed; the message names the file and the fix
"""

from __future__ import annotations

__all__ = ["CeremonyError", "DeployError"]


class DeployError(Exception):
    """Base class of every error raised by ``deploy``."""


class CeremonyError(DeployError):
    """The key ceremony refused to go on: the message names the file and what to do."""
