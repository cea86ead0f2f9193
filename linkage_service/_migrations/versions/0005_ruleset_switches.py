"""Ruleset switches: the active programme ruleset, changed between cycles without a restart.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``ruleset_switches``."""
    op.create_table(
        "ruleset_switches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ruleset_name", sa.String(40), nullable=False),
        sa.Column("ruleset_version", sa.String(20), nullable=False),
        sa.Column("ruleset_sha256", sa.String(64), nullable=False),
        sa.Column("ruleset", sa.Text, nullable=False),
        sa.Column("previous_sha256", sa.String(64), nullable=False),
        sa.Column("switched_at", sa.BigInteger, nullable=False),
        sa.Column("switched_by", sa.String(80), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    """Drop ``ruleset_switches``."""
    op.drop_table("ruleset_switches")
