"""Locate the shared test data that lives beside the repository (or in $SHARED_DIR)."""

from __future__ import annotations

import os
from pathlib import Path


def shared_testdata() -> Path:
    """Return ``<shared>/testdata``: $SHARED_DIR if set, else the repo's sibling ``shared``."""
    override = os.environ.get("SHARED_DIR")
    base = Path(override) if override else Path(__file__).resolve().parents[3] / "shared"
    return base / "testdata"
