"""Storage reads of the returns councils file (``_reports.py``).

Read-only, over the caller's connection: a report reads one cycle's snapshots
(streamed, ``yield_per``), the status events before the next cycle, the
attached families and the claims made up to the cycle. ``_reports`` keeps the
per-cycle cache; this module only reads.

Must never: write, or read anything but pseudonymous ids and stored figures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._store import claims, cycles, families, snapshots, status_events

__all__ = [
    "AttachedRow",
    "ClaimFact",
    "ReportSnapshot",
    "attached_up_to",
    "claims_up_to",
    "cycle_dates",
    "district_counts",
    "lead_professionals",
    "next_cycle_cutoff",
    "report_snapshots",
    "score_counts",
    "status_history",
]


def next_cycle_cutoff(conn: Connection, cycle_id: int) -> int | None:
    """When the first cycle after ``cycle_id`` was created (None if it is the latest)."""
    c = cycles
    found = conn.execute(sa.select(sa.func.min(c.c.created_at)).where(c.c.id > cycle_id)).scalar()
    return None if found is None else int(found)


class ReportSnapshot(NamedTuple):
    """The columns of a snapshot the reports read (``detail`` is its JSON, unparsed)."""

    family_id: str
    district: str | None
    eligible: bool
    n_problems: int
    score: int
    rank: int
    percentile: float
    previous_score: int | None
    step: str | None
    detail: str


def report_snapshots(
    conn: Connection, cycle_id: int, *, eligible_only: bool = False
) -> Iterator[ReportSnapshot]:
    """The snapshots of cycle ``cycle_id`` (only the eligible families'), streamed."""
    s = snapshots
    q = sa.select(
        s.c.family_id,
        s.c.district,
        s.c.eligible,
        s.c.n_problems,
        s.c.score,
        s.c.rank,
        s.c.percentile,
        s.c.previous_score,
        s.c.step,
        s.c.detail,
    ).where(s.c.cycle_id == cycle_id)
    if eligible_only:
        q = q.where(s.c.eligible)
    for r in conn.execute(q, execution_options={"yield_per": 10_000}):
        yield ReportSnapshot._make(r)


def status_history(conn: Connection, cutoff: int | None) -> Iterator[tuple[str, int, str]]:
    """(family id, time, new status) of every status event before ``cutoff``, oldest first."""
    e = status_events
    q = sa.select(e.c.family_id, e.c.at, e.c.to_status).order_by(e.c.at, e.c.id)
    if cutoff is not None:
        q = q.where(e.c.at < cutoff)
    for fid, at, to in conn.execute(q):
        yield str(fid), int(at), str(to)


class ClaimFact(NamedTuple):
    """What the reports read of a claim; ``evidence`` (JSON) only when asked for."""

    family_id: str
    kind: str
    result: str | None
    amount_gbp: int
    evidence: str | None


def claims_up_to(
    conn: Connection, cycle_id: int, *, kind: str | None = None, with_evidence: bool = False
) -> list[ClaimFact]:
    """The claims made from cycles up to ``cycle_id`` (of ``kind`` only, if given)."""
    c = claims
    q = sa.select(
        c.c.family_id,
        c.c.kind,
        c.c.result,
        c.c.amount_gbp,
        c.c.evidence if with_evidence else sa.null(),
    ).where(c.c.cycle_id <= cycle_id)
    if kind is not None:
        q = q.where(c.c.kind == kind)
    return [ClaimFact(str(f), str(k), r, int(a), e) for f, k, r, a, e in conn.execute(q)]


class AttachedRow(NamedTuple):
    """A family attached with a baseline: when, which cycle, its lead professional."""

    family_id: str
    attached_on: dt.date | None
    baseline_cycle: int
    lead_professional: str | None


def attached_up_to(conn: Connection, cycle_id: int) -> list[AttachedRow]:
    """Families whose baseline is cycle ``cycle_id`` or earlier, by family id."""
    f = families
    q = (
        sa.select(f.c.family_id, f.c.attached_on, f.c.baseline_cycle, f.c.lead_professional)
        .where(f.c.baseline_cycle.is_not(None), f.c.baseline_cycle <= cycle_id)
        .order_by(f.c.family_id)
    )
    return [AttachedRow(str(a), b, int(c), d) for a, b, c, d in conn.execute(q)]


def lead_professionals(conn: Connection) -> dict[str, str]:
    """Family id -> its lead professional (a professional id or team code), where one is set."""
    f = families
    q = sa.select(f.c.family_id, f.c.lead_professional).where(f.c.lead_professional.is_not(None))
    return {str(fid): str(lead) for fid, lead in conn.execute(q)}


def score_counts(conn: Connection, cycle_id: int) -> list[tuple[int, int]]:
    """(score, eligible families with it) of cycle ``cycle_id``, lowest score first."""
    s = snapshots
    q = (
        sa.select(s.c.score, sa.func.count())
        .where(s.c.cycle_id == cycle_id, s.c.eligible)
        .group_by(s.c.score)
        .order_by(s.c.score)
    )
    return [(int(a), int(n)) for a, n in conn.execute(q)]


def district_counts(conn: Connection, cycle_id: int) -> list[tuple[str | None, int]]:
    """(postcode district, eligible families in it) of cycle ``cycle_id``, by district."""
    s = snapshots
    q = (
        sa.select(s.c.district, sa.func.count())
        .where(s.c.cycle_id == cycle_id, s.c.eligible)
        .group_by(s.c.district)
        .order_by(s.c.district)
    )
    return [(d, int(n)) for d, n in conn.execute(q)]


def cycle_dates(conn: Connection, up_to: int) -> set[dt.date]:
    """The as-at dates of the cycles up to ``up_to``."""
    c = cycles
    return {d for (d,) in conn.execute(sa.select(c.c.as_at).where(c.c.id <= up_to))}
