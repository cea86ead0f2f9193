"""Initial schema: entries, checkpoints, cosignatures, append-only triggers.

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

_TABLES = ("entries", "checkpoints", "cosignatures")


def upgrade() -> None:
    """Create the tables and forbid UPDATE, DELETE (and TRUNCATE) on each."""
    op.create_table(
        "entries",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("leaf_data", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("professional_id", sa.String(80)),
        sa.Column("family_id", sa.String(80)),
        sa.Column("purpose_code", sa.String(32)),
        sa.Column("decision", sa.String(16)),
        sa.Column("request_id", sa.String(80)),
        sa.Column("event_time", sa.BigInteger, nullable=False),
    )
    for column in ("type", "professional_id", "family_id", "purpose_code", "request_id"):
        op.create_index(f"ix_entries_{column}", "entries", [column])
    op.create_index("ix_entries_event_time", "entries", ["event_time"])
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "cosignatures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("witness", sa.String(200), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("size", "witness", name="uq_cosignatures_size_witness"),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in _TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'audit_log: {action} on {table} is forbidden, "
                    "the log is append-only'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
            "'audit_log: % on % is forbidden, the log is append-only', TG_OP, TG_TABLE_NAME; "
            "END $$"
        )
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
            )


def downgrade() -> None:
    """The audit log is append-only: schema changes are never rolled back."""
    raise NotImplementedError("audit log migrations are forward-only")
