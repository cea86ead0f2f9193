"""Returns and restrictions: a family's lead professional; opt-out / restriction flags.

``families.lead_professional`` is a code a coordinator records (a professional
id or a team code, never a name), for the returns' breakdowns.
``restrictions`` holds the opt-out and restriction flags forwarded by the
unlock service: the family id it was set on, the kind, and the person ids of
the family when it was set, so the flag follows the people when a refresh
re-links them into another family.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``families.lead_professional`` and the ``restrictions`` table."""
    with op.batch_alter_table("families") as batch:
        batch.add_column(sa.Column("lead_professional", sa.String(64)))
    op.create_table(
        "restrictions",
        sa.Column("family_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("persons", sa.Text, nullable=False),
        sa.Column("set_at", sa.BigInteger, nullable=False),
        sa.Column("set_by", sa.String(80), nullable=False),
    )


def downgrade() -> None:
    """Drop the table and the column."""
    op.drop_table("restrictions")
    with op.batch_alter_table("families") as batch:
        batch.drop_column("lead_professional")
