"""A SQLite database brought to an earlier schema revision, for migration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from linkage_service import _store as store

AGENCY = (
    "INSERT INTO agencies (agency_id, idx, public_key, key_id, extract_types, registered_at) "
    "VALUES ('school', 0, x'00', 'k', '[]', 0)"
)


@contextmanager
def at_revision(path: Any, revision: str) -> Iterator[tuple[sa.Engine, sa.Connection]]:
    """A new database at ``path`` upgraded to ``revision`` with the agency ``school``;
    yields the engine and a connection whose transaction commits on leaving."""
    engine = store.create_engine(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", "linkage_service:_migrations")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        conn.execute(sa.text(AGENCY))
        yield engine, conn
