"""Errors of ``deploy``.

Hierarchy::

    DeployError
    ├── CeremonyError   a key cannot be made or placed; the message names the file and the fix
    └── StackError      the local run cannot start or a service stopped; names the service
                        and shows the end of its log
"""

from __future__ import annotations

__all__ = ["CeremonyError", "DeployError", "StackError"]


class DeployError(Exception):
    """Base class of every error raised by ``deploy``."""


class CeremonyError(DeployError):
    """The key ceremony refused to go on: the message names the file and what to do."""


class StackError(DeployError):
    """The local run could not start, or a service stopped: names it and quotes its log."""
