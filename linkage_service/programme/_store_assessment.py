"""Storage of assessment cycles: what a cycle reads and writes, and the status moves.

The SQL of ``_assessment.py``: named functions over the caller's connection.
``run_cycle`` opens one transaction for a whole cycle and ``set_status`` one
per move, so a cycle is written whole or not at all, and a status move stays
one guarded ``UPDATE ... WHERE status = <expected>`` (:func:`guarded_move`) of
which exactly one concurrent caller wins. The matcher's tables (persons,
households, records) are read, never written.

Must never: open a transaction of its own, or decide a status (callers do).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import _store as mstore
from ._store import (
    CycleRow,
    FamilyRow,
    attached_persons,
    claims,
    cycles,
    families,
    insert_rows,
    snapshots,
)

__all__ = [
    "ActiveRecord",
    "FamilySnapshot",
    "ListedSnapshot",
    "SnapshotRow",
    "add_attached_persons",
    "add_cycle",
    "add_families",
    "add_snapshots",
    "attached_holder",
    "attached_people",
    "active_events",
    "active_records",
    "carry_over",
    "current_households",
    "cycle_scores",
    "family_snapshots",
    "family_statuses",
    "guarded_move",
    "ids_in_status",
    "latest_snapshot_cycle",
    "listed_snapshots",
    "reassign_attached",
    "reidentify",
    "retired_households",
    "set_cycle_stats",
    "set_lead",
    "snapshot_details_of",
]


# --- what a cycle reads of the matcher's tables ------------------------------------------


def current_households(conn: Connection) -> dict[str, str]:
    """Person id -> household id, for every person not retired."""
    p, ph = mstore.persons, mstore.person_household
    q = (
        sa.select(ph.c.person_id, ph.c.household_id)
        .join(p, p.c.id == ph.c.person_id)
        .where(p.c.retired_run.is_(None))
    )
    found: dict[str, str] = dict(conn.execute(q).all())
    return found


# An active record with its person, as the assessment reads it: (record id, person id,
# agency id, record ref, age, sex, postcode district, extract date, extract type,
# arrival order, age band). A plain tuple, not a NamedTuple: a cycle reads a
# million of them and building a NamedTuple per row doubled the read's CPU time.
ActiveRecord = tuple[
    int, str, str, str, int | None, str | None, str | None, dt.date, str, int, str | None
]


def active_records(conn: Connection) -> Iterator[ActiveRecord]:
    """Every active record with its person and extract type, streamed."""
    r, rp, x = mstore.records, mstore.record_person, mstore.extracts
    q = (
        sa.select(
            r.c.id,
            rp.c.person_id,
            r.c.agency_id,
            r.c.record_ref,
            r.c.age,
            r.c.sex,
            r.c.district,
            r.c.extract_date,
            x.c.extract_type,
            r.c.seq,
            r.c.age_band,
        )
        .join(rp, rp.c.record_id == r.c.id)
        .join(x, x.c.extract_id == r.c.extract_id)
        # "= true" rather than the bare column: SQLite then reads the table in order
        # instead of through the partial index (5x faster at a million records)
        .where(r.c.active == sa.true())
    )
    yield from map(tuple, conn.execute(q, execution_options={"yield_per": 20_000}))


def active_events(conn: Connection) -> Iterator[tuple[int, str, float, dt.date]]:
    """(record id, type, value, date) of every indicator of an active record, streamed."""
    r, i = mstore.records, mstore.indicators
    q = (
        sa.select(i.c.record_id, i.c.type, i.c.value, i.c.date)
        .join(r, r.c.id == i.c.record_id)
        .where(r.c.active)
    )
    yield from map(tuple, conn.execute(q, execution_options={"yield_per": 50_000}))


def retired_households(conn: Connection, household_ids: Iterable[str]) -> list[str]:
    """Those of ``household_ids`` that re-linking retired."""
    h = mstore.households
    out: list[str] = []
    for part in mstore.chunks(list(household_ids)):
        q = sa.select(h.c.id).where(h.c.id.in_(part), h.c.retired_run.is_not(None))
        out += [str(x) for (x,) in conn.execute(q)]
    return out


# --- cycles and snapshots ------------------------------------------------------------------


def add_cycle(conn: Connection, cycle: CycleRow) -> None:
    """Store a cycle row (its stats are set when the cycle is complete)."""
    conn.execute(cycles.insert().values(**cycle._asdict()))


def set_cycle_stats(conn: Connection, cycle_id: int, stats: str) -> None:
    """Record the cycle's summary JSON."""
    conn.execute(cycles.update().where(cycles.c.id == cycle_id).values(stats=stats))


class SnapshotRow(NamedTuple):
    """A family's snapshot in a cycle (a ``snapshots`` row; ``detail`` is its JSON)."""

    cycle_id: int
    family_id: str
    household_id: str
    district: str | None
    eligible: bool
    n_problems: int
    score: int
    rank: int
    percentile: float
    previous_score: int | None
    step: str | None
    clearance_required: int
    detail: str


def add_snapshots(conn: Connection, rows: Sequence[SnapshotRow]) -> None:
    """Store snapshots in one executemany (the caller batches)."""
    if rows:
        conn.execute(snapshots.insert(), [r._asdict() for r in rows])


def cycle_scores(conn: Connection, cycle_id: int) -> dict[str, int]:
    """Family id -> score in cycle ``cycle_id``."""
    s = snapshots
    q = sa.select(s.c.family_id, s.c.score).where(s.c.cycle_id == cycle_id)
    return {str(f): int(sc) for f, sc in conn.execute(q)}


def snapshot_details_of(
    conn: Connection, cycle_id: int, family_ids: Sequence[str]
) -> Iterator[tuple[str, str]]:
    """(family id, detail JSON) of ``family_ids``' snapshots in cycle ``cycle_id``."""
    s = snapshots
    for part in mstore.chunks(list(family_ids)):
        q = sa.select(s.c.family_id, s.c.detail).where(
            s.c.cycle_id == cycle_id, s.c.family_id.in_(part)
        )
        for fid, detail in conn.execute(q):
            yield str(fid), str(detail)


def latest_snapshot_cycle(conn: Connection, family_id: str) -> int | None:
    """The newest cycle with a snapshot of the family, or None if it was never assessed."""
    s = snapshots
    found = conn.execute(
        sa.select(s.c.cycle_id)
        .where(s.c.family_id == family_id)
        .order_by(s.c.cycle_id.desc())
        .limit(1)
    ).scalar()
    return None if found is None else int(found)


class ListedSnapshot(NamedTuple):
    """A row of a cycle's family list: the snapshot and the family's status now."""

    family_id: str
    household_id: str
    district: str | None
    eligible: bool
    n_problems: int
    score: int
    rank: int
    percentile: float
    step: str | None
    previous_score: int | None
    clearance_required: int
    detail: str
    status: str | None


def listed_snapshots(
    conn: Connection,
    cycle_id: int,
    *,
    eligible: bool | None = None,
    status: str | None = None,
    district: str | None = None,
    min_score: int | None = None,
    max_score: int | None = None,
    page: tuple[int, int] | None = None,
) -> list[ListedSnapshot]:
    """Cycle ``cycle_id``'s families matching the filters, highest score first.

    ``page`` is (offset, limit); None reads them all (the caller filters further).
    """
    s, f = snapshots, families
    q = (
        sa.select(
            s.c.family_id,
            s.c.household_id,
            s.c.district,
            s.c.eligible,
            s.c.n_problems,
            s.c.score,
            s.c.rank,
            s.c.percentile,
            s.c.step,
            s.c.previous_score,
            s.c.clearance_required,
            s.c.detail,
            f.c.status,
        )
        .outerjoin(f, f.c.family_id == s.c.family_id)
        .where(s.c.cycle_id == cycle_id)
    )
    if eligible is not None:
        q = q.where(s.c.eligible == eligible)
    if status is not None:
        q = q.where(f.c.status == status)
    if district is not None:
        q = q.where(s.c.district == district)
    if min_score is not None:
        q = q.where(s.c.score >= min_score)
    if max_score is not None:
        q = q.where(s.c.score <= max_score)
    q = q.order_by(s.c.score.desc(), s.c.family_id)
    if page is not None:
        q = q.offset(page[0]).limit(page[1])
    return [ListedSnapshot._make(r) for r in conn.execute(q)]


class FamilySnapshot(NamedTuple):
    """A snapshot of one family with its cycle's date and ruleset (JSON)."""

    cycle_id: int
    family_id: str
    household_id: str
    district: str | None
    eligible: bool
    n_problems: int
    score: int
    rank: int
    percentile: float
    previous_score: int | None
    step: str | None
    clearance_required: int
    detail: str
    as_at: dt.date
    ruleset: str


def family_snapshots(conn: Connection, family_id: str) -> list[FamilySnapshot]:
    """Every snapshot of the family, oldest cycle first."""
    s, c = snapshots, cycles
    q = (
        sa.select(s, c.c.as_at, c.c.ruleset)
        .join(c, c.c.id == s.c.cycle_id)
        .where(s.c.family_id == family_id)
        .order_by(s.c.cycle_id)
    )
    return [FamilySnapshot._make(r) for r in conn.execute(q)]


# --- statuses -------------------------------------------------------------------------------


def family_statuses(conn: Connection) -> dict[str, str]:
    """Family id -> status, for every family with one."""
    f = families
    return {str(a): str(b) for a, b in conn.execute(sa.select(f.c.family_id, f.c.status))}


def ids_in_status(conn: Connection, statuses: Sequence[str]) -> set[str]:
    """The ids of families whose status is one of ``statuses``."""
    f = families
    q = sa.select(f.c.family_id).where(f.c.status.in_(list(statuses)))
    return {str(x) for (x,) in conn.execute(q)}


def add_families(conn: Connection, rows: Sequence[FamilyRow], batch: int = 2000) -> None:
    """Give families their first status row; IntegrityError if one already has one."""
    insert_rows(conn, families, rows, batch)


def reidentify(
    conn: Connection, family_ids: Sequence[str], cycle_id: int, stamp: int, actor: str
) -> None:
    """Move closed families found eligible again back to ``identified`` (no baseline)."""
    f = families
    for part in mstore.chunks(list(family_ids)):
        conn.execute(
            f.update()
            .where(f.c.family_id.in_(part))
            .values(
                status="identified",
                identified_cycle=cycle_id,
                attached_on=None,
                baseline_cycle=None,
                updated_at=stamp,
                updated_by=actor,
            )
        )


def guarded_move(
    conn: Connection,
    family_id: str,
    expected: str,
    status: str,
    stamp: int,
    actor: str,
    *,
    attach: tuple[dt.date, int] | None = None,
) -> bool:
    """Move the family from ``expected`` to ``status`` in one guarded UPDATE.

    With ``attach`` = (attached on, baseline cycle) those are set too. False if
    its status was no longer ``expected`` (another move won).
    """
    f = families
    q = (
        f.update()
        .where(f.c.family_id == family_id, f.c.status == expected)
        .values(status=status, updated_at=stamp, updated_by=actor)
    )
    if attach is not None:
        q = q.values(attached_on=attach[0], baseline_cycle=attach[1])
    moved = conn.execute(q).rowcount
    return bool(moved == 1)


def set_lead(conn: Connection, family_id: str, code: str | None, stamp: int, actor: str) -> bool:
    """Record the family's lead professional; False if the family has no status row."""
    f = families
    done = conn.execute(
        f.update()
        .where(f.c.family_id == family_id)
        .values(lead_professional=code, updated_at=stamp, updated_by=actor)
    ).rowcount
    return bool(done)


# --- attachments follow the people ----------------------------------------------------------


def attached_people(conn: Connection, phase: str) -> dict[str, str]:
    """Person id -> the family id they are attached with: in ``phase``, or for a person
    not attached in it, in the earlier phase they were last attached in (a family
    attached before a ruleset switch stays attached after it)."""
    a = attached_persons
    q = sa.select(a.c.person_id, a.c.family_id).order_by(
        sa.case((a.c.phase == phase, 1), else_=0), a.c.attached_on, a.c.phase
    )
    return {str(p): str(f) for p, f in conn.execute(q)}  # later rows win


def attached_holder(conn: Connection, phase: str, people: Sequence[str]) -> tuple[str, str] | None:
    """(person id, family id) of one of ``people`` already attached in ``phase``, or None."""
    a = attached_persons
    for part in mstore.chunks(list(people)):
        held = conn.execute(
            sa.select(a.c.person_id, a.c.family_id).where(
                a.c.phase == phase, a.c.person_id.in_(part)
            )
        ).first()
        if held is not None:
            return str(held.person_id), str(held.family_id)
    return None


def add_attached_persons(
    conn: Connection, phase: str, family_id: str, people: Sequence[str], on: dt.date
) -> None:
    """Record ``people`` as attached in ``phase``; IntegrityError if any already is."""
    conn.execute(
        attached_persons.insert(),
        [
            {"phase": phase, "person_id": p, "family_id": family_id, "attached_on": on}
            for p in people
        ],
    )


def reassign_attached(conn: Connection, old: str, new: str) -> None:
    """The people attached with family ``old`` are now attached with ``new``."""
    a = attached_persons
    conn.execute(a.update().where(a.c.family_id == old).values(family_id=new))


def carry_over(conn: Connection, old: str, new: str, cycle_id: int, *, replace: bool) -> None:
    """Family ``new`` takes over retired ``old``'s status row, claims and earlier snapshots.

    With ``replace``, ``new``'s own status row (not attached) is dropped first.
    Claims of a kind ``new`` already has stay with ``old``; snapshots of cycles
    before ``cycle_id`` that ``new`` has no snapshot for are copied to it.
    """
    f, c, s = families, claims, snapshots
    if replace:
        conn.execute(f.delete().where(f.c.family_id == new))
    conn.execute(f.update().where(f.c.family_id == old).values(family_id=new))
    have = {str(k) for (k,) in conn.execute(sa.select(c.c.kind).where(c.c.family_id == new))}
    conn.execute(
        c.update().where(c.c.family_id == old, c.c.kind.not_in(have or {""})).values(family_id=new)
    )
    cycles_new = {
        int(x) for (x,) in conn.execute(sa.select(s.c.cycle_id).where(s.c.family_id == new))
    }
    earlier = [
        {**row._asdict(), "family_id": new}
        for row in conn.execute(sa.select(s).where(s.c.family_id == old, s.c.cycle_id < cycle_id))
        if int(row.cycle_id) not in cycles_new
    ]
    if earlier:
        conn.execute(s.insert(), earlier)
