"""Readable text for pydantic validation errors: which field, what was wrong.

Every party reports bad input by naming the field; this is the one place that
turns a pydantic error location into that name.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


def field_path(loc: Sequence[int | str], empty: str = "") -> str:
    """A pydantic error location as ``a.b.0``; ``empty`` when the whole value was wrong."""
    return ".".join(str(part) for part in loc) or empty


def describe_errors(exc: ValidationError, empty: str = "") -> str:
    """Every error of ``exc`` as ``field: message``, joined with ``; ``."""
    return "; ".join(f"{field_path(e['loc'], empty)}: {e['msg']}" for e in exc.errors())
