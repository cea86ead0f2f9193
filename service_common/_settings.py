"""Service settings from a TOML/JSON file and ``<PREFIX>_*`` environment variables.

Every service reads its settings the same way: an optional file (given, or
named by ``<PREFIX>CONFIG``), then one environment variable per field
(``<PREFIX><FIELD>``) overriding it; a tuple field takes a comma-separated
value; a relative path in the file is taken relative to the file's directory.
Nothing is read until the function is called.

Must never: print or return a secret's value in an error (settings hold paths
to key files, never keys).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from protocols import describe_errors

__all__ = ["load_service_settings"]

_M = TypeVar("_M", bound=BaseModel)


def load_service_settings(
    model: type[_M],
    prefix: str,
    path: Path | None,
    environ: Mapping[str, str] | None,
    error: Callable[[str], Exception],
) -> _M:
    """``model`` from the file at ``path`` (or ``$<prefix>CONFIG``) and the environment."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is None and env.get(prefix + "CONFIG"):
        path = Path(env[prefix + "CONFIG"])
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise error(f"cannot read settings file {path}: {exc}") from exc
        try:
            loaded = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise error(f"settings file {path} is not valid: {exc}") from exc
        if not isinstance(loaded, dict):
            raise error(f"settings file {path} must hold a table/object")
        for name, value in loaded.items():
            info = model.model_fields.get(name)
            if info is not None and "Path" in str(info.annotation):
                if isinstance(value, str):
                    value = str(path.parent / value)
                elif isinstance(value, list):
                    value = [str(path.parent / v) if isinstance(v, str) else v for v in value]
            data[name] = value
    for name, info in model.model_fields.items():
        value = env.get(prefix + name.upper())
        if value is None:
            continue
        is_tuple = "tuple" in str(info.annotation)
        data[name] = [v for v in value.split(",") if v] if is_tuple else value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"invalid settings: {describe_errors(exc, '(top)')}") from exc
