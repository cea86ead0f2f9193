"""Alembic environment: migrate the connection handed over in ``config.attributes``.

There is no alembic.ini and no URL here: ``_store.migrate`` passes an open
connection, so the schema is upgraded inside the caller's transaction.
"""

from __future__ import annotations

from alembic import context

from web_service._store import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
