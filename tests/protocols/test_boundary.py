"""``protocols`` depends only on pydantic, the standard library and PyNaCl: the wire
models (the unlock service's answers included) never pull in a service or a web stack."""

from __future__ import annotations

from pathlib import Path

import protocols

from .._boundary import imported_in_source, loaded_by

FORBIDDEN = (
    "agency_client",
    "audit_log",
    "evaluation",
    "fastapi",
    "httpx",
    "linkage_service",
    "service_common",
    "sqlalchemy",
    "starlette",
    "unlock_service",
)


def test_importing_protocols_loads_no_service_and_no_web_stack():
    assert loaded_by("protocols", FORBIDDEN) == []


def test_the_probe_would_see_a_service_if_one_were_loaded():
    assert "unlock_service" in loaded_by("protocols", FORBIDDEN, also_import="unlock_service")


def test_no_protocols_source_file_imports_them():
    root = Path(protocols.__file__).parent
    assert imported_in_source(root, FORBIDDEN) == []
