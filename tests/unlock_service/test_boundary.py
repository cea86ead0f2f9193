"""The unlock service's code never imports the agency client or the evaluation harness.

The agency client holds the encoder, its compiled kernels and the synthetic
population generator; the unlock service needs none of them: it opens sealed
identities with the shared format in ``protocols._seal`` (PyNaCl only).
Importing every module of the service in a fresh interpreter must load
neither the agency client nor the evaluation harness, nor the agency client's
compiled code.
"""

from __future__ import annotations

from pathlib import Path

import unlock_service

from .._boundary import imported_in_source, loaded_by

FORBIDDEN = ("agency_client", "evaluation", "linkage_service")


def test_no_unlock_module_loads_the_agency_client_or_the_harness():
    assert loaded_by("unlock_service", (*FORBIDDEN, "agency_client_compiled__mypyc")) == []


def test_the_probe_would_see_the_agency_client_if_it_were_loaded():
    # The probe itself must be able to fail: importing the agency client shows up.
    assert "agency_client" in loaded_by("unlock_service", FORBIDDEN, also_import="agency_client")


def test_no_unlock_source_file_imports_them_anywhere_even_inside_a_function():
    root = Path(unlock_service.__file__).parent
    assert len(list(root.rglob("*.py"))) > 10
    assert imported_in_source(root, FORBIDDEN) == []
