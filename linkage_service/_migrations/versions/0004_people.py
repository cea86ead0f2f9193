"""Attachments and claims belong to people: one of each per person and programme phase.

Attachments and claims made before this revision are carried over for the
people their family holds now.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``attached_persons`` and ``claimed_persons`` and fill them from what is held."""
    op.create_table(
        "attached_persons",
        sa.Column("phase", sa.String(40), primary_key=True),
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("attached_on", sa.Date, nullable=False),
    )
    op.create_index("ix_attached_persons_family", "attached_persons", ["family_id"])
    op.create_table(
        "claimed_persons",
        sa.Column("phase", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("claim_id", sa.Integer, sa.ForeignKey("claims.id"), nullable=False),
    )
    # the phase of what is held: the latest cycle's ruleset; the people: the family's
    # household members now ('fam_' + hex is the household 'hh_' + hex)
    household = "'hh_' || substr(f.family_id, 5)"
    phase = "(SELECT ruleset_name FROM cycles ORDER BY id DESC LIMIT 1)"
    op.execute(
        "INSERT INTO attached_persons (phase, person_id, family_id, attached_on) "
        f"SELECT {phase}, ph.person_id, f.family_id, f.attached_on "
        f"FROM families f JOIN person_household ph ON ph.household_id = {household} "
        "WHERE f.attached_on IS NOT NULL"
    )
    op.execute(
        "INSERT INTO claimed_persons (phase, kind, person_id, claim_id) "
        f"SELECT {phase}, c.kind, ph.person_id, min(c.id) "
        "FROM claims c JOIN person_household ph "
        "ON ph.household_id = 'hh_' || substr(c.family_id, 5) "
        "GROUP BY c.kind, ph.person_id"
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("claimed_persons")
    op.drop_index("ix_attached_persons_family", table_name="attached_persons")
    op.drop_table("attached_persons")
