"""Storage of the programme engine: its tables, the reads every programme module shares.

The programme's SQL lives only in ``_store.py`` and its siblings
``_store_assessment.py`` (cycles, snapshots, status moves), ``_store_claims.py``
(claims) and ``_store_reports.py`` (the returns' reads); every other programme
module calls their named functions, which take the caller's connection (the
caller keeps the transaction) and answer with typed rows (``NamedTuple``), and
``tests/linkage_service/test_layout.py`` keeps it so. This module also holds the
statuses, attestations, restriction flags and ruleset switches.

The programme's tables (assessment cycles and snapshots, family statuses and
their history, attestations, claims, restriction flags, ruleset switches and
the people attached and claimed for in a phase) are declared here, on the
linkage service's one ``metadata`` so the migrations in
``linkage_service._migrations`` create them with the matcher's tables (a test
checks the two agree). The matcher's tables and reads stay in
``linkage_service._store``; the programme's store modules read a few of them
(records and extracts, for sealed blobs; persons, households, indicators, for a
cycle) and never write one.

Must never: create or migrate a schema of its own, or hold anything that names
a person (family and person ids are pseudonymous).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterator, Sequence
from typing import Any, NamedTuple, Protocol, TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .. import _store as mstore
from .._errors import NotFound, StorageError
from .._store import metadata

__all__ = [
    "AttestationRow",
    "Claim",
    "CycleRow",
    "CycleVersions",
    "FamilyRecord",
    "FamilyRow",
    "RestrictionRow",
    "SealedRow",
    "StatusEvent",
    "SwitchRow",
    "VersionJson",
    "add_attestations",
    "add_status_events",
    "add_switch",
    "attached_in",
    "attached_persons",
    "attestation_body",
    "attestation_by_hash",
    "attestations",
    "baseline_ruleset_texts",
    "claimed_persons",
    "claims",
    "cycle_row",
    "cycle_rows",
    "cycle_shas",
    "cycle_versions",
    "cycles",
    "delete_restriction",
    "export_families_page",
    "families",
    "family_record",
    "family_row",
    "family_rows",
    "latest_cycle_id",
    "latest_detail",
    "latest_switch",
    "list_switches",
    "max_cycle_id",
    "move_statuses",
    "phase_of",
    "put_restriction",
    "restriction_rows",
    "restrictions",
    "ruleset_switches",
    "insert_rows",
    "sealed_blobs",
    "snapshot_details",
    "snapshot_score",
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


class CycleRow(NamedTuple):
    """An assessment cycle: its date, the ruleset and model (JSON) it used, who ran it.

    ``ruleset`` and ``model`` are empty in listings (:func:`cycle_rows`); ``stats``
    is the cycle's summary JSON.
    """

    id: int
    as_at: dt.date
    ruleset_name: str
    ruleset_version: str
    ruleset_sha256: str
    ruleset: str
    model_name: str
    model_version: str
    model_sha256: str
    model: str
    created_at: int
    created_by: str
    stats: str


def cycle_row(conn: Connection, cycle_id: int | None) -> CycleRow | None:
    """The assessment cycle ``cycle_id`` (the latest when None), or None if there is none."""
    q = sa.select(cycles)
    if cycle_id is None:
        q = q.order_by(cycles.c.id.desc()).limit(1)
    else:
        q = q.where(cycles.c.id == cycle_id)
    found = conn.execute(q).first()
    return None if found is None else CycleRow._make(found)


def cycle_rows(conn: Connection, limit: int) -> list[CycleRow]:
    """The newest ``limit`` cycles, newest first, without their ruleset and model content."""
    c = cycles
    cols = [
        sa.literal("").label(col.name) if col.name in ("ruleset", "model") else col for col in c.c
    ]
    rows = conn.execute(sa.select(*cols).order_by(c.c.id.desc()).limit(limit))
    return [CycleRow._make(r) for r in rows]


class VersionJson(TypedDict):
    """A ruleset or risk model by name, version and SHA-256 (``protocols.VersionRef``)."""

    name: str
    version: str
    sha256: str


class CycleVersions(TypedDict):
    """The ruleset and model of a cycle, as a report's provenance spells them."""

    ruleset: VersionJson
    model: VersionJson


def cycle_versions(row: CycleRow) -> CycleVersions:
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


class Claim(NamedTuple):
    """A stored claim (a ``claims`` row; ``evidence`` is its JSON)."""

    id: int
    family_id: str
    kind: str
    result: str | None
    window_id: str
    cycle_id: int
    amount_gbp: int
    evidence: str
    created_at: int
    created_by: str


class FamilyRecord(NamedTuple):
    """What the programme holds about a family id besides its snapshots."""

    status: FamilyRow | None
    history: list[StatusEvent]  # oldest first
    claims: list[Claim]  # oldest first


def family_record(conn: Connection, family_id: str) -> FamilyRecord:
    """The family's status row, status history and claims (the family view, subject access)."""
    e = status_events
    events = conn.execute(
        sa.select(e.c.family_id, e.c.from_status, e.c.to_status, e.c.at, e.c.by, e.c.reason)
        .where(e.c.family_id == family_id)
        .order_by(e.c.id)
    )
    made = conn.execute(
        sa.select(claims).where(claims.c.family_id == family_id).order_by(claims.c.id)
    )
    return FamilyRecord(
        family_row(conn, family_id),
        [StatusEvent._make(r) for r in events],
        [Claim._make(r) for r in made],
    )


# --- bulk export ---------------------------------------------------------------------


def latest_cycle_id(engine: Engine) -> int:
    """The newest assessment cycle's id; NotFound if no assessment has been run."""
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.select(sa.func.max(cycles.c.id))).scalar()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the assessment cycles: {exc}") from exc
    if found is None:
        raise NotFound("no assessment has been run: there are no families to export")
    return int(found)


def export_families_page(
    engine: Engine, cycle_id: int, after: str | None, limit: int
) -> list[dict[str, Any]]:
    """Families of cycle ``cycle_id`` with ids above ``after`` (at most ``limit``), id order.

    One keyset page over the snapshots' primary key: the cycle's score, rank,
    eligibility and members (the persons it assessed), and each family's status now.
    """
    s, f = snapshots, families
    q = (
        sa.select(
            s.c.family_id,
            s.c.household_id,
            s.c.eligible,
            s.c.n_problems,
            s.c.score,
            s.c.rank,
            s.c.percentile,
            s.c.clearance_required,
            s.c.district,
            s.c.detail,
            f.c.status,
        )
        .outerjoin(f, f.c.family_id == s.c.family_id)
        .where(s.c.cycle_id == cycle_id)
    )
    if after is not None:
        q = q.where(s.c.family_id > after)
    try:
        with engine.connect() as conn:
            rows = conn.execute(q.order_by(s.c.family_id).limit(limit)).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot export families of cycle {cycle_id}: {exc}") from exc
    return [
        {
            "family_id": str(r.family_id),
            "household_id": str(r.household_id),
            "cycle_id": cycle_id,
            "members": sorted(str(m["person_id"]) for m in json.loads(r.detail).get("members", ())),
            "eligible": bool(r.eligible),
            "problems": int(r.n_problems),
            "score": int(r.score),
            "rank": int(r.rank),
            "percentile": float(r.percentile),
            "clearance_required": int(r.clearance_required),
            "postcode_district": r.district,
            "status": r.status,
        }
        for r in rows
    ]


# --- snapshots ---------------------------------------------------------------------------


def max_cycle_id(conn: Connection) -> int | None:
    """The newest assessment cycle's id, or None before the first assessment."""
    found = conn.execute(sa.select(sa.func.max(cycles.c.id))).scalar()
    return None if found is None else int(found)


def cycle_shas(conn: Connection, cycle_id: int) -> tuple[str, str] | None:
    """The ruleset and model SHA-256 cycle ``cycle_id`` was assessed with (None if no cycle)."""
    c = cycles
    row = conn.execute(
        sa.select(c.c.ruleset_sha256, c.c.model_sha256).where(c.c.id == cycle_id)
    ).first()
    return None if row is None else (str(row.ruleset_sha256), str(row.model_sha256))


def snapshot_details(conn: Connection, cycle_id: int) -> Iterator[tuple[str, str]]:
    """(family id, detail JSON) of every snapshot of cycle ``cycle_id``, streamed."""
    s = snapshots
    q = sa.select(s.c.family_id, s.c.detail).where(s.c.cycle_id == cycle_id)
    for fid, detail in conn.execute(q, execution_options={"yield_per": 20_000}):
        yield str(fid), str(detail)


def latest_detail(conn: Connection, family_id: str) -> str | None:
    """The detail JSON of the family's latest snapshot, or None if it was never assessed."""
    s = snapshots
    found = conn.execute(
        sa.select(s.c.detail)
        .where(s.c.family_id == family_id)
        .order_by(s.c.cycle_id.desc())
        .limit(1)
    ).scalar()
    return None if found is None else str(found)


# --- the active ruleset --------------------------------------------------------------------


class SwitchRow(NamedTuple):
    """One switch of the active ruleset (``ruleset`` is its JSON; empty in listings)."""

    id: int
    ruleset_name: str
    ruleset_version: str
    ruleset_sha256: str
    previous_sha256: str
    switched_at: int
    switched_by: str
    reason: str
    ruleset: str


def latest_switch(conn: Connection) -> SwitchRow | None:
    """The ruleset switch in force (the latest), or None if the ruleset was never switched."""
    t = ruleset_switches
    row = conn.execute(sa.select(*_switch_cols(), t.c.ruleset).order_by(t.c.id.desc()).limit(1))
    found = row.first()
    return None if found is None else SwitchRow._make(found)


def _switch_cols() -> list[sa.Column[Any]]:
    t = ruleset_switches
    return [
        t.c.id,
        t.c.ruleset_name,
        t.c.ruleset_version,
        t.c.ruleset_sha256,
        t.c.previous_sha256,
        t.c.switched_at,
        t.c.switched_by,
        t.c.reason,
    ]


def list_switches(conn: Connection) -> list[SwitchRow]:
    """Every switch of the active ruleset, newest first, without the rulesets' content."""
    t = ruleset_switches
    rows = conn.execute(sa.select(*_switch_cols()).order_by(t.c.id.desc())).all()
    return [SwitchRow._make((*r, "")) for r in rows]


def add_switch(conn: Connection, switch: SwitchRow) -> None:
    """Store a switch; IntegrityError if another switch took its id (the guard: one winner)."""
    conn.execute(ruleset_switches.insert().values(**switch._asdict()))


def baseline_ruleset_texts(conn: Connection) -> Iterator[str]:
    """The rulesets (JSON) of the cycles holding attached families' baselines and the latest."""
    f, c = families, cycles
    baseline_cycles = sa.select(f.c.baseline_cycle).where(f.c.baseline_cycle.is_not(None))
    latest = sa.select(sa.func.max(c.c.id)).scalar_subquery()
    q = (
        sa.select(c.c.ruleset_sha256, sa.func.min(c.c.id))
        .where(sa.or_(c.c.id.in_(baseline_cycles), c.c.id == latest))
        .group_by(c.c.ruleset_sha256)
    )
    for _sha, cycle_id in conn.execute(q).all():
        yield str(conn.execute(sa.select(c.c.ruleset).where(c.c.id == cycle_id)).scalar_one())


# --- restrictions ---------------------------------------------------------------------------


class RestrictionRow(NamedTuple):
    """A family's restriction flag; ``persons`` is the JSON list of its person ids then."""

    family_id: str
    kind: str
    persons: str
    set_at: int
    set_by: str


def restriction_rows(conn: Connection) -> list[RestrictionRow]:
    """Every flag in force, by family id."""
    r = restrictions
    q = sa.select(r.c.family_id, r.c.kind, r.c.persons, r.c.set_at, r.c.set_by)
    return [RestrictionRow._make(row) for row in conn.execute(q.order_by(r.c.family_id))]


def put_restriction(conn: Connection, flag: RestrictionRow) -> None:
    """Replace the family's flag with ``flag`` (delete then insert, in the caller's transaction)."""
    r = restrictions
    conn.execute(r.delete().where(r.c.family_id == flag.family_id))
    conn.execute(r.insert().values(**flag._asdict()))


def delete_restriction(conn: Connection, family_id: str) -> str | None:
    """Lift the family's flag; the kind lifted, or None if it carried none (or lost a race)."""
    r = restrictions
    kind = conn.execute(sa.select(r.c.kind).where(r.c.family_id == family_id)).scalar()
    gone = conn.execute(r.delete().where(r.c.family_id == family_id, r.c.kind == kind)).rowcount
    return None if kind is None or gone == 0 else str(kind)


# --- attestations ----------------------------------------------------------------------------


class AttestationRow(NamedTuple):
    """A stored signed attestation: ``body`` is the SignedAttestation JSON."""

    attestation_id: str
    family_id: str
    cycle_id: int
    sha256: str
    body: str


class _TableRow(Protocol):
    """A typed row named like its table's columns (the NamedTuples here)."""

    def _asdict(self) -> dict[str, Any]: ...


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[_TableRow], batch: int) -> None:
    """Insert typed rows into ``table``, ``batch`` rows per executemany."""
    for start in range(0, len(rows), batch):
        conn.execute(table.insert(), [r._asdict() for r in rows[start : start + batch]])


def add_attestations(conn: Connection, rows: Sequence[AttestationRow], batch: int = 2000) -> None:
    """Store signed attestations, ``batch`` rows per executemany."""
    insert_rows(conn, attestations, rows, batch)


def snapshot_score(conn: Connection, cycle_id: int, family_id: str) -> int | None:
    """The family's score in cycle ``cycle_id``, or None if that cycle has no snapshot of it."""
    s = snapshots
    found = conn.execute(
        sa.select(s.c.score).where(s.c.cycle_id == cycle_id, s.c.family_id == family_id)
    ).first()
    return None if found is None else int(found.score)


def attestation_body(conn: Connection, family_id: str, cycle_id: int) -> str | None:
    """The family's signed attestation (JSON) of cycle ``cycle_id``, or None."""
    a = attestations
    found = conn.execute(
        sa.select(a.c.body).where(a.c.family_id == family_id, a.c.cycle_id == cycle_id)
    ).scalar()
    return None if found is None else str(found)


def attestation_by_hash(conn: Connection, family_id: str, sha256: str) -> tuple[str, int] | None:
    """(body JSON, cycle id) of the family's attestation with hash ``sha256``, or None."""
    a = attestations
    found = conn.execute(
        sa.select(a.c.body, a.c.cycle_id).where(a.c.sha256 == sha256, a.c.family_id == family_id)
    ).first()
    return None if found is None else (str(found.body), int(found.cycle_id))


class SealedRow(NamedTuple):
    """The sealed identity of a record's newest version, with its extract's seal key id."""

    extract_id: str
    sealed_identity: bytes
    seal_key_id: str


def sealed_blobs(
    conn: Connection, wanted: Collection[tuple[str, str]]
) -> dict[tuple[str, str], SealedRow]:
    """The sealed identity of each (agency, record ref): its active version first, then
    the newest; a record gone since is absent.

    One query for a whole family rather than one per member (the active rows and
    the retired ones, each through its index); each record's best row is taken here.
    """
    if not wanted:
        return {}
    r, x = mstore.records, mstore.extracts
    agencies = sorted({a for a, _ in wanted})
    refs = sorted({ref for _, ref in wanted})

    def held(state: sa.ColumnElement[bool]) -> sa.Select[Any]:
        # One statement shape whatever the family (so its compiled form is cached):
        # both IN lists use the (agency_id, record_ref) index of the active records,
        # or of the retired ones; pairs outside the family that the cross product
        # lets through are dropped below.
        return (
            sa.select(
                r.c.agency_id,
                r.c.record_ref,
                r.c.extract_id,
                r.c.sealed_identity,
                x.c.seal_key_id,
                r.c.active,
                r.c.seq,
            )
            .join(x, x.c.extract_id == r.c.extract_id)
            .where(state, r.c.agency_id.in_(agencies), r.c.record_ref.in_(refs))
        )

    best: dict[tuple[str, str], tuple[tuple[bool, int], SealedRow]] = {}
    for agency_id, record_ref, extract_id, sealed, seal_key_id, active, seq in conn.execute(
        sa.union_all(held(r.c.active), held(~r.c.active))
    ):
        key = (agency_id, record_ref)
        rank = (bool(active), int(seq))
        if key in wanted and (key not in best or rank > best[key][0]):
            best[key] = (rank, SealedRow(str(extract_id), bytes(sealed), str(seal_key_id)))
    return {key: row for key, (_, row) in best.items()}


# --- family statuses -----------------------------------------------------------------------


class FamilyRow(NamedTuple):
    """A family's programme status (its ``families`` row)."""

    family_id: str
    status: str
    identified_cycle: int
    attached_on: dt.date | None
    baseline_cycle: int | None
    updated_at: int
    updated_by: str
    lead_professional: str | None


def _family_rows(q: sa.Select[Any], conn: Connection) -> list[FamilyRow]:
    return [FamilyRow._make(r) for r in conn.execute(q)]


def last_closed_at(conn: Connection, family_id: str) -> int | None:
    """When (micros) the family was last closed, or None if it never was."""
    e = status_events
    return conn.execute(
        sa.select(sa.func.max(e.c.at)).where(e.c.family_id == family_id, e.c.to_status == "closed")
    ).scalar_one_or_none()


def family_row(conn: Connection, family_id: str) -> FamilyRow | None:
    """The family's status row, or None if it has none."""
    found = _family_rows(sa.select(families).where(families.c.family_id == family_id), conn)
    return found[0] if found else None


def family_rows(conn: Connection, family_ids: Sequence[str] | None = None) -> list[FamilyRow]:
    """The status rows of ``family_ids`` (of every family when None)."""
    q = sa.select(families)
    if family_ids is not None:
        q = q.where(families.c.family_id.in_(list(family_ids)))
    return _family_rows(q, conn)


def attached_in(conn: Connection, statuses: Sequence[str]) -> list[FamilyRow]:
    """Families with a baseline whose status is one of ``statuses``."""
    f = families
    q = sa.select(f).where(f.c.status.in_(list(statuses)), f.c.baseline_cycle.is_not(None))
    return _family_rows(q, conn)


class StatusEvent(NamedTuple):
    """One move of a family's status (a ``status_events`` row)."""

    family_id: str
    from_status: str | None
    to_status: str
    at: int
    by: str
    reason: str


def add_status_events(conn: Connection, events: Sequence[StatusEvent], batch: int = 2000) -> None:
    """Record status moves, ``batch`` rows per executemany."""
    for start in range(0, len(events), batch):
        conn.execute(status_events.insert(), [e._asdict() for e in events[start : start + batch]])


def move_statuses(
    conn: Connection, family_ids: Sequence[str], to_status: str, stamp: int, actor: str
) -> None:
    """Set the status of ``family_ids`` to ``to_status`` (the caller has checked each one's)."""
    f = families
    for part in mstore.chunks(list(family_ids)):
        conn.execute(
            f.update()
            .where(f.c.family_id.in_(part))
            .values(status=to_status, updated_at=stamp, updated_by=actor)
        )
