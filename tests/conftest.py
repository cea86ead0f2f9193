"""Shared fixtures. PostgreSQL tests get a fresh database per test session."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Compiled modules and their sources (setup.py). Python imports a module's
# compiled form before its .py, so an edit to a source would go untested.
COMPILED = {
    "agency_client._rows": "agency_client/_rows.py",
    "agency_client._normalise": "agency_client/_normalise.py",
    "agency_client._encoder": "agency_client/_encoder.py",
    "protocols._seal": "protocols/_seal.py",
    "agency_client._bloom": "agency_client/_bloom.c",
    "linkage_service._dice": "linkage_service/_dice.c",
    "audit_log._leafscan": "audit_log/_leafscan.c",
}


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test a stale build: a compiled module older than its source."""
    root = Path(__file__).resolve().parent.parent
    for module, source in COMPILED.items():
        spec = importlib.util.find_spec(module)
        origin = Path(spec.origin) if spec and spec.origin else None
        if origin is None or origin.suffix != ".so":
            pytest.exit(f"{module} is not compiled: run .venv/bin/pip install -e '.[dev]'", 2)
        if (root / source).stat().st_mtime > origin.stat().st_mtime:
            pytest.exit(
                f"{source} changed after {origin.name} was built: run "
                ".venv/bin/pip install -e '.[dev]' to recompile it",
                2,
            )


PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a brand-new PostgreSQL database, dropped at the end of the run.

    Skips when the server is unreachable, unless REQUIRE_POSTGRES=1 (CI), where
    a missing server fails the run instead of silently skipping storage tests.
    """
    psycopg = pytest.importorskip("psycopg")
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database emptied for this test (schema ``public``
    made again: another test's tables may be in it), as a SQLAlchemy URL."""
    import psycopg

    from service_common import normalise_database_url

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return normalise_database_url(postgres_url)
