"""Initial schema: professionals, nonces, requests, approvals, restrictions, reviews.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create every table and the indexes the service queries use."""
    op.create_table(
        "professionals",
        sa.Column("professional_id", sa.String(80), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("team", sa.String(64), nullable=False),
        sa.Column("clearance", sa.SmallInteger, nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "nonces",
        sa.Column("nonce", sa.String(32), primary_key=True),
        sa.Column("professional_id", sa.String(80), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_nonces_expires_at", "nonces", ["expires_at"])
    op.create_table(
        "requests",
        sa.Column("request_id", sa.String(80), primary_key=True),
        sa.Column("professional_id", sa.String(80), nullable=False),
        sa.Column("family_id", sa.String(80), nullable=False),
        sa.Column("purpose_code", sa.String(32), nullable=False),
        sa.Column("justification_sha256", sa.String(64), nullable=False),
        sa.Column("attestation_sha256", sa.String(64), nullable=False),
        sa.Column("attestation_json", sa.Text),
        sa.Column("clearance_required", sa.SmallInteger),
        sa.Column("break_glass", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("decided_at", sa.BigInteger),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("released_at", sa.BigInteger),
        sa.Column("request_index", sa.BigInteger),
        sa.Column("decision_index", sa.BigInteger),
    )
    op.create_index("ix_requests_family_id", "requests", ["family_id"])
    op.create_index(
        "ix_requests_professional_created", "requests", ["professional_id", "created_at"]
    )
    op.create_table(
        "approvals",
        sa.Column("request_id", sa.String(80), primary_key=True),
        sa.Column("approver_id", sa.String(80), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("audit_index", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "restrictions",
        sa.Column("family_id", sa.String(80), primary_key=True),
        sa.Column("flag", sa.String(32), nullable=False),
        sa.Column("actor_id", sa.String(80), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "reviews",
        sa.Column("request_id", sa.String(80), primary_key=True),
        sa.Column("professional_id", sa.String(80), nullable=False),
        sa.Column("family_id", sa.String(80), nullable=False),
        sa.Column("purpose_code", sa.String(32), nullable=False),
        sa.Column("opened_at", sa.BigInteger, nullable=False),
        sa.Column("due_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16)),
        sa.Column("reviewer_id", sa.String(80)),
        sa.Column("closed_at", sa.BigInteger),
        sa.Column("notes_sha256", sa.String(64)),
        sa.Column("audit_index", sa.BigInteger),
    )
    op.create_index("ix_reviews_status", "reviews", ["status"])


def downgrade() -> None:
    """Unlock-service migrations are forward-only."""
    raise NotImplementedError("unlock service migrations are forward-only")
