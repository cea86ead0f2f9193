"""Checks that a service's code never reaches a package it must not (shared by the services' tests).

Two ways: import every module of the service (subpackages included) in a fresh
interpreter and list what got loaded; and read every source file for an import
of a forbidden package, even one inside a function that the first check would
not run.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

_PROBE = """
import importlib, json, pkgutil, sys
import {package} as root
for info in pkgutil.walk_packages(root.__path__, "{package}."):
    if "_migrations" not in info.name:  # alembic scripts, run only by alembic
        importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})))
"""


def loaded_by(package: str, forbidden: Iterable[str], *, also_import: str = "") -> list[str]:
    """Forbidden modules loaded by importing every module of ``package`` (and ``also_import``)."""
    probe = _PROBE.format(package=package, forbidden=tuple(forbidden))
    if also_import:
        probe = probe.replace(
            f"import {package} as root\n", f"import {package} as root, {also_import}\n"
        )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def imported_in_source(root: Path, forbidden: Iterable[str]) -> list[str]:
    """``file: module`` for every absolute import of a forbidden package under ``root``."""
    banned = set(forbidden)
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned]
    return found
