"""Errors raised by the agency client.

Hierarchy::

    AgencyClientError            base; the CLI prints these plainly and exits 2
    ├── ConfigError              mapping or schema file is wrong (names file and key)
    ├── KeyFileError             a key file is missing, malformed or too readable
    ├── InputError               a CSV row or field is bad (names file, line, field)
    ├── ExtractError             an extract is malformed, tampered or mis-signed
    └── PushError                the linkage service refused an upload or cannot be reached
"""

from __future__ import annotations


class AgencyClientError(Exception):
    """Base class for every error the agency client raises on purpose."""


class ConfigError(AgencyClientError):
    """A mapping or schema file cannot be used."""


class KeyFileError(AgencyClientError):
    """A key file is missing, malformed, or readable by others."""


class InputError(AgencyClientError):
    """A source record is bad; the message names file, line and field."""

    def __init__(self, path: str, line: int, field: str | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem
        where = f"{path}:{line}" + (f": field {field}" if field else "")
        super().__init__(f"{where}: {problem}")


class ExtractError(AgencyClientError):
    """An extract file is malformed, tampered with, or not signed by the key given."""


class PushError(AgencyClientError):
    """The linkage service refused the upload (its reason) or stayed unreachable."""
