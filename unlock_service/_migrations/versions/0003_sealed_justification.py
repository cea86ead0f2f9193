"""The justification of a request awaiting approval, sealed to the service's own key
(cleared once the request is decided), so approvers can read it.

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
    """Add the sealed justification column."""
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("sealed_justification", sa.Text))


def downgrade() -> None:
    """Unlock-service migrations are forward-only."""
    raise NotImplementedError("unlock service migrations are forward-only")
