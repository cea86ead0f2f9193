"""Review queue: each review pair's uncertainty, queue rank and impact on families.

``uncertainty`` (|probability - 0.5|) is filled in for the pairs already held;
their impact stays unknown (rank 1) until the next assessment cycle.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the queue columns to ``review``, fill in uncertainty, index the queue order."""
    with op.batch_alter_table("review") as batch:
        batch.add_column(sa.Column("uncertainty", sa.Float))
        batch.add_column(
            sa.Column("queue_rank", sa.SmallInteger, nullable=False, server_default="1")
        )
        batch.add_column(sa.Column("impact", sa.String(12)))
        batch.add_column(sa.Column("impact_cycle", sa.Integer))
        batch.add_column(sa.Column("impact_detail", sa.Text))
    op.execute("UPDATE review SET uncertainty = abs(score - 0.5)")
    with op.batch_alter_table("review") as batch:
        batch.alter_column("uncertainty", existing_type=sa.Float, nullable=False)
    op.create_index(
        "ix_review_queue", "review", ["queue_rank", "uncertainty", "record_a", "record_b"]
    )


def downgrade() -> None:
    """Drop the queue index and columns."""
    op.drop_index("ix_review_queue", table_name="review")
    with op.batch_alter_table("review") as batch:
        for column in ("impact_detail", "impact_cycle", "impact", "queue_rank", "uncertainty"):
            batch.drop_column(column)
