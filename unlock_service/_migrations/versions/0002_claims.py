"""Guarded transitions: a claim token and time on requests, a status index, and
the reconciliation mark (how far the audit log's grants were checked against rows).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the claim columns, the status index and the reconciliation table."""
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("claim", sa.String(32)))
        batch.add_column(sa.Column("claimed_at", sa.BigInteger))
    op.create_index("ix_requests_status", "requests", ["status"])
    op.create_table(
        "reconciliation",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("audit_index", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    """Unlock-service migrations are forward-only."""
    raise NotImplementedError("unlock service migrations are forward-only")
