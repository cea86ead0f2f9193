"""Storage of the programme engine: its tables and the reads every programme module shares.

The programme's tables (assessment cycles and snapshots, family statuses and
their history, attestations, claims, restriction flags, ruleset switches and
the people attached and claimed for in a phase) are declared here, on the
linkage service's one ``metadata`` so the migrations in
``linkage_service._migrations`` create them with the matcher's tables (a test
checks the two agree). The matcher's tables and reads stay in
``linkage_service._store``; this module only reads those through its helpers.

Must never: create or migrate a schema of its own, or hold anything that names
a person (family and person ids are pseudonymous).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._errors import NotFound
from .._store import metadata

__all__ = [
    "FamilyRecord",
    "attached_persons",
    "attestations",
    "claimed_persons",
    "claims",
    "cycle_row",
    "cycle_versions",
    "cycles",
    "families",
    "family_record",
    "phase_of",
    "restrictions",
    "ruleset_switches",
    "snapshots",
    "status_events",
]

cycles = sa.Table(
    "cycles",
    metadata,
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
snapshots = sa.Table(
    "snapshots",
    metadata,
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
    sa.Index("ix_snapshots_family", "family_id", "cycle_id"),
)
families = sa.Table(
    "families",
    metadata,
    sa.Column("family_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("identified_cycle", sa.Integer, nullable=False),
    sa.Column("attached_on", sa.Date),
    sa.Column("baseline_cycle", sa.Integer),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("updated_by", sa.String(80), nullable=False),
    # a professional id or team code (never a name), for the returns' breakdowns
    sa.Column("lead_professional", sa.String(64)),
)
# Opt-out / restriction flags forwarded by the unlock service; ``persons`` (JSON list)
# are the family's person ids when the flag was set, so the flag follows the people.
restrictions = sa.Table(
    "restrictions",
    metadata,
    sa.Column("family_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("persons", sa.Text, nullable=False),
    sa.Column("set_at", sa.BigInteger, nullable=False),
    sa.Column("set_by", sa.String(80), nullable=False),
)
status_events = sa.Table(
    "status_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("family_id", sa.String(64), nullable=False),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("by", sa.String(80), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Index("ix_status_events_family", "family_id"),
)
attestations = sa.Table(
    "attestations",
    metadata,
    sa.Column("attestation_id", sa.String(36), primary_key=True),
    sa.Column("family_id", sa.String(64), nullable=False),
    sa.Column("cycle_id", sa.Integer, sa.ForeignKey("cycles.id"), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_attestations_family", "family_id", "cycle_id"),
)
claims = sa.Table(
    "claims",
    metadata,
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
    sa.Index("ix_claims_window", "window_id"),
)
# The active programme ruleset, switched between cycles without a restart: the
# latest row is in force; the id is the previous row's plus one (one winner).
ruleset_switches = sa.Table(
    "ruleset_switches",
    metadata,
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


# A family is attached and claimed once per programme phase, whatever its ids do when
# records are re-linked: attachments and claims also belong to the people they were
# made for, and these primary keys make a second attachment, or a second claim of a
# kind, for any of the same people in a phase impossible (the phase is the ruleset's
# name). ``family_id`` is the family's id now (carried when re-linking retires it).
attached_persons = sa.Table(
    "attached_persons",
    metadata,
    sa.Column("phase", sa.String(40), primary_key=True),
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("family_id", sa.String(64), nullable=False),
    sa.Column("attached_on", sa.Date, nullable=False),
    sa.Index("ix_attached_persons_family", "family_id"),
)
claimed_persons = sa.Table(
    "claimed_persons",
    metadata,
    sa.Column("phase", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("claim_id", sa.Integer, sa.ForeignKey("claims.id"), nullable=False),
)


# --- shared reads ------------------------------------------------------------------


def cycle_row(conn: Connection, cycle_id: int | None) -> Any | None:
    """The assessment cycle ``cycle_id`` (the latest when None), or None if there is none."""
    q = sa.select(cycles)
    if cycle_id is None:
        q = q.order_by(cycles.c.id.desc()).limit(1)
    else:
        q = q.where(cycles.c.id == cycle_id)
    return conn.execute(q).first()


def cycle_versions(row: Any) -> dict[str, Any]:
    """The ruleset and model names, versions and SHA-256 a cycle row was assessed with."""
    return {
        "ruleset": {
            "name": row.ruleset_name,
            "version": row.ruleset_version,
            "sha256": row.ruleset_sha256,
        },
        "model": {"name": row.model_name, "version": row.model_version, "sha256": row.model_sha256},
    }


def phase_of(conn: Connection) -> str:
    """The programme phase attachments and claims are counted in: the latest cycle's ruleset."""
    name = conn.execute(
        sa.select(cycles.c.ruleset_name).order_by(cycles.c.id.desc()).limit(1)
    ).scalar()
    if name is None:
        raise NotFound("no assessment has been run")
    return str(name)


class FamilyRecord(NamedTuple):
    """What the programme holds about a family id besides its snapshots."""

    status: Any | None  # its ``families`` row
    history: list[Any]  # ``status_events`` rows, oldest first
    claims: list[Any]  # ``claims`` rows, oldest first


def family_record(conn: Connection, family_id: str) -> FamilyRecord:
    """The family's status row, status history and claims (the family view, subject access)."""
    return FamilyRecord(
        conn.execute(sa.select(families).where(families.c.family_id == family_id)).first(),
        list(
            conn.execute(
                sa.select(status_events)
                .where(status_events.c.family_id == family_id)
                .order_by(status_events.c.id)
            )
        ),
        list(
            conn.execute(
                sa.select(claims).where(claims.c.family_id == family_id).order_by(claims.c.id)
            )
        ),
    )
