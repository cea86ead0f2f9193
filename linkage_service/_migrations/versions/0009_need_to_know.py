"""Clear attributes on a need-to-know basis: adults' ages as bands, districts of children.

Extract format v2 (issue 17) sends a whole-years age only under 25 and an age
band from 25 (``records.age_band``: ``25-34``, ``35-49``, ``50+``), and a
postcode district only on the records of a person under 19 or an expectant
parent. Records stored from v1 extracts are coarsened the same way here, so the
database holds no more than v2 would have sent: ages of 25 and over become
their band, districts of other records are cleared.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``records.age_band`` and coarsen rows stored from v1 extracts.

    Safe to repeat (SQLite's Python driver commits DDL outside the migration's
    transaction, so a failed attempt can leave the column added).
    """
    bind = op.get_bind()
    columns = {c["name"] for c in sa.inspect(bind).get_columns("records")}
    if "age_band" not in columns:
        op.add_column("records", sa.Column("age_band", sa.String(5), nullable=True))
    op.execute(
        "UPDATE records SET age_band = CASE WHEN age >= 50 THEN '50+' "
        "WHEN age >= 35 THEN '35-49' ELSE '25-34' END, age = NULL WHERE age >= 25"
    )
    op.execute(
        "UPDATE records SET district = NULL WHERE district IS NOT NULL "
        "AND (age IS NULL OR age >= 19) AND NOT EXISTS (SELECT 1 FROM indicators i "
        "WHERE i.record_id = records.id AND i.type = 'expectant_parent')"
    )


def downgrade() -> None:
    """Drop ``age_band`` (the ages and districts cleared are not restored)."""
    with op.batch_alter_table("records") as batch:
        batch.drop_column("age_band")
