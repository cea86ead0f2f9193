"""Two fewer indexes to keep up on every record insert.

``ix_records_active`` indexed a column that is true for most rows: no read
should walk it (the query plan tests forbid it), and every insert paid for
it. ``ix_records_agency_ref`` indexed ``(agency_id, record_ref)`` for every
record, though active records have that key in the unique partial index
``uq_records_active_ref`` already. It becomes ``ix_records_retired_ref``, the
same key for retired records only: a record is inserted active, so an insert
no longer touches it (retiring a record moves its key from one to the other).
A read that wants a ref's records whatever their state asks for the active and
the retired ones, each through its index.

SQLite uses a partial index only for a query whose WHERE holds the index's
condition as written, and SQLAlchemy writes a boolean column there as
``active = 1`` (``active = 0`` negated). ``uq_records_active_ref`` said
``WHERE active`` on SQLite, so no query could read through it (reads used
the full index); it is made again with ``active = 1``. On PostgreSQL, which
proves such conditions, it stays as it is.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop the two indexes, add the retired records' one (safe to repeat)."""
    bind = op.get_bind()
    indexes = {i["name"] for i in sa.inspect(bind).get_indexes("records")}
    if bind.dialect.name == "sqlite":
        sql = bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'uq_records_active_ref'"
        ).scalar()
        if sql is not None and "active = 1" not in str(sql):
            op.drop_index("uq_records_active_ref", table_name="records")
            indexes.discard("uq_records_active_ref")
    if "uq_records_active_ref" not in indexes:
        op.create_index(
            "uq_records_active_ref",
            "records",
            ["agency_id", "record_ref"],
            unique=True,
            sqlite_where=sa.text("active = 1"),
            postgresql_where=sa.text("active"),
        )
    if "ix_records_retired_ref" not in indexes:
        op.create_index(
            "ix_records_retired_ref",
            "records",
            ["agency_id", "record_ref"],
            sqlite_where=sa.text("active = 0"),
            postgresql_where=sa.text("NOT active"),
        )
    for name in ("ix_records_agency_ref", "ix_records_active"):
        if name in indexes:
            op.drop_index(name, table_name="records")


def downgrade() -> None:
    """Put the two indexes back and drop the retired records' one.

    ``uq_records_active_ref`` keeps its SQLite condition ``active = 1``: it
    holds the same rows as ``active`` did.
    """
    op.create_index("ix_records_agency_ref", "records", ["agency_id", "record_ref"])
    op.create_index("ix_records_active", "records", ["active"])
    op.drop_index("ix_records_retired_ref", table_name="records")
