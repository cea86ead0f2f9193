"""Payment by results: outcome plans over snapshots, claim batches with evidence, exports.

A family attached to the programme has a baseline snapshot. A *result* is
either significant and sustained progress on **every** problem the family had
(met at baseline or in any snapshot since, so problems found later count) as
each problem's outcome rule in the ruleset says, or the continuous-employment
result. :func:`evaluate_outcomes` is a pure function over the baseline and the
snapshots after it; it returns, condition by condition, the values it looked
at, so every claim carries its own evidence.

:func:`create_claims` makes a claim batch for a claim window: an attachment
claim for each attached family that has none, and a results claim for each
family in ``pending_claim`` whose result still holds. A family is claimed for
each kind at most once (a unique constraint backs the check), and a claim for
a family that is not attached is refused by name. :func:`export_claims` writes
CSV for internal audit with a reproducible sample (about 10% by default).

Must never: claim without evidence, or change a family's status without a
``status_events`` row.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .. import _store as store
from .._errors import ConflictError, NotFound, StorageError
from . import _restrictions as restrictions_
from ._programme import compare
from ._restrictions import RestrictionEffects
from ._ruleset import Condition, Outcome, Ruleset

__all__ = [
    "Snap",
    "create_claims",
    "evaluate_outcomes",
    "export_claims",
    "family_outcomes",
    "list_claims",
    "outcome_status",
]

WINDOW = re.compile(r"^[0-9]{4}-H[12]$")
CLAIM_STATUSES = ("attached", "in_progress", "pending_claim", "claimed", "closed")


@dataclass(frozen=True)
class Snap:
    """What the outcome rules read from one snapshot."""

    cycle_id: int
    as_at: dt.date
    measures: dict[str, float]
    problems: tuple[str, ...]  # met
    detail: dict[str, Any]


def _value(snap: Snap, cond: Condition) -> float | None:
    v = snap.measures.get(cond.measure)
    if v is None and cond.missing_as_zero:
        return 0.0
    return v


def _condition(
    cond: Condition, baseline: Snap, after: Sequence[Snap], attached_on: dt.date
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "measure": cond.measure,
        "compare": cond.compare,
        "op": cond.op,
        "value": cond.value,
        "baseline": _value(baseline, cond),
    }
    if cond.compare == "baseline":
        out["met"] = compare(out["baseline"], cond.op, float(cond.value))
        return out
    window = list(after[-cond.snapshots :])
    out["snapshots"] = [
        {"cycle_id": s.cycle_id, "as_at": s.as_at.isoformat(), "value": _value(s, cond)}
        for s in window
    ]
    why = None
    if len(window) < cond.snapshots:
        why = f"needs {cond.snapshots} snapshots after attachment, has {len(window)}"
    elif (window[-1].as_at - window[0].as_at).days < cond.span_days:
        why = f"snapshots span {(window[-1].as_at - window[0].as_at).days} days < {cond.span_days}"
    elif (window[-1].as_at - attached_on).days < cond.min_days_since_attachment:
        why = (
            f"{(window[-1].as_at - attached_on).days} days since attachment "
            f"< {cond.min_days_since_attachment}"
        )
    if why is not None:
        out["met"] = False
        out["why_not"] = why
        return out
    ok = True
    for s in window:
        v = _value(s, cond)
        if cond.compare == "value":
            ok &= compare(v, cond.op, float(cond.value))
        else:  # fall_pct: percentage fall from a positive baseline
            b = out["baseline"]
            fall = None if not b or v is None else 100.0 * (b - v) / b
            ok &= compare(fall, cond.op, float(cond.value))
    out["met"] = ok
    return out


def _identified(problem: str, snaps: Sequence[Snap]) -> dict[str, Any]:
    """Where a problem was first seen: cycle, indicators, source agencies, events."""
    for s in snaps:
        if problem in s.problems:
            info = s.detail.get("problems", {}).get(problem, {})
            indicators = list(info.get("indicators", []))
            events = s.detail.get("evidence", {})
            return {
                "identified_cycle": s.cycle_id,
                "identified_as_at": s.as_at.isoformat(),
                "indicators": indicators,
                "source_agencies": list(info.get("met_by", [])),
                "events": [e for i in indicators for e in events.get(i, [])],
            }
    return {}


def _outcome(
    outcome: Outcome, baseline: Snap, after: Sequence[Snap], attached_on: dt.date
) -> dict[str, Any]:
    conditions = [_condition(c, baseline, after, attached_on) for c in outcome.all_of]
    return {
        "title": outcome.title,
        "met": all(c["met"] for c in conditions),
        "conditions": conditions,
    }


def evaluate_outcomes(
    ruleset: Ruleset, baseline: Snap, after: Sequence[Snap], attached_on: dt.date
) -> dict[str, Any]:
    """The family's outcome plan against its snapshots since the baseline.

    ``after`` are the snapshots after the baseline, oldest first. Returns the
    problems considered, each one's outcome evaluation, the employment result,
    and ``result``: ``"progress"``, ``"employment"`` or None.
    """
    had = list(baseline.problems)
    for s in after:
        had += [p for p in s.problems if p not in had]
    per_problem: dict[str, Any] = {}
    for p in had:
        outcome = ruleset.outcomes.get(p)
        if outcome is None:
            per_problem[p] = {"met": False, "why_not": "no outcome rule for this problem"}
        else:
            per_problem[p] = _outcome(outcome, baseline, after, attached_on)
        per_problem[p].update(_identified(p, [baseline, *after]))
    progress = bool(had) and all(v["met"] for v in per_problem.values())
    employment = (
        None
        if ruleset.employment is None
        else _outcome(ruleset.employment, baseline, after, attached_on)
    )
    result = "progress" if progress else None
    if result is None and employment is not None and employment["met"]:
        result = "employment"
    return {
        "problems": per_problem,
        "employment": employment,
        "result": result,
        "baseline_cycle": baseline.cycle_id,
        "latest_cycle": after[-1].cycle_id if after else baseline.cycle_id,
    }


# --- reading snapshots ------------------------------------------------------------------


def _snaps(conn: Connection, family_ids: Sequence[str]) -> dict[str, list[Snap]]:
    s, c = store.snapshots, store.cycles
    out: dict[str, list[Snap]] = {}
    for part in store.chunks(list(family_ids)):
        q = (
            sa.select(s.c.family_id, s.c.cycle_id, c.c.as_at, s.c.detail)
            .join(c, c.c.id == s.c.cycle_id)
            .where(s.c.family_id.in_(part))
            .order_by(s.c.family_id, c.c.as_at, s.c.cycle_id)
        )
        for fid, cid, as_at, detail in conn.execute(q):
            d = json.loads(detail)
            out.setdefault(str(fid), []).append(
                Snap(
                    cycle_id=int(cid),
                    as_at=as_at,
                    measures={k: float(v) for k, v in d["measures"].items()},
                    problems=tuple(p for p, v in d["problems"].items() if v["met"]),
                    detail=d,
                )
            )
    return out


def _family_outcomes(
    conn: Connection, ruleset: Ruleset, rows: Sequence[Any]
) -> dict[str, dict[str, Any]]:
    """family id -> outcome evaluation, for attached families ``rows`` (families table)."""
    snaps = _snaps(conn, [str(r.family_id) for r in rows])
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        history = snaps.get(str(r.family_id), [])
        base = [x for x in history if x.cycle_id == r.baseline_cycle]
        if not base:
            continue
        after = [x for x in history if x.cycle_id > r.baseline_cycle]
        out[str(r.family_id)] = evaluate_outcomes(ruleset, base[0], after, r.attached_on)
    return out


def outcome_status(
    conn: Connection,
    ruleset: Ruleset,
    cycle_id: int,
    as_at: dt.date,
    actor: str,
    when: dt.datetime,
    *,
    skip: Collection[str] = (),
) -> int:
    """Inside an assessment: move attached families whose result holds to pending_claim.

    Families in ``skip`` (their restriction flags stop claims) stay where they are.
    """
    f = store.families
    rows = [
        r
        for r in conn.execute(
            sa.select(f).where(
                f.c.status.in_(("attached", "in_progress")), f.c.baseline_cycle.is_not(None)
            )
        )
        if str(r.family_id) not in skip
    ]
    results = _family_outcomes(conn, ruleset, rows)
    moved = 0
    stamp = int(when.timestamp() * 1_000_000)
    for r in rows:
        res = results.get(str(r.family_id))
        if res is None or res["result"] is None:
            continue
        conn.execute(
            f.update()
            .where(f.c.family_id == r.family_id)
            .values(status="pending_claim", updated_at=stamp, updated_by=actor)
        )
        conn.execute(
            store.status_events.insert().values(
                family_id=r.family_id,
                from_status=r.status,
                to_status="pending_claim",
                at=stamp,
                by=actor,
                reason="RESULT_" + str(res["result"]).upper(),
            )
        )
        moved += 1
    return moved


# --- claims --------------------------------------------------------------------------------


def _latest_cycle(conn: Connection) -> tuple[int, Ruleset]:
    row = store.cycle_row(conn, None)
    if row is None:
        raise ConflictError("no assessment has been run: nothing to claim")
    return int(row.id), Ruleset.model_validate_json(row.ruleset)


def create_claims(
    engine: Engine,
    window_id: str,
    *,
    actor: str,
    family_ids: Sequence[str] | None = None,
    now: dt.datetime | None = None,
    restrictions: Mapping[str, RestrictionEffects] | None = None,
) -> dict[str, Any]:
    """A claim batch for ``window_id`` (``YYYY-H1``/``H2``) in one transaction.

    With ``family_ids``, only those families are claimed, and each one that
    cannot be (not attached, no result, already claimed, a restriction flag
    that stops claims) is an error naming it. Without, flagged families are
    left out and counted in ``restricted``.
    """
    if not WINDOW.match(window_id):
        raise ConflictError(f"claim window {window_id!r}: expected YYYY-H1 or YYYY-H2")
    when = now or dt.datetime.now(dt.UTC)
    stamp = int(when.timestamp() * 1_000_000)
    f = store.families
    try:
        with engine.begin() as conn:
            cycle_id, ruleset = _latest_cycle(conn)
            q = sa.select(f)
            if family_ids is not None:
                q = q.where(f.c.family_id.in_(list(family_ids)))
            rows = {str(r.family_id): r for r in conn.execute(q)}
            flagged = restrictions_.blocked(
                conn,
                restrictions_.flags(conn, restrictions),
                [fid for fid, r in rows.items() if r.attached_on is not None],
                "claims",
            )
            if family_ids is not None:
                for fid in family_ids:
                    if fid in flagged:
                        raise ConflictError(
                            f"family {fid}: its {flagged[fid]} flag stops claims, so nothing "
                            "is claimed for it"
                        )
            rows = {fid: r for fid, r in rows.items() if fid not in flagged}
            claimed = {
                (str(a), str(b))
                for a, b in conn.execute(sa.select(store.claims.c.family_id, store.claims.c.kind))
            }
            if family_ids is not None:
                for fid in family_ids:
                    row = rows.get(fid)
                    if row is None or row.attached_on is None:
                        raise ConflictError(
                            f"family {fid}: not attached to the programme, so nothing to claim"
                        )
                    if (fid, "result") in claimed:
                        raise ConflictError(f"family {fid}: a results claim was already made")
                    if row.status != "pending_claim":
                        raise ConflictError(
                            f"family {fid}: status {row.status}, no result to claim "
                            "(an assessment moves families with a result to pending_claim)"
                        )
            attached = [
                r for r in rows.values() if r.attached_on is not None and r.status in CLAIM_STATUSES
            ]
            outcomes = _family_outcomes(
                conn, ruleset, [r for r in attached if r.status == "pending_claim"]
            )
            new: list[dict[str, Any]] = []
            for r in attached:
                fid = str(r.family_id)
                if (fid, "attachment") not in claimed and family_ids is None:
                    new.append(
                        _claim_row(
                            fid,
                            "attachment",
                            None,
                            window_id,
                            cycle_id,
                            ruleset.payments.attachment_gbp,
                            {
                                "attached_on": r.attached_on.isoformat(),
                                "baseline_cycle": r.baseline_cycle,
                            },
                            stamp,
                            actor,
                        )
                    )
                res = outcomes.get(fid)
                if r.status == "pending_claim" and (fid, "result") not in claimed:
                    if res is None or res["result"] is None:
                        if family_ids is not None:
                            raise ConflictError(f"family {fid}: its result no longer holds")
                        continue
                    new.append(
                        _claim_row(
                            fid,
                            "result",
                            res["result"],
                            window_id,
                            cycle_id,
                            ruleset.payments.result_gbp,
                            res,
                            stamp,
                            actor,
                        )
                    )
            for start in range(0, len(new), 1000):
                conn.execute(store.claims.insert(), new[start : start + 1000])
            results = [c["family_id"] for c in new if c["kind"] == "result"]
            for part in store.chunks(results):
                conn.execute(
                    f.update()
                    .where(f.c.family_id.in_(part))
                    .values(status="claimed", updated_at=stamp, updated_by=actor)
                )
            if results:
                conn.execute(
                    store.status_events.insert(),
                    [
                        {
                            "family_id": fid,
                            "from_status": "pending_claim",
                            "to_status": "claimed",
                            "at": stamp,
                            "by": actor,
                            "reason": "CLAIM_" + window_id.replace("-", "_"),
                        }
                        for fid in results
                    ],
                )
    except IntegrityError as exc:
        raise ConflictError(
            f"claim batch {window_id} refused: a double claim ({exc.orig})"
        ) from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"claim batch {window_id} not stored: {exc}") from exc
    return {
        "window_id": window_id,
        "cycle_id": cycle_id,
        "attachment_claims": sum(1 for c in new if c["kind"] == "attachment"),
        "result_claims": len(results),
        "progress": sum(1 for c in new if c["result"] == "progress"),
        "employment": sum(1 for c in new if c["result"] == "employment"),
        "amount_gbp": sum(int(c["amount_gbp"]) for c in new),
        "restricted": len(flagged),
    }


def _claim_row(
    family_id: str,
    kind: str,
    result: str | None,
    window_id: str,
    cycle_id: int,
    amount: int,
    evidence: dict[str, Any],
    stamp: int,
    actor: str,
) -> dict[str, Any]:
    return {
        "family_id": family_id,
        "kind": kind,
        "result": result,
        "window_id": window_id,
        "cycle_id": cycle_id,
        "amount_gbp": amount,
        "evidence": json.dumps(evidence, sort_keys=True),
        "created_at": stamp,
        "created_by": actor,
    }


def list_claims(engine: Engine, window_id: str | None = None) -> list[dict[str, Any]]:
    """Claims (of one window, or all), oldest first, with their evidence."""
    c = store.claims
    q = sa.select(c).order_by(c.c.id)
    if window_id is not None:
        q = q.where(c.c.window_id == window_id)
    try:
        with engine.connect() as conn:
            rows = conn.execute(q).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read claims: {exc}") from exc
    return [
        {
            "claim_id": r.id,
            "family_id": r.family_id,
            "kind": r.kind,
            "result": r.result,
            "window_id": r.window_id,
            "cycle_id": r.cycle_id,
            "amount_gbp": r.amount_gbp,
            "created_at": store.iso(r.created_at),
            "created_by": r.created_by,
            "evidence": json.loads(r.evidence),
        }
        for r in rows
    ]


def export_claims(
    claims: Sequence[dict[str, Any]], *, sample_pct: float = 100.0, seed: int = 0
) -> str:
    """CSV of ``claims`` (a reproducible ``sample_pct`` sample for internal audit)."""
    if not 0 < sample_pct <= 100:
        raise ConflictError(f"sample_pct {sample_pct}: expected more than 0 and at most 100")
    chosen = list(claims)
    if sample_pct < 100:
        k = max(1, round(len(chosen) * sample_pct / 100)) if chosen else 0
        chosen = sorted(random.Random(seed).sample(chosen, k), key=lambda c: c["claim_id"])
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "claim_id",
            "window_id",
            "family_id",
            "kind",
            "result",
            "amount_gbp",
            "cycle_id",
            "created_at",
            "created_by",
            "problems",
            "source_agencies",
            "evidence_json",
        ]
    )
    for c in chosen:
        ev = c["evidence"]
        problems = sorted(ev.get("problems", {}))
        agencies: set[str] = set()
        for p in ev.get("problems", {}).values():
            agencies.update(p.get("source_agencies", []))
        w.writerow(
            [
                c["claim_id"],
                c["window_id"],
                c["family_id"],
                c["kind"],
                c["result"] or "",
                c["amount_gbp"],
                c["cycle_id"],
                c["created_at"],
                c["created_by"],
                ";".join(problems),
                ";".join(sorted(agencies)),
                json.dumps(ev, sort_keys=True),
            ]
        )
    return out.getvalue()


def family_outcomes(engine: Engine, family_id: str) -> dict[str, Any]:
    """The outcome plan evaluation of one attached family as of the latest cycle."""
    try:
        with engine.connect() as conn:
            _cycle, ruleset = _latest_cycle(conn)
            row = conn.execute(
                sa.select(store.families).where(store.families.c.family_id == family_id)
            ).first()
            if row is None:
                raise NotFound(f"no family {family_id!r} with a status")
            if row.baseline_cycle is None:
                raise ConflictError(f"family {family_id} is not attached: no baseline yet")
            return _family_outcomes(conn, ruleset, [row])[family_id]
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot evaluate outcomes of {family_id}: {exc}") from exc
