"""Clerical decisions on review pairs; review scores are match probabilities.

``review_decisions`` holds every match / non-match decision a reviewer
recorded on a record pair, with who and when, append-only (a change is the
pair's next version; the unique pair and version lets one of two concurrent
deciders win).

Review rows scoring outside [0, 1] were written by the scorer before match
probabilities (Dice plus hand-set bonuses, up to 1.03 and more). They are not
comparable with the probability thresholds or the queue's order, so they are
removed here (the engine scores such a pair again when one of its records is
re-sent or the model is re-estimated), and a check keeps any from coming back.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``review_decisions``; drop legacy review rows; check review scores."""
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_a", sa.BigInteger, nullable=False),
        sa.Column("record_b", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("decision", sa.String(12), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("evidence", sa.Text),
        sa.Column("decided_at", sa.BigInteger, nullable=False),
        sa.Column("decided_by", sa.String(80), nullable=False),
        sa.UniqueConstraint("record_a", "record_b", "version", name="uq_review_decisions_version"),
        sa.CheckConstraint("record_a < record_b", name="ck_review_decisions_order"),
        sa.CheckConstraint(
            "decision IN ('match', 'non_match')", name="ck_review_decisions_decision"
        ),
    )
    op.create_index("ix_review_decisions_record_b", "review_decisions", ["record_b"])
    op.execute("DELETE FROM review WHERE score < 0 OR score > 1")
    with op.batch_alter_table("review") as batch:
        batch.create_check_constraint("ck_review_probability", "score >= 0 AND score <= 1")


def downgrade() -> None:
    """Drop the check and the decisions table (the removed legacy rows do not come back)."""
    with op.batch_alter_table("review") as batch:
        batch.drop_constraint("ck_review_probability", type_="check")
    op.drop_index("ix_review_decisions_record_b", table_name="review_decisions")
    op.drop_table("review_decisions")
