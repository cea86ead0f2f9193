"""Canonical JSON: the exact bytes that are hashed and signed.

Sorted keys, no insignificant whitespace, UTF-8, no NaN. Two parties that hold
the same model produce the same bytes, so a signature made by an agency verifies
at the linkage service whatever JSON library either side uses to read it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """Serialise plain JSON data (dicts, lists, str, int, bool, None) canonically."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
