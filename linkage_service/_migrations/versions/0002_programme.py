"""Programme engine: assessment cycles, snapshots, family statuses, attestations, claims.

Also records each extract's sealing key id, so the unlock service knows which of
its keys opens a blob after a key rotation.

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
    """Create the programme tables; add ``extracts.seal_key_id``."""
    with op.batch_alter_table("extracts") as batch:
        batch.add_column(sa.Column("seal_key_id", sa.String(16)))
    op.create_table(
        "cycles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("as_at", sa.Date, nullable=False),
        sa.Column("ruleset_name", sa.String(40), nullable=False),
        sa.Column("ruleset_version", sa.String(20), nullable=False),
        sa.Column("ruleset_sha256", sa.String(64), nullable=False),
        sa.Column("ruleset", sa.Text, nullable=False),
        sa.Column("model_name", sa.String(40), nullable=False),
        sa.Column("model_version", sa.String(20), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("stats", sa.Text, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("cycle_id", sa.Integer, sa.ForeignKey("cycles.id"), primary_key=True),
        sa.Column("family_id", sa.String(64), primary_key=True),
        sa.Column("household_id", sa.String(64), nullable=False),
        sa.Column("district", sa.String(4)),
        sa.Column("eligible", sa.Boolean, nullable=False),
        sa.Column("n_problems", sa.SmallInteger, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("percentile", sa.Float, nullable=False),
        sa.Column("previous_score", sa.Integer),
        sa.Column("step", sa.String(4)),
        sa.Column("clearance_required", sa.SmallInteger, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_snapshots_family", "snapshots", ["family_id", "cycle_id"])
    op.create_table(
        "families",
        sa.Column("family_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("identified_cycle", sa.Integer, nullable=False),
        sa.Column("attached_on", sa.Date),
        sa.Column("baseline_cycle", sa.Integer),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(80), nullable=False),
    )
    op.create_table(
        "status_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("by", sa.String(80), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
    )
    op.create_index("ix_status_events_family", "status_events", ["family_id"])
    op.create_table(
        "attestations",
        sa.Column("attestation_id", sa.String(36), primary_key=True),
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("cycle_id", sa.Integer, sa.ForeignKey("cycles.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_attestations_family", "attestations", ["family_id", "cycle_id"])
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("result", sa.String(16)),
        sa.Column("window_id", sa.String(16), nullable=False),
        sa.Column("cycle_id", sa.Integer, sa.ForeignKey("cycles.id"), nullable=False),
        sa.Column("amount_gbp", sa.Integer, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.UniqueConstraint("family_id", "kind", name="uq_claims_family_kind"),
    )
    op.create_index("ix_claims_window", "claims", ["window_id"])


def downgrade() -> None:
    """Drop the programme tables and ``extracts.seal_key_id``."""
    for index, table in (
        ("ix_claims_window", "claims"),
        ("ix_attestations_family", "attestations"),
        ("ix_status_events_family", "status_events"),
        ("ix_snapshots_family", "snapshots"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("claims", "attestations", "status_events", "families", "snapshots", "cycles"):
        op.drop_table(table)
    with op.batch_alter_table("extracts") as batch:
        batch.drop_column("seal_key_id")
