"""The unlock service's code never imports the agency client or the evaluation harness.

The agency client holds the encoder, its compiled kernels and the synthetic
population generator; the unlock service needs none of them: it opens sealed
identities with the shared format in ``protocols._seal`` (PyNaCl only).
Importing every module of the service in a fresh interpreter must load
neither the agency client nor the evaluation harness, nor the agency client's
compiled code.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import unlock_service

FORBIDDEN = ("agency_client", "evaluation", "linkage_service")

PROBE = """
import importlib, json, pkgutil, sys
import unlock_service
for info in pkgutil.iter_modules(unlock_service.__path__, "unlock_service."):
    if not info.name.endswith("_migrations"):  # alembic scripts, run only by alembic
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
      ("agency_client", "evaluation", "linkage_service", "agency_client_compiled__mypyc"))))
"""


def test_no_unlock_module_loads_the_agency_client_or_the_harness():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_the_probe_would_see_the_agency_client_if_it_were_loaded():
    # The probe itself must be able to fail: importing the agency client shows up.
    probe = PROBE.replace("import unlock_service\n", "import unlock_service, agency_client\n")
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "agency_client" in json.loads(out)


def test_no_unlock_source_file_imports_them_anywhere_even_inside_a_function():
    found = []
    files = sorted(Path(unlock_service.__file__).parent.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert found == []
