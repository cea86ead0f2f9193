"""The linkage service's code never imports the agency client or the evaluation harness.

The agency client handles plaintext identities and the linkage secret; the
evaluation harness generates plaintext synthetic populations. Neither may be on
any of the linkage service's code paths, so importing every module of the
service in a fresh interpreter must load neither.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import importlib, json, pkgutil, sys
import linkage_service
for info in pkgutil.iter_modules(linkage_service.__path__, "linkage_service."):
    if not info.name.endswith("_migrations"):  # alembic scripts, run only by alembic
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
      ("agency_client", "evaluation", "unlock_service"))))
"""


def test_no_linkage_module_loads_the_agency_client_or_the_harness():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_no_linkage_source_file_imports_them_anywhere_even_inside_a_function():
    import ast
    from pathlib import Path

    import linkage_service

    forbidden = {"agency_client", "evaluation", "unlock_service"}
    found = []
    files = sorted(Path(linkage_service.__file__).parent.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert found == []
