"""The programme engine's SQL lives only in its store modules (``programme/_store*.py``).

An AST check over every other module of ``linkage_service/programme/``: none may
import a SQLAlchemy query builder (only ``sqlalchemy.engine``, for the
``Connection``/``Engine`` types a store function takes, and ``sqlalchemy.exc``, to
translate errors at the boundary), call ``.execute`` / ``.exec_driver_sql``, or
reach a table of either store (``pstore.families``, ``store.records`` ...).
Transactions (``engine.begin()``) stay with the caller: store functions take the
connection, so a guarded transition is still one statement in one transaction.
"""

from __future__ import annotations

import ast
from pathlib import Path

import linkage_service
from linkage_service._store import metadata

PROGRAMME = Path(linkage_service.__file__).parent / "programme"
ALLOWED_SQLALCHEMY = {"sqlalchemy.engine", "sqlalchemy.exc"}
TABLES = set(metadata.tables)
# Modules whose SQL has not moved to the store yet: this set only shrinks (a module
# listed here that is already clean fails the test, so it must be taken off).
NOT_YET: set[str] = set()


def is_store(path: Path) -> bool:
    return path.name == "_store.py" or path.name.startswith("_store_")


def violations(source: str) -> list[str]:
    """What in ``source`` builds or runs SQL outside a store module, with line numbers."""
    tree = ast.parse(source)
    found: list[str] = []
    store_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "sqlalchemy" and a.name not in ALLOWED_SQLALCHEMY:
                    found.append(f"line {node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod.split(".")[0] == "sqlalchemy" and mod not in ALLOWED_SQLALCHEMY:
                found.append(f"line {node.lineno}: from {mod} import ...")
            for a in node.names:
                name = a.name if not mod else f"{mod}.{a.name}"
                if name.split(".")[-1] == "_store" or mod.endswith("_store"):
                    store_aliases.add(a.asname or a.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in {"execute", "exec_driver_sql"}:
                found.append(f"line {node.lineno}: .{node.func.attr}(...)")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in store_aliases
            and node.attr in TABLES
        ):
            found.append(f"line {node.lineno}: table {node.value.id}.{node.attr}")
    return found


def test_no_programme_module_but_the_store_builds_or_runs_sql():
    modules = sorted(p for p in PROGRAMME.glob("*.py") if not is_store(p))
    assert len(modules) >= 10
    bad = {p.name: v for p in modules if (v := violations(p.read_text()))}
    assert {k: v for k, v in bad.items() if k not in NOT_YET} == {}
    assert sorted(NOT_YET - set(bad)) == []


def test_the_store_modules_are_where_the_sql_is():
    stores = sorted(p.name for p in PROGRAMME.glob("*.py") if is_store(p))
    assert "_store.py" in stores
    assert all(violations((PROGRAMME / s).read_text()) for s in stores)


def test_the_check_sees_each_kind_of_violation():
    src = (
        "import sqlalchemy as sa\n"
        "from sqlalchemy.engine import Connection\n"
        "from . import _store as pstore\n"
        "def f(conn):\n"
        "    return conn.execute(sa.select(pstore.families)).all()\n"
    )
    assert violations(src) == [
        "line 1: import sqlalchemy",
        "line 5: .execute(...)",
        "line 5: table pstore.families",
    ]
    assert violations("from sqlalchemy import select\n") == ["line 1: from sqlalchemy import ..."]
    assert violations("from sqlalchemy.exc import SQLAlchemyError\n") == []


def test_the_typed_rows_name_their_tables_columns_in_order():
    # rows read with ``select(table)`` are made positionally (``_make``): a column
    # added to or moved in a table without its row type would mislabel values
    from linkage_service.programme import _store as pstore
    from linkage_service.programme import _store_assessment as astore

    pairs = [
        (pstore.CycleRow, pstore.cycles),
        (pstore.FamilyRow, pstore.families),
        (pstore.Claim, pstore.claims),
        (astore.SnapshotRow, pstore.snapshots),
    ]
    for row, table in pairs:
        assert list(row._fields) == [c.name for c in table.c], row.__name__
    assert astore.FamilySnapshot._fields[: len(pstore.snapshots.c)] == astore.SnapshotRow._fields
