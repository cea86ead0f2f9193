"""Payment by results: outcome plans over snapshots, claim batches with evidence, exports.

A family attached to the programme has a baseline snapshot. A *result* is
either significant and sustained progress on **every** problem the family had
(met at baseline or in any snapshot since, so problems found later count; each
of those is measured from the snapshot where it was found) as each problem's
outcome rule in the ruleset says, or the continuous-employment result.
:func:`evaluate_outcomes` is a pure function over the baseline and the
snapshots after it; it returns, condition by condition, the values it looked
at, so every claim carries its own evidence, and for every rule not met a
reason code (``TOO_SOON``, ``NOT_SUSTAINED``, ``BASELINE_MISSING`` ...) and why,
in words.

Rules are stated in calendar months and decided from whatever snapshots exist
(monthly, quarterly or irregular cycles): see :func:`_condition` for the exact
meaning of ``months_since_attachment`` and ``sustained_months``. Snapshots of
cycles that used another ruleset (before a switch) are re-derived under the
ruleset in force (``_active``), so a switch never resets a baseline.

:func:`create_claims` makes a claim batch for a claim window of the ruleset's
calendar (the window must hold the latest assessment's date): an attachment
claim for each attached family that has none, and a results claim for each
family in ``pending_claim`` whose result still holds; only a batch moves a
family to ``claimed``. A family is claimed for each kind at most once (a
unique constraint backs the check), and a claim for a family that is not
attached is refused by name. :func:`export_claims` writes CSV for internal
audit, one row per evidence item, with a reproducible sample (about 10% by
default); :func:`export_claims_json` the same claims as JSON.

Evaluations and claims are the wire models of ``protocols`` (``FamilyOutcomes``,
``ClaimView``). A results claim's evidence is the evaluation as it stood,
stored as JSON with sorted keys, exactly the text the dict implementation
stored; claims stored before outcome rules were in calendar months (no
reason codes, months or ``unmet``) still read, and are written back unchanged.

Must never: claim without evidence, or change a family's status without a
``status_events`` row.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from protocols import (
    AttachmentEvidence,
    ClaimBatch,
    ClaimView,
    ConditionOutcome,
    EvidenceEvent,
    FamilyOutcomes,
    HeldSince,
    Observation,
    OutcomeEvaluation,
    ProblemOutcome,
    UnmetOutcome,
    describe_errors,
)

from .. import _store as store
from .._errors import ConflictError, NotFound, StorageError
from . import _restrictions as restrictions_
from . import _store as pstore
from . import _store_assessment as astore
from . import _store_claims as cstore
from ._active import rederive_detail
from ._programme import OutcomeDetail, compare, parse_detail
from ._restrictions import RestrictionEffects
from ._ruleset import Calendar, ClaimWindow, Condition, Outcome, Ruleset, add_months

__all__ = [
    "EVIDENCE_COLUMNS",
    "EvidenceItem",
    "Snap",
    "claim_window",
    "create_claims",
    "evaluate_outcomes",
    "evidence_items",
    "export_claims",
    "export_claims_json",
    "family_outcomes",
    "list_claims",
    "outcome_status",
    "sample_claims",
]

CLAIM_STATUSES = ("attached", "in_progress", "pending_claim", "claimed", "closed")


@dataclass(frozen=True)
class Snap:
    """What the outcome rules read from one snapshot."""

    cycle_id: int
    as_at: dt.date
    measures: dict[str, float]
    problems: tuple[str, ...]  # met
    detail: OutcomeDetail


def _value(snap: Snap, cond: Condition) -> float | None:
    v = snap.measures.get(cond.measure)
    if v is None and cond.missing_as_zero:
        return 0.0
    return v


def _fall(base: float | None, v: float | None) -> float | None:
    return None if not base or v is None else round(100.0 * (base - v) / base, 2)


def _holds(cond: Condition, snap: Snap, base: float | None) -> tuple[bool, float | None]:
    """Whether ``cond`` holds at ``snap``, and the number compared (value or % fall)."""
    v = _value(snap, cond)
    if cond.compare == "fall_pct":
        v = _fall(base, v)
    return compare(v, cond.op, float(cond.value)), v


def _at(s: Snap) -> str:
    return f"cycle {s.cycle_id} ({s.as_at.isoformat()})"


def _condition(
    cond: Condition,
    baseline: Snap,
    after: Sequence[Snap],
    attached_on: dt.date,
    cal: Calendar,
) -> ConditionOutcome:
    """One condition against the snapshots since the baseline, with a reason when unmet.

    Calendar time: with ``months_since_attachment = M`` the latest snapshot must
    be dated on or after attachment + M calendar months; with
    ``sustained_months = N`` the condition must hold at the latest snapshot
    and at every snapshot since the baseline back to one dated on or before
    latest - N months (the *run*; a snapshot where it did not hold ends the
    run). Both allow ``cal.gap_tolerance_days``, since cycles are rarely
    exactly whole months apart. Only snapshots after the baseline count.
    """
    raw = baseline.measures.get(cond.measure)
    base = _value(baseline, cond)
    # what the evaluation has looked at so far: each return below reports it
    seen: list[Observation] | None = None
    due_on: str | None = None
    since: HeldSince | None = None
    until: str | None = None

    def result(
        met: bool, reason: str | None = None, why_not: str | None = None
    ) -> ConditionOutcome:
        return ConditionOutcome(
            measure=cond.measure,
            compare=cond.compare,
            op=cond.op,
            value=cond.value,
            sustained_months=cond.sustained_months,
            months_since_attachment=cond.months_since_attachment,
            missing_as_zero=cond.missing_as_zero,
            baseline=base,
            baseline_cycle=baseline.cycle_id,
            met=met,
            reason=reason,
            why_not=why_not,
            snapshots=seen,
            due_on=due_on,
            held_since=since,
            sustained_until=until,
        )

    want = f"{cond.measure} {cond.op} {cond.value}"
    if cond.compare == "baseline":
        if compare(base, cond.op, float(cond.value)):
            return result(True)
        if base is None:
            return result(
                False,
                "BASELINE_MISSING",
                f"{cond.measure} had no value at the baseline, {_at(baseline)}, "
                f"and the rule needs it {cond.op} {cond.value} there",
            )
        return result(
            False,
            "BASELINE_NOT_MET",
            f"{cond.measure} was {base:g} at the baseline, {_at(baseline)}; "
            f"the rule needs {cond.op} {cond.value} there",
        )
    if cond.compare == "fall_pct" and not base:
        if raw is None:
            return result(
                False,
                "BASELINE_MISSING",
                f"{cond.measure} had no value at the baseline, {_at(baseline)} (no event in its "
                f"look-back window before attachment), so a {cond.value}% fall cannot be "
                "measured: the problem was found by a measure over a longer window",
            )
        return result(
            False,
            "BASELINE_ZERO",
            f"{cond.measure} was 0 at the baseline, {_at(baseline)}: nothing to fall "
            f"{cond.value}% from",
        )
    if not after:
        return result(
            False,
            "NO_SNAPSHOT_SINCE_BASELINE",
            f"no assessment since the baseline, {_at(baseline)}",
        )
    held = [_holds(cond, s, base) for s in after]
    seen = [
        # a percentage fall is written beside the value (None: no value to fall to)
        Observation(cycle_id=s.cycle_id, as_at=s.as_at.isoformat(), value=_value(s, cond), held=ok)
        if cond.compare != "fall_pct"
        else Observation(
            cycle_id=s.cycle_id,
            as_at=s.as_at.isoformat(),
            value=_value(s, cond),
            fall_pct=n,
            held=ok,
        )
        for s, (ok, n) in zip(after, held, strict=True)
    ]
    latest = after[-1]
    tolerance = dt.timedelta(days=cal.gap_tolerance_days)
    ok, number = held[-1]
    if not ok:
        if _value(latest, cond) is None:
            return result(
                False,
                "VALUE_MISSING",
                f"{cond.measure} has no value at {_at(latest)} (no event in its window) and "
                "the ruleset does not read that as 0 (missing_as_zero)",
            )
        shown = f"fell {number:g}%" if cond.compare == "fall_pct" else f"is {number:g}"
        need = f"a fall of {cond.op} {cond.value}%" if cond.compare == "fall_pct" else want
        return result(False, "NOT_MET", f"{cond.measure} {shown} at {_at(latest)}; needs {need}")
    if cond.months_since_attachment:
        due = add_months(attached_on, cond.months_since_attachment)
        due_on = due.isoformat()
        if latest.as_at + tolerance < due:
            return result(
                False,
                "TOO_SOON",
                f"the latest snapshot, {_at(latest)}, is too soon: the rule needs "
                f"{cond.months_since_attachment} months since attachment on "
                f"{attached_on.isoformat()}, a snapshot on or after {due - tolerance} "
                f"({cal.gap_tolerance_days} days' allowance for cycle dates)",
            )
    if cond.sustained_months:
        k = len(after) - 1
        while k > 0 and held[k - 1][0]:
            k -= 1
        first = after[k]
        ends = add_months(first.as_at, cond.sustained_months)
        since = HeldSince(cycle_id=first.cycle_id, as_at=first.as_at.isoformat())
        until = ends.isoformat()
        if latest.as_at + tolerance < ends:
            broke = "" if k == 0 else f" (it did not hold at {_at(after[k - 1])})"
            return result(
                False,
                "NOT_SUSTAINED",
                f"{want} has held at every snapshot since {_at(first)}{broke}; the rule needs "
                f"{cond.sustained_months} months, so a snapshot on or after "
                f"{ends - tolerance} with it still holding",
            )
    return result(True)


class _Identified(NamedTuple):
    """Where a problem was first seen: cycle, indicators, source agencies, events."""

    cycle_id: int
    as_at: str
    indicators: list[str]
    source_agencies: list[str]
    events: list[EvidenceEvent]


def _identified(problem: str, snaps: Sequence[Snap]) -> _Identified:
    """The first of ``snaps`` (oldest first) where ``problem`` is met; it is met in one."""
    s = next(s for s in snaps if problem in s.problems)
    info = s.detail.problems.get(problem)
    indicators = [] if info is None else list(info.indicators)
    events = s.detail.evidence or {}
    return _Identified(
        cycle_id=s.cycle_id,
        as_at=s.as_at.isoformat(),
        indicators=indicators,
        source_agencies=[] if info is None else list(info.met_by),
        events=[e for i in indicators for e in events.get(i, [])],
    )


def _outcome(
    outcome: Outcome, baseline: Snap, after: Sequence[Snap], attached_on: dt.date, cal: Calendar
) -> OutcomeEvaluation:
    conditions = [_condition(c, baseline, after, attached_on, cal) for c in outcome.all_of]
    first = next((c for c in conditions if not c.met), None)
    return OutcomeEvaluation(
        title=outcome.title,
        met=first is None,
        conditions=conditions,
        reason=None if first is None else first.reason,
        why_not=None if first is None else first.why_not,
    )


def _problem(
    ruleset: Ruleset, problem: str, baseline: Snap, after: Sequence[Snap], attached_on: dt.date
) -> ProblemOutcome:
    """The outcome of one problem the family had, and where it was first identified.

    A problem found after attachment is measured from the snapshot where it was
    found (its own baseline, named in each condition's ``baseline_cycle``): the
    family's baseline knew nothing of it, so a fall measured from there could
    never be shown (``BASELINE_MISSING`` for good). Time since attachment is still
    counted from the attachment.
    """
    found = _identified(problem, [baseline, *after])
    if found.cycle_id != baseline.cycle_id:
        k = next(i for i, s in enumerate(after) if s.cycle_id == found.cycle_id)
        baseline, after = after[k], after[k + 1 :]
    outcome = ruleset.outcomes.get(problem)
    if outcome is None:
        return ProblemOutcome(
            met=False,
            reason="NO_OUTCOME_RULE",
            why_not=f"the ruleset {ruleset.name} {ruleset.version} has no outcome rule "
            f"for problem {problem}",
            identified_cycle=found.cycle_id,
            identified_as_at=found.as_at,
            indicators=found.indicators,
            source_agencies=found.source_agencies,
            events=found.events,
        )
    ev = _outcome(outcome, baseline, after, attached_on, ruleset.calendar)
    return ProblemOutcome(
        title=ev.title,
        met=ev.met,
        conditions=ev.conditions,
        reason=ev.reason,
        why_not=ev.why_not,
        identified_cycle=found.cycle_id,
        identified_as_at=found.as_at,
        indicators=found.indicators,
        source_agencies=found.source_agencies,
        events=found.events,
    )


def _unmet(problem: str, ev: ProblemOutcome | OutcomeEvaluation) -> UnmetOutcome:
    # every evaluation not met carries the reason code and words of its first unmet rule
    assert ev.reason is not None and ev.why_not is not None, problem
    return UnmetOutcome(problem=problem, reason=ev.reason, why_not=ev.why_not)


def evaluate_outcomes(
    ruleset: Ruleset, baseline: Snap, after: Sequence[Snap], attached_on: dt.date
) -> FamilyOutcomes:
    """The family's outcome plan against its snapshots since the baseline.

    ``after`` are the snapshots after the baseline, oldest first. Returns the
    problems considered, each one's outcome evaluation, the employment result,
    ``result`` (``"progress"``, ``"employment"`` or None) and, without a
    result, ``unmet``: for each problem (and the employment result) not met,
    a reason code and why, in words.
    """
    had = list(baseline.problems)
    for s in after:
        had += [p for p in s.problems if p not in had]
    per_problem = {p: _problem(ruleset, p, baseline, after, attached_on) for p in had}
    progress = bool(had) and all(v.met for v in per_problem.values())
    employment = (
        None
        if ruleset.employment is None
        else _outcome(ruleset.employment, baseline, after, attached_on, ruleset.calendar)
    )
    result: Literal["progress", "employment"] | None = "progress" if progress else None
    if result is None and employment is not None and employment.met:
        result = "employment"
    unmet: list[UnmetOutcome] = []
    if result is None:
        if not had:
            unmet.append(
                UnmetOutcome(
                    problem=None,
                    reason="NO_PROBLEM",
                    why_not="no problem at baseline or since: no progress to show",
                )
            )
        unmet += [_unmet(p, v) for p, v in per_problem.items() if not v.met]
        if employment is not None:
            unmet.append(_unmet("(employment)", employment))
    return FamilyOutcomes(
        problems=per_problem,
        employment=employment,
        result=result,
        unmet=unmet,
        baseline_cycle=baseline.cycle_id,
        latest_cycle=after[-1].cycle_id if after else baseline.cycle_id,
        as_at=(after[-1] if after else baseline).as_at.isoformat(),
    )


# --- reading snapshots ------------------------------------------------------------------


def _snaps(
    conn: Connection, family_ids: Sequence[str], ruleset: Ruleset | None = None
) -> dict[str, list[Snap]]:
    """Each family's snapshots, oldest first; with ``ruleset``, those of cycles that used
    another ruleset are re-derived under it from their measures (see ``_active``)."""
    sha = None if ruleset is None else ruleset.sha256()
    out: dict[str, list[Snap]] = {}
    for row in cstore.snap_rows(conn, family_ids):
        d = parse_detail(OutcomeDetail, row.detail, row.family_id, row.cycle_id)
        if ruleset is not None and row.ruleset_sha256 != sha:
            d = rederive_detail(d, ruleset)
        out.setdefault(row.family_id, []).append(
            Snap(
                cycle_id=row.cycle_id,
                as_at=row.as_at,
                measures=d.measures,
                problems=tuple(p for p, v in d.problems.items() if v.met),
                detail=d,
            )
        )
    return out


def _family_outcomes(
    conn: Connection, ruleset: Ruleset, rows: Sequence[pstore.FamilyRow]
) -> dict[str, FamilyOutcomes]:
    """family id -> outcome evaluation, for attached families ``rows`` (families table)."""
    snaps = _snaps(conn, [r.family_id for r in rows], ruleset)
    out: dict[str, FamilyOutcomes] = {}
    for r in rows:
        if r.baseline_cycle is None or r.attached_on is None:
            continue  # not attached (attaching sets both)
        history = snaps.get(r.family_id, [])
        base = [x for x in history if x.cycle_id == r.baseline_cycle]
        if not base:
            continue
        after = [x for x in history if x.cycle_id > r.baseline_cycle]
        out[r.family_id] = evaluate_outcomes(ruleset, base[0], after, r.attached_on)
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
    rows = [
        r for r in pstore.attached_in(conn, ("attached", "in_progress")) if r.family_id not in skip
    ]
    results = _family_outcomes(conn, ruleset, rows)
    moved = 0
    stamp = int(when.timestamp() * 1_000_000)
    for r in rows:
        res = results.get(str(r.family_id))
        if res is None or res.result is None:
            continue
        pstore.move_statuses(conn, [r.family_id], "pending_claim", stamp, actor)
        pstore.add_status_events(
            conn,
            [
                pstore.StatusEvent(
                    family_id=r.family_id,
                    from_status=r.status,
                    to_status="pending_claim",
                    at=stamp,
                    by=actor,
                    reason="RESULT_" + res.result.upper(),
                )
            ],
        )
        moved += 1
    return moved


# --- claims --------------------------------------------------------------------------------


def _latest_cycle(conn: Connection) -> tuple[int, Ruleset]:
    row = pstore.cycle_row(conn, None)
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
) -> ClaimBatch:
    """A claim batch for ``window_id`` (``YYYY-H1``/``H2``) in one transaction.

    With ``family_ids``, only those families are claimed, and each one that
    cannot be (not attached, no result, already claimed, a restriction flag
    that stops claims) is an error naming it. Without, flagged families are
    left out and counted in ``restricted``.
    """
    when = now or dt.datetime.now(dt.UTC)
    stamp = int(when.timestamp() * 1_000_000)
    try:
        with engine.begin() as conn:
            cycle_id, ruleset = _latest_cycle(conn)
            _check_window(conn, ruleset, cycle_id, window_id)
            rows = {r.family_id: r for r in pstore.family_rows(conn, family_ids)}
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
            claimed = cstore.claimed_kinds(conn)
            phase = pstore.phase_of(conn)
            taken = cstore.taken_people(conn, phase)

            members: dict[str, list[str]] = {}

            def people(fid: str) -> list[str]:
                if fid not in members:
                    members[fid] = store.members_of(conn, fid)
                return members[fid]

            attached_with = astore.attached_people(conn, phase)

            def holds_attached(fid: str) -> bool:
                """Whether any of the people attached with the family are in it now."""
                return any(attached_with.get(p) == fid for p in people(fid))

            def already(fid: str, kind: str) -> bool:
                """Whether any of the family's people were claimed for (any family id)."""
                return bool(taken) and any((kind, p) in taken for p in people(fid))

            if family_ids is not None:
                for fid in family_ids:
                    row = rows.get(fid)
                    if row is None or row.attached_on is None:
                        raise ConflictError(
                            f"family {fid}: not attached to the programme, so nothing to claim"
                        )
                    if not holds_attached(fid):
                        raise ConflictError(_nobody(conn, fid))
                    if (fid, "result") in claimed or already(fid, "result"):
                        raise ConflictError(
                            f"family {fid}: a results claim was already made for its people "
                            f"in {phase}"
                        )
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
            new: list[cstore.NewClaim] = []
            for r in attached:
                fid = r.family_id
                # ``attached`` holds attached families only, and attaching sets both
                assert r.attached_on is not None and r.baseline_cycle is not None
                if not holds_attached(fid):
                    # a re-link moved its people on (the family holding them carries
                    # the attachment): a claim here would be for nobody, or for others
                    continue
                if (
                    (fid, "attachment") not in claimed
                    and family_ids is None
                    and not already(fid, "attachment")
                ):
                    new.append(
                        _claim_row(
                            fid,
                            "attachment",
                            None,
                            window_id,
                            cycle_id,
                            ruleset.payments.attachment_gbp,
                            AttachmentEvidence(
                                attached_on=r.attached_on.isoformat(),
                                baseline_cycle=r.baseline_cycle,
                            ),
                            stamp,
                            actor,
                        )
                    )
                res = outcomes.get(fid)
                if (
                    r.status == "pending_claim"
                    and (fid, "result") not in claimed
                    and not already(fid, "result")
                ):
                    if res is None or res.result is None:
                        if family_ids is not None:
                            raise ConflictError(f"family {fid}: its result no longer holds")
                        continue
                    new.append(
                        _claim_row(
                            fid,
                            "result",
                            res.result,
                            window_id,
                            cycle_id,
                            ruleset.payments.result_gbp,
                            res,
                            stamp,
                            actor,
                        )
                    )
            cstore.add_claims(conn, new)
            claim_people(conn, stamp, phase, people)
            results = [c.family_id for c in new if c.kind == "result"]
            pstore.move_statuses(conn, results, "claimed", stamp, actor)
            pstore.add_status_events(
                conn,
                [
                    pstore.StatusEvent(
                        family_id=fid,
                        from_status="pending_claim",
                        to_status="claimed",
                        at=stamp,
                        by=actor,
                        reason="CLAIM_" + window_id.replace("-", "_"),
                    )
                    for fid in results
                ],
            )
    except IntegrityError as exc:
        raise ConflictError(
            f"claim batch {window_id} refused: a double claim ({exc.orig})"
        ) from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"claim batch {window_id} not stored: {exc}") from exc
    return ClaimBatch(
        window_id=window_id,
        cycle_id=cycle_id,
        attachment_claims=sum(1 for c in new if c.kind == "attachment"),
        result_claims=len(results),
        progress=sum(1 for c in new if c.result == "progress"),
        employment=sum(1 for c in new if c.result == "employment"),
        amount_gbp=sum(c.amount_gbp for c in new),
        restricted=len(flagged),
    )


def _nobody(conn: Connection, family_id: str) -> str:
    """Why ``family_id``, attached but holding none of its attached people now, is not
    claimed."""
    lineage = store.successors(conn, family_id)
    if lineage is not None and lineage[0] != "current":
        where = f"re-linking retired its id; it lives on as {', '.join(lineage[1]) or 'nobody'}"
    else:
        where = "re-linking moved them to another family, which carries the attachment"
    return (
        f"family {family_id}: none of the people attached with it are in it now ({where}), "
        "so nothing is claimed for it"
    )


def claim_window(ruleset: Ruleset, window_id: str) -> ClaimWindow:
    """The calendar's claim window ``window_id``; ConflictError naming the calendar if none."""
    window = ruleset.calendar.window(window_id)
    if window is None:
        raise ConflictError(
            f"claim window {window_id!r} is not in the calendar of {ruleset.name} "
            f"{ruleset.version}: {ruleset.calendar.describe()}"
        )
    return window


def _check_window(conn: Connection, ruleset: Ruleset, cycle_id: int, window_id: str) -> None:
    window = claim_window(ruleset, window_id)
    row = pstore.cycle_row(conn, cycle_id)
    assert row is not None  # the caller read it in this transaction
    as_at: dt.date = row.as_at
    if not window.opens <= as_at <= window.closes:
        held = ruleset.calendar.window_of(as_at)
        raise ConflictError(
            f"claim window {window_id} runs {window.opens} to {window.closes}, but the latest "
            f"assessment (cycle {cycle_id}) is as at {as_at}"
            + (f", in window {held.window_id}" if held else ", outside the calendar")
            + ": a claim batch names the window of the assessment it claims from"
        )


def _claim_row(
    family_id: str,
    kind: str,
    result: str | None,
    window_id: str,
    cycle_id: int,
    amount: int,
    evidence: AttachmentEvidence | FamilyOutcomes,
    stamp: int,
    actor: str,
) -> cstore.NewClaim:
    return cstore.NewClaim(
        family_id=family_id,
        kind=kind,
        result=result,
        window_id=window_id,
        cycle_id=cycle_id,
        amount_gbp=amount,
        evidence=_evidence_json(evidence),
        created_at=stamp,
        created_by=actor,
    )


def _evidence_json(evidence: AttachmentEvidence | FamilyOutcomes) -> str:
    """A claim's evidence as stored: sorted keys, ``json`` module spacing and numbers.

    Exactly the text claims were stored with before the evidence had models, so
    a claim read back and written out again is the same text.
    """
    return json.dumps(evidence.model_dump(mode="json", exclude_unset=True), sort_keys=True)


def _stored_evidence(claim: cstore.Claim) -> AttachmentEvidence | FamilyOutcomes:
    """A stored claim's evidence, by its kind (StorageError naming the claim if it does not
    parse)."""
    try:
        if claim.kind == "attachment":
            return AttachmentEvidence.model_validate_json(claim.evidence)
        return FamilyOutcomes.model_validate_json(claim.evidence)
    except ValidationError as exc:
        raise StorageError(
            f"claim {claim.id} ({claim.kind}, family {claim.family_id}): stored evidence does "
            f"not parse: {describe_errors(exc, '(top)')}"
        ) from exc


def list_claims(engine: Engine, window_id: str | None = None) -> list[ClaimView]:
    """Claims (of one window, or all), oldest first, with their evidence."""
    try:
        with engine.connect() as conn:
            rows = cstore.claim_rows(conn, window_id)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read claims: {exc}") from exc
    return [
        ClaimView(
            claim_id=r.id,
            family_id=r.family_id,
            kind=r.kind,
            result=r.result,
            window_id=r.window_id,
            cycle_id=r.cycle_id,
            amount_gbp=r.amount_gbp,
            created_at=store.iso(r.created_at),
            created_by=r.created_by,
            evidence=_stored_evidence(r),
        )
        for r in rows
    ]


class EvidenceItem(BaseModel):
    """One item of a claim's evidence, a row of the audit CSV after the claim's own columns.

    ``item`` says which: ``attachment``, ``identified`` (a problem and where it was
    first seen), ``event`` (an event behind it), ``condition`` (an outcome rule)
    or ``observation`` (the rule's measure at one snapshot).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    item: str
    problem: str | None = None
    indicators: str | None = None  # ";"-joined
    measure: str | None = None
    cycle_id: int | None = None
    as_at: str | None = None
    value: int | float | None = None
    baseline: int | float | None = None
    op: str | None = None
    threshold: int | float | None = None
    met: bool | None = None
    reason: str | None = None
    agency_id: str | None = None  # ";"-joined for an identified problem
    record_ref: str | None = None
    event_type: str | None = None
    note: str | None = None


# the claim's own columns, then its evidence item's
_CLAIM_COLUMNS = (
    "claim_id",
    "window_id",
    "family_id",
    "kind",
    "result",
    "amount_gbp",
    "claim_cycle_id",
    "created_at",
    "created_by",
)
EVIDENCE_COLUMNS = (*_CLAIM_COLUMNS, *EvidenceItem.model_fields)


def sample_claims(
    claims: Sequence[ClaimView], *, sample_pct: float = 100.0, seed: int = 0
) -> list[ClaimView]:
    """A reproducible ``sample_pct`` sample of ``claims`` (all at 100), in claim order."""
    if not 0 < sample_pct <= 100:
        raise ConflictError(f"sample_pct {sample_pct}: expected more than 0 and at most 100")
    chosen = list(claims)
    if sample_pct < 100:
        k = max(1, round(len(chosen) * sample_pct / 100)) if chosen else 0
        chosen = sorted(random.Random(seed).sample(chosen, k), key=lambda c: c.claim_id)
    return chosen


def _condition_items(problem: str, cond: ConditionOutcome) -> list[EvidenceItem]:
    notes = []
    if cond.sustained_months:
        notes.append(f"sustained {cond.sustained_months} months")
    if cond.months_since_attachment:
        notes.append(f"{cond.months_since_attachment} months after attachment")
    if cond.held_since is not None:
        notes.append(f"held since {cond.held_since.as_at}")
    if cond.why_not:
        notes.append(cond.why_not)
    items = [
        EvidenceItem(
            item="condition",
            problem=problem,
            measure=cond.measure,
            baseline=cond.baseline,
            op=cond.op,
            threshold=cond.value,
            met=cond.met,
            reason=cond.reason,
            cycle_id=cond.baseline_cycle,
            note=f"{cond.compare}; " + "; ".join(notes) if notes else cond.compare,
        )
    ]
    for obs in cond.snapshots or ():
        items.append(
            EvidenceItem(
                item="observation",
                problem=problem,
                measure=cond.measure,
                cycle_id=obs.cycle_id,
                as_at=obs.as_at,
                value=obs.value,
                baseline=cond.baseline,
                op=cond.op,
                threshold=cond.value,
                met=obs.held,
                note=f"fall {obs.fall_pct}%" if obs.fall_pct is not None else None,
            )
        )
    return items


def evidence_items(claim: ClaimView) -> list[EvidenceItem]:
    """One row per item of a claim's evidence: what was identified, events, conditions, values."""
    ev = claim.evidence
    if isinstance(ev, AttachmentEvidence):
        return [
            EvidenceItem(
                item="attachment",
                cycle_id=ev.baseline_cycle,
                as_at=ev.attached_on,
                note="attached to the programme; baseline fixed to this cycle",
            )
        ]
    items: list[EvidenceItem] = []
    for problem, p in sorted(ev.problems.items()):
        items.append(
            EvidenceItem(
                item="identified",
                problem=problem,
                indicators=";".join(p.indicators),
                cycle_id=p.identified_cycle,
                as_at=p.identified_as_at,
                agency_id=";".join(p.source_agencies),
                met=p.met,
                reason=p.reason,
                note=p.title,
            )
        )
        for e in p.events:
            items.append(
                EvidenceItem(
                    item="event",
                    problem=problem,
                    as_at=e.date,
                    value=e.value,
                    agency_id=e.agency_id,
                    record_ref=e.record_ref,
                    event_type=e.type,
                )
            )
        for cond in p.conditions or ():
            items += _condition_items(problem, cond)
    if claim.result == "employment" and ev.employment is not None:
        for cond in ev.employment.conditions:
            items += _condition_items("(employment)", cond)
    return items


def export_claims(claims: Sequence[ClaimView], *, sample_pct: float = 100.0, seed: int = 0) -> str:
    """CSV for internal audit: one row per evidence item of each (sampled) claim."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(EVIDENCE_COLUMNS)
    for c in sample_claims(claims, sample_pct=sample_pct, seed=seed):
        head = (
            c.claim_id,
            c.window_id,
            c.family_id,
            c.kind,
            c.result,
            c.amount_gbp,
            c.cycle_id,
            c.created_at,
            c.created_by,
        )
        for item in evidence_items(c):
            row = (*head, *(getattr(item, k) for k in EvidenceItem.model_fields))
            w.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def export_claims_json(
    claims: Sequence[ClaimView], *, sample_pct: float = 100.0, seed: int = 0
) -> str:
    """JSON alongside the CSV: the same (sampled) claims with their whole evidence."""
    chosen = sample_claims(claims, sample_pct=sample_pct, seed=seed)
    body = [c.model_dump(mode="json", exclude_unset=True) for c in chosen]
    return json.dumps({"claims": body}, indent=2, sort_keys=True) + "\n"


def family_outcomes(engine: Engine, family_id: str) -> FamilyOutcomes:
    """The outcome plan evaluation of one attached family as of the latest cycle."""
    try:
        with engine.connect() as conn:
            _cycle, ruleset = _latest_cycle(conn)
            row = pstore.family_row(conn, family_id)
            if row is None:
                raise NotFound(f"no family {family_id!r} with a status")
            if row.baseline_cycle is None:
                raise ConflictError(f"family {family_id} is not attached: no baseline yet")
            return _family_outcomes(conn, ruleset, [row])[family_id]
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot evaluate outcomes of {family_id}: {exc}") from exc


def claim_people(
    conn: Connection, created_at: int, phase: str, people: Callable[[str], list[str]]
) -> None:
    """Record the people of the claims made at ``created_at`` as claimed for in this phase.

    The primary key (phase, kind, person) makes a second claim of a kind for any of
    the same people impossible, whatever their family ids became after a re-link;
    it raises IntegrityError, which rolls the whole claim batch back.
    """
    rows = [
        cstore.ClaimedPerson(phase=phase, kind=kind, person_id=p, claim_id=cid)
        for cid, fid, kind in cstore.claims_made_at(conn, created_at)
        for p in people(fid)
    ]
    cstore.add_claimed_persons(conn, rows)
