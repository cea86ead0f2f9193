"""Initial schema: agencies, extracts, records, persons, households, links, runs.

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
    """Create every table and the indexes the API queries use."""
    op.create_table(
        "agencies",
        sa.Column("agency_id", sa.String(40), primary_key=True),
        sa.Column("idx", sa.SmallInteger, nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("extract_types", sa.Text, nullable=False),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("agency_id", sa.String(40)),
        sa.Column("extract_id", sa.String(32)),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("stats", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "extracts",
        sa.Column("extract_id", sa.String(32), primary_key=True),
        sa.Column("agency_id", sa.String(40), sa.ForeignKey("agencies.agency_id"), nullable=False),
        sa.Column("extract_type", sa.String(40), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("extract_date", sa.Date, nullable=False),
        sa.Column("schema_fingerprint", sa.String(64), nullable=False),
        sa.Column("record_count", sa.Integer, nullable=False),
        sa.Column("records_sha256", sa.String(64), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    )
    op.create_index("ix_extracts_agency_status", "extracts", ["agency_id", "status"])
    op.create_table(
        "records",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("agency_id", sa.String(40), sa.ForeignKey("agencies.agency_id"), nullable=False),
        sa.Column("record_ref", sa.String(32), nullable=False),
        sa.Column("extract_id", sa.String(32), nullable=False),
        sa.Column("first_extract_id", sa.String(32), nullable=False),
        sa.Column("retired_by", sa.String(32)),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("content_sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("clk", sa.LargeBinary, nullable=False),
        sa.Column("address_clk", sa.LargeBinary),
        sa.Column("exact_tokens", sa.Text, nullable=False),
        sa.Column("blocking_keys", sa.Text, nullable=False),
        sa.Column("age", sa.SmallInteger),
        sa.Column("sex", sa.String(1)),
        sa.Column("district", sa.String(4)),
        sa.Column("extract_date", sa.Date, nullable=False),
        sa.Column("sealed_identity", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "uq_records_active_ref",
        "records",
        ["agency_id", "record_ref"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )
    op.create_index("ix_records_agency_ref", "records", ["agency_id", "record_ref"])
    op.create_index("ix_records_active", "records", ["active"])
    op.create_table(
        "indicators",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.BigInteger, sa.ForeignKey("records.id"), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
    )
    op.create_index("ix_indicators_record", "indicators", ["record_id"])
    op.create_table(
        "persons",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_run", sa.Integer, nullable=False),
        sa.Column("retired_run", sa.Integer),
    )
    op.create_table(
        "record_person",
        sa.Column("record_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("person_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_record_person_person", "record_person", ["person_id"])
    op.create_table(
        "households",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_run", sa.Integer, nullable=False),
        sa.Column("retired_run", sa.Integer),
    )
    op.create_table(
        "person_household",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("household_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_person_household_household", "person_household", ["household_id"])
    for name in ("links", "review"):
        op.create_table(
            name,
            sa.Column("record_a", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("record_b", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("score", sa.Float, nullable=False),
            sa.Column("evidence", sa.Text, nullable=False),
            sa.Column("run_id", sa.Integer, nullable=False),
        )
        op.create_index(f"ix_{name}_record_b", name, ["record_b"])
    op.create_table(
        "id_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("from_id", sa.String(64), nullable=False),
        sa.Column("to_id", sa.String(64)),
    )
    op.create_index("ix_id_events_from", "id_events", ["from_id"])


def downgrade() -> None:
    """Migrations are forward-only: restore a backup to go back."""
    raise NotImplementedError("linkage service migrations are forward-only")
