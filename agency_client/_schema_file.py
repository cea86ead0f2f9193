"""Reading and writing linkage schema files (JSON)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from protocols import LinkageSchema, default_schema, describe_errors

from ._errors import ConfigError


def load_schema(path: Path | None) -> LinkageSchema:
    """The schema in ``path``, or the shipped default when ``path`` is None."""
    if path is None:
        return default_schema()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read schema: {exc.strerror}") from exc
    try:
        return LinkageSchema.model_validate_json(text)
    except ValidationError as exc:
        problems = describe_errors(exc, "(top)")
        raise ConfigError(f"{path}: invalid linkage schema: {problems}") from exc


def write_schema(schema: LinkageSchema, path: Path) -> None:
    """Write ``schema`` as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema.model_dump_json(indent=2) + "\n", encoding="utf-8")
