"""The linkage service's code never imports the agency client or the evaluation harness.

The agency client handles plaintext identities and the linkage secret; the
evaluation harness generates plaintext synthetic populations. Neither may be on
any of the linkage service's code paths, so importing every module of the
service (the programme engine included) in a fresh interpreter must load neither.
"""

from __future__ import annotations

from pathlib import Path

import linkage_service

from .._boundary import imported_in_source, loaded_by

FORBIDDEN = ("agency_client", "evaluation", "unlock_service")


def test_no_linkage_module_loads_the_agency_client_or_the_harness():
    assert loaded_by("linkage_service", FORBIDDEN) == []


def test_the_probe_would_see_the_agency_client_if_it_were_loaded():
    assert "agency_client" in loaded_by("linkage_service", FORBIDDEN, also_import="agency_client")


def test_no_linkage_source_file_imports_them_anywhere_even_inside_a_function():
    root = Path(linkage_service.__file__).parent
    assert len(list(root.rglob("*.py"))) > 20
    assert imported_in_source(root, FORBIDDEN) == []
