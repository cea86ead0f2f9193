"""Clerical decisions: a reviewer's match / non-match on a record pair, and their audit.

A coordinator (or admin) working the review queue records ``match`` or
``non_match`` on a pair of active records, with a reason code. The decision is
stored append-only in ``review_decisions`` with who and when
(:func:`decide`); a pair already decided takes another decision only as an
explicit change, itself stored as the pair's next version, and of two
concurrent deciders exactly one wins. The pair leaves the review queue.

The matching engine honours the decision in force on every pair from the next
update on (``LinkageEngine.set_decisions``): ``match`` is a must-link (the two
records' persons are merged), ``non_match`` a cannot-link (no merge ever puts
the two records in one person, whatever later scores say). Each decision's
*effect* is read from the persons the two records have now: ``merged`` /
``apart`` once the engine has applied it, ``pending`` until the next update,
``superseded`` for a decision a later change replaced.

Must never: see a plaintext identifier (only record ids, agency record refs,
person ids, scores and reason codes pass through), or change a person itself.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from sqlalchemy.engine import Engine

from protocols import DecisionList, DecisionView, RecordRef, ReviewDecision, ReviewEffect

from . import _store as store
from ._errors import ConflictError

__all__ = [
    "DECISIONS",
    "DECISION_COLUMNS",
    "REASON_PATTERN",
    "decide",
    "decisions_csv",
    "list_decisions",
]

Decision = ReviewDecision
DECISIONS: tuple[Decision, ...] = ("match", "non_match")
Effect = ReviewEffect
REASON_PATTERN = r"^[A-Z][A-Z0-9_]{1,31}$"


def _effect(row: store.DecisionRow) -> Effect:
    if not row.current:
        return "superseded"
    together = row.person_a is not None and row.person_a == row.person_b
    if row.decision == "match":
        return "merged" if together else "pending"
    return "pending" if together else "apart"


def _view(row: store.DecisionRow) -> DecisionView:
    return DecisionView(
        id=row.id,
        a=RecordRef.model_validate(row.a),
        b=RecordRef.model_validate(row.b),
        version=row.version,
        decision=row.decision,  # the table's check constraint: match or non_match
        reason=row.reason,
        decided_at=store.iso(row.decided_at) or "",
        decided_by=row.decided_by,
        current=row.current,
        effect=_effect(row),
        person_a=row.person_a,
        person_b=row.person_b,
        score=row.score,
        evidence=None if row.evidence is None else json.loads(row.evidence),
    )


def decide(
    engine: Engine,
    record_a: int,
    record_b: int,
    decision: Decision,
    reason: str,
    *,
    actor: str,
    change: bool = False,
) -> DecisionView:
    """Record ``decision`` on the pair of active records; the stored decision.

    The pair may be given in either order. Raises :class:`ConflictError` when
    the pair is one record, is already decided (without ``change``), has nothing
    to change, or another reviewer's decision won; :class:`NotFound` when a
    record is not active.
    """
    if decision not in DECISIONS:
        raise ConflictError(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    if record_a == record_b:
        raise ConflictError(f"record {record_a} cannot be decided against itself")
    lo, hi = sorted((record_a, record_b))
    new_id = store.record_decision(engine, lo, hi, decision, reason, actor, change=change)
    rows = store.list_decisions(engine, after=new_id - 1, limit=1)
    return _view(rows[0])


def list_decisions(
    engine: Engine,
    *,
    record_id: int | None = None,
    current_only: bool = False,
    after: int = 0,
    limit: int = 1000,
) -> DecisionList:
    """A page of decisions (every version, or those in force), oldest first."""
    rows = store.list_decisions(
        engine, record_id=record_id, current_only=current_only, after=after, limit=limit
    )
    return DecisionList(
        decisions=[_view(r) for r in rows],
        next_after=rows[-1].id if len(rows) == limit else None,
    )


DECISION_COLUMNS = (
    "id",
    "agency_a",
    "record_ref_a",
    "record_id_a",
    "agency_b",
    "record_ref_b",
    "record_id_b",
    "version",
    "decision",
    "reason",
    "decided_at",
    "decided_by",
    "current",
    "effect",
    "probability",
)


def decisions_csv(decisions: Iterable[DecisionView]) -> str:
    """CSV of decisions for audit, one row per stored decision (ids and codes only)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DECISION_COLUMNS)
    for d in decisions:
        writer.writerow(
            [
                d.id,
                d.a.agency_id,
                d.a.record_ref,
                d.a.record_id,
                d.b.agency_id,
                d.b.record_ref,
                d.b.record_id,
                d.version,
                d.decision,
                d.reason,
                d.decided_at,
                d.decided_by,
                d.current,
                d.effect,
                "" if d.score is None else round(d.score, 6),
            ]
        )
    return out.getvalue()
