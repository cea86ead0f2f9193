"""Record ids no longer follow arrival order: ``records.seq`` keeps that order inside.

Record ids were numbered in the order extract lines arrived, which was the
order of each agency's rows (often by household), and the API shows them
(review pairs, decisions, id lookups). New records get random ids
(``_store.fresh_record_ids``); the order they arrived in, which the engine and
"the latest record of a ref" need, moves to ``seq``, which no API returns.
Ids already given out stay as they are: reviewers' decisions and every report
that quoted them name them, and ids that last are the point. Existing rows get
``seq = id`` (their arrival order, as it was).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``records.seq``, filled from the old sequential ids, unique.

    No table rebuild: SQLite adds the column in place (a rebuild of ``records``
    would break the foreign keys that point at it), so the column is nullable
    in the schema, on both databases alike; every insert sets it. The steps are safe to
    repeat on a database a failed earlier attempt left with the column added
    (SQLite's Python driver commits DDL outside the migration's transaction).
    """
    bind = op.get_bind()
    columns = {c["name"] for c in sa.inspect(bind).get_columns("records")}
    if "seq" not in columns:
        op.add_column("records", sa.Column("seq", sa.BigInteger, nullable=True))
    op.execute("UPDATE records SET seq = id WHERE seq IS NULL")
    indexes = {i["name"] for i in sa.inspect(bind).get_indexes("records")}
    if "uq_records_seq" not in indexes:
        op.create_index("uq_records_seq", "records", ["seq"], unique=True)


def downgrade() -> None:
    """Drop ``seq`` (random ids given out since stay random)."""
    op.drop_index("uq_records_seq", table_name="records")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("seq")
