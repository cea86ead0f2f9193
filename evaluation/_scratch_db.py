"""A throwaway PostgreSQL database for a benchmark run: created, yielded, dropped.

The benches that compare SQLite with PostgreSQL (``bench/ingest_speed.py``,
``bench/read_latency.py``) each need one; the test suite has its own fixture
(``tests/conftest.py``). The server is ``$BENCH_POSTGRES_URL`` (default: the
local one, user postgres, trust authentication).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def scratch_postgres(prefix: str) -> Iterator[str | None]:
    """The URL of a new database named ``<prefix>_<random>``, dropped afterwards.

    Yields None (and prints why) when the server cannot be reached, so a bench
    can go on with SQLite alone.
    """
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"[postgresql] skipped: {exc}")
        yield None
        return
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
