"""Programme reports: the coordinators' questions answered from one assessment cycle.

Each report is a plain function ``report(engine, cycle_id=None, ...)`` over the
stored cycles, snapshots, statuses and claims; it reads the latest cycle unless
given one, and returns a JSON-ready dict::

    {"report": name, "cycle": {id, as_at, ruleset {name, version, sha256},
     model {name, version, sha256}}, ...report fields..., "rows": [flat dicts]}

``rows`` is the report's table; :func:`to_csv` writes it (with the cycle's
provenance in trailing columns) for the CLI's CSV export. The ruleset and the
model are read from the cycle row itself, so a report on an old cycle uses the
rules that cycle was computed with.

A family's *status* in a report is the last status in ``status_events`` before
the next cycle was run (for the latest cycle: the current status), so an old
cycle's report shows the statuses of its period. Families in the cycle with no
status are ``not_eligible`` when the cycle found them not eligible, else
``no_status``.

Must never: write to the database, or read a sealed blob or anything that
names a person (reports carry pseudonymous family and person ids only).
"""

from __future__ import annotations

import csv
import inspect
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .. import _store as store
from .._errors import ConflictError, NotFound, StorageError
from ._assessment import STATUSES
from ._claims import _snaps, evaluate_outcomes
from ._riskmodel import RiskModel
from ._ruleset import Ruleset

__all__ = [
    "AVERAGE_FAMILY_GBP",
    "MULTIPLE_NEEDS_GBP",
    "REPORTS",
    "cost_avoidance",
    "data_coverage",
    "longest",
    "needs_breakdown",
    "outcomes_achieved",
    "previously_worked",
    "run_report",
    "social_care",
    "status_counts",
    "steps",
    "to_csv",
    "work_list",
]

# DOMAIN.md: public spend a year on an average family, and on a family with multiple needs.
AVERAGE_FAMILY_GBP: Final = 7795
MULTIPLE_NEEDS_GBP: Final = 76190
NOT_ELIGIBLE: Final = "not_eligible"
NO_STATUS: Final = "no_status"
STATUS_COLUMNS: Final = (*STATUSES, NOT_ELIGIBLE, NO_STATUS)
UNKNOWN_DISTRICT: Final = "(unknown)"
_TOP_REASONS = 3


@dataclass(frozen=True)
class _Cycle:
    id: int
    as_at: str
    cutoff: int | None  # status events before this (the next cycle's creation) count
    ruleset: Ruleset
    model: RiskModel
    provenance: dict[str, Any]


@dataclass(frozen=True)
class _Snapshot:
    family_id: str
    district: str
    eligible: bool
    n_problems: int
    score: int
    rank: int
    percentile: float
    previous_score: int | None
    step: str | None
    detail: dict[str, Any]

    @property
    def problems(self) -> list[str]:
        return [p for p, v in self.detail.get("problems", {}).items() if v.get("met")]

    def top_reasons(self, n: int = _TOP_REASONS) -> list[str]:
        return [f"{r['code']}:{r['points']}" for r in self.detail.get("reasons", [])[:n]]


# --- reading ------------------------------------------------------------------------------


def _cycle(conn: Connection, cycle_id: int | None) -> _Cycle:
    c = store.cycles
    row = store.cycle_row(conn, cycle_id)
    if row is None:
        if cycle_id is None:
            raise ConflictError("no assessment has been run: nothing to report")
        raise NotFound(f"no assessment cycle {cycle_id}")
    cutoff = conn.execute(sa.select(sa.func.min(c.c.created_at)).where(c.c.id > row.id)).scalar()
    return _Cycle(
        id=int(row.id),
        as_at=row.as_at.isoformat(),
        cutoff=None if cutoff is None else int(cutoff),
        ruleset=Ruleset.model_validate_json(row.ruleset),
        model=RiskModel.model_validate_json(row.model),
        provenance={"id": int(row.id), "as_at": row.as_at.isoformat(), **store.cycle_versions(row)},
    )


def _snapshots(conn: Connection, cycle_id: int) -> list[_Snapshot]:
    s = store.snapshots
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
    return [
        _Snapshot(
            family_id=str(r.family_id),
            district=r.district or UNKNOWN_DISTRICT,
            eligible=bool(r.eligible),
            n_problems=int(r.n_problems),
            score=int(r.score),
            rank=int(r.rank),
            percentile=float(r.percentile),
            previous_score=None if r.previous_score is None else int(r.previous_score),
            step=r.step,
            detail=json.loads(r.detail),
        )
        for r in conn.execute(q, execution_options={"yield_per": 10_000})
    ]


def _history(conn: Connection, cutoff: int | None) -> dict[str, list[tuple[int, str]]]:
    """Family id -> its status events (time, new status), oldest first, before ``cutoff``."""
    e = store.status_events
    q = sa.select(e.c.family_id, e.c.at, e.c.to_status).order_by(e.c.at, e.c.id)
    if cutoff is not None:
        q = q.where(e.c.at < cutoff)
    out: dict[str, list[tuple[int, str]]] = {}
    for fid, at, to in conn.execute(q):
        out.setdefault(str(fid), []).append((int(at), str(to)))
    return out


def _status(snap: _Snapshot, history: Mapping[str, list[tuple[int, str]]]) -> str:
    events = history.get(snap.family_id)
    if events:
        return events[-1][1]
    return NO_STATUS if snap.eligible else NOT_ELIGIBLE


def _read(
    engine: Engine, cycle_id: int | None, what: str, fn: Callable[[Connection, _Cycle], Any]
) -> Any:
    try:
        with engine.connect() as conn:
            return fn(conn, _cycle(conn, cycle_id))
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the {what} report: {exc}") from exc


def _report(name: str, cyc: _Cycle, rows: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"report": name, "cycle": cyc.provenance, **fields, "rows": rows}


def _problem_title(ruleset: Ruleset, problem: str) -> str:
    return ruleset.problems[problem].title if problem in ruleset.problems else problem


def _check_problem(ruleset: Ruleset, problem: str) -> None:
    if problem not in ruleset.problems:
        raise NotFound(
            f"ruleset {ruleset.name} {ruleset.version} has no problem {problem!r}; "
            f"problems: {', '.join(ruleset.problems)}"
        )


# --- counts by status and district -----------------------------------------------------------


def status_counts(engine: Engine, cycle_id: int | None = None) -> dict[str, Any]:
    """Families of the cycle by status, in total and by postcode district."""

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        history = _history(conn, cyc.cutoff)
        snaps = _snapshots(conn, cyc.id)
        by_district: dict[str, Counter[str]] = {}
        for s in snaps:
            by_district.setdefault(s.district, Counter())[_status(s, history)] += 1
        totals: Counter[str] = Counter()
        rows = []
        for district in sorted(by_district):
            counts = by_district[district]
            totals.update(counts)
            rows.append(
                {
                    "district": district,
                    **{k: counts[k] for k in STATUS_COLUMNS},
                    "total": sum(counts.values()),
                }
            )
        in_cycle = {s.family_id for s in snaps}
        return _report(
            "status",
            cyc,
            rows,
            totals={**{k: totals[k] for k in STATUS_COLUMNS}, "total": len(snaps)},
            # families with a status whose household is not in this cycle (moved, dissolved)
            not_in_cycle=sum(1 for f in history if f not in in_cycle),
        )

    result: dict[str, Any] = _read(engine, cycle_id, "status", build)
    return result


# --- needs -------------------------------------------------------------------------------


def needs_breakdown(engine: Engine, cycle_id: int | None = None) -> dict[str, Any]:
    """Eligible families per problem, and per combination of problems met."""

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        eligible = [s for s in _snapshots(conn, cyc.id) if s.eligible]
        per_problem: Counter[str] = Counter()
        combos: Counter[tuple[str, ...]] = Counter()
        order = list(cyc.ruleset.problems)
        for s in eligible:
            met = tuple(p for p in order if p in s.problems)
            per_problem.update(met)
            combos[met] += 1
        rows: list[dict[str, Any]] = [
            {
                "kind": "problem",
                "problems": p,
                "n_problems": 1,
                "families": per_problem[p],
                "title": _problem_title(cyc.ruleset, p),
            }
            for p in order
        ]
        for met, n in sorted(combos.items(), key=lambda x: (-x[1], len(x[0]), x[0])):
            rows.append(
                {
                    "kind": "combination",
                    "problems": "+".join(met),
                    "n_problems": len(met),
                    "families": n,
                    "title": "",
                }
            )
        by_count = Counter(len(met) for met in combos.elements())
        return _report(
            "needs",
            cyc,
            rows,
            eligible=len(eligible),
            by_number_of_problems={str(k): by_count[k] for k in sorted(by_count)},
        )

    result: dict[str, Any] = _read(engine, cycle_id, "needs", build)
    return result


def data_coverage(engine: Engine, cycle_id: int | None = None) -> dict[str, Any]:
    """ "No data or no problem?": per problem, families with it, with data but not it, no data.

    Over every family in the cycle. *No data* means no member has a record in
    any of the problem's source extract types; ``agencies`` counts, per agency,
    the families it holds such records for.
    """

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        snaps = _snapshots(conn, cyc.id)
        rows = []
        for p in cyc.ruleset.problems:
            met = data_only = no_data = 0
            agencies: Counter[str] = Counter()
            for s in snaps:
                info = s.detail.get("problems", {}).get(p)
                if info is None or p in s.detail.get("no_data", ()):
                    no_data += 1
                    continue
                agencies.update(info.get("data_from", ()))
                if info.get("met"):
                    met += 1
                else:
                    data_only += 1
            rows.append(
                {
                    "problem": p,
                    "families": len(snaps),
                    "with_problem": met,
                    "data_no_problem": data_only,
                    "no_data": no_data,
                    "no_data_share": round(no_data / len(snaps), 4) if snaps else 0.0,
                    "agencies": dict(sorted(agencies.items())),
                    "title": _problem_title(cyc.ruleset, p),
                }
            )
        return _report("coverage", cyc, rows, families=len(snaps))

    result: dict[str, Any] = _read(engine, cycle_id, "coverage", build)
    return result


def social_care(
    engine: Engine,
    cycle_id: int | None = None,
    *,
    child_protection: str = "child_protection",
    child_in_need: str = "child_in_need",
) -> dict[str, Any]:
    """Eligible families open to social care: on a protection plan, or child in need only.

    A family with both indicators counts under child protection (the statutory
    level above child in need); ``both`` says how many of those also have one.
    """

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        for iid in (child_protection, child_in_need):
            if iid not in cyc.ruleset.indicators:
                raise NotFound(
                    f"ruleset {cyc.ruleset.name} {cyc.ruleset.version} has no indicator {iid!r}"
                )
        eligible = [s for s in _snapshots(conn, cyc.id) if s.eligible]
        by_district: dict[str, Counter[str]] = {}
        for s in eligible:
            ind = set(s.detail.get("indicators", ()))
            cp, cin = child_protection in ind, child_in_need in ind
            counts = by_district.setdefault(s.district, Counter())
            counts["eligible"] += 1
            counts["open_to_social_care"] += cp or cin
            counts["child_protection"] += cp
            counts["child_in_need_only"] += cin and not cp
            counts["both"] += cp and cin
        keys = ("eligible", "open_to_social_care", "child_protection", "child_in_need_only", "both")
        totals: Counter[str] = Counter()
        rows = []
        for district in sorted(by_district):
            totals.update(by_district[district])
            rows.append({"district": district, **{k: by_district[district][k] for k in keys}})
        return _report(
            "social_care",
            cyc,
            rows,
            indicators={"child_protection": child_protection, "child_in_need": child_in_need},
            totals={k: totals[k] for k in keys},
        )

    result: dict[str, Any] = _read(engine, cycle_id, "social care", build)
    return result


# --- outcomes and claims ---------------------------------------------------------------------


def outcomes_achieved(engine: Engine, cycle_id: int | None = None) -> dict[str, Any]:
    """Outcomes achieved most and least, per problem.

    Two sources: result claims made up to the cycle (how many claims show the
    problem's outcome met), and the outcome plan of every family attached by the
    cycle, evaluated on its snapshots up to the cycle (of the attached families
    that had the problem, how many meet its outcome now). Rows are sorted by
    that rate, highest first; ``most`` and ``least`` name the problems at each end
    (``least`` is empty when every rate is the same). ``by_agency`` splits each
    problem by the agencies whose records identified it: which services see
    their families' needs turned around (the service does not know which
    interventions a family received, only who reported the need).
    """

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        c = store.claims
        claimed: Counter[str] = Counter()
        results: Counter[str] = Counter()
        for result, evidence in conn.execute(
            sa.select(c.c.result, c.c.evidence).where(c.c.kind == "result", c.c.cycle_id <= cyc.id)
        ):
            results[str(result)] += 1
            for p, v in json.loads(evidence).get("problems", {}).items():
                if v.get("met"):
                    claimed[p] += 1
        f = store.families
        attached = conn.execute(
            sa.select(f.c.family_id, f.c.attached_on, f.c.baseline_cycle).where(
                f.c.baseline_cycle.is_not(None), f.c.baseline_cycle <= cyc.id
            )
        ).all()
        snaps = _snaps(conn, [str(r.family_id) for r in attached])
        had: Counter[str] = Counter()
        met: Counter[str] = Counter()
        by_agency_had: Counter[tuple[str, str]] = Counter()
        by_agency_met: Counter[tuple[str, str]] = Counter()
        employment = 0
        for r in attached:
            history = [x for x in snaps.get(str(r.family_id), []) if x.cycle_id <= cyc.id]
            base = [x for x in history if x.cycle_id == r.baseline_cycle]
            if not base:
                continue
            after = [x for x in history if x.cycle_id > r.baseline_cycle]
            ev = evaluate_outcomes(cyc.ruleset, base[0], after, r.attached_on)
            for p, v in ev["problems"].items():
                had[p] += 1
                met[p] += bool(v.get("met"))
                for agency in v.get("source_agencies", []):
                    by_agency_had[(p, agency)] += 1
                    by_agency_met[(p, agency)] += bool(v.get("met"))
            employment += bool(ev["employment"] and ev["employment"]["met"])
        rows: list[dict[str, Any]] = [
            {
                "problem": p,
                "attached_with_problem": had[p],
                "outcome_met": met[p],
                "rate": round(met[p] / had[p], 4) if had[p] else None,
                "result_claims_showing_outcome": claimed[p],
                "title": (
                    cyc.ruleset.outcomes[p].title
                    if p in cyc.ruleset.outcomes
                    else "(no outcome rule)"
                ),
            }
            for p in cyc.ruleset.problems
        ]
        rows.sort(key=lambda r: (r["rate"] is None, -(r["rate"] or 0.0), r["problem"]))
        rates = [r["rate"] for r in rows if r["rate"] is not None]
        top, bottom = (max(rates), min(rates)) if rates else (None, None)
        return _report(
            "outcomes",
            cyc,
            rows,
            attached_families=len(attached),
            employment_met=employment,
            by_agency=[
                {
                    "problem": p,
                    "agency_id": a,
                    "attached_with_problem": n,
                    "outcome_met": by_agency_met[(p, a)],
                    "rate": round(by_agency_met[(p, a)] / n, 4),
                }
                for (p, a), n in sorted(by_agency_had.items())
            ],
            result_claims={k: results[k] for k in sorted(results)},
            most=[r["problem"] for r in rows if rates and r["rate"] == top],
            least=[r["problem"] for r in rows if top != bottom and r["rate"] == bottom],
        )

    result: dict[str, Any] = _read(engine, cycle_id, "outcomes", build)
    return result


def cost_avoidance(
    engine: Engine,
    cycle_id: int | None = None,
    *,
    average_gbp: int = AVERAGE_FAMILY_GBP,
    multiple_needs_gbp: int = MULTIPLE_NEEDS_GBP,
    multiple_needs_from: int = 3,
    years: float = 1.0,
) -> dict[str, Any]:
    """Public spend avoided by families with a result claim (a gross, upper-bound estimate).

    Assumption: each family with a result claim made up to the cycle no longer
    incurs ``years`` of the public spend of a family like it: ``multiple_needs_gbp``
    a year when it had at least ``multiple_needs_from`` problems (those in its
    claim's evidence: baseline and found later), else ``average_gbp``. No
    counterfactual, no cost of the intervention, no discounting.
    """

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        c = store.claims
        bands: Counter[str] = Counter()
        income = 0
        for kind, amount, evidence in conn.execute(
            sa.select(c.c.kind, c.c.amount_gbp, c.c.evidence).where(c.c.cycle_id <= cyc.id)
        ):
            income += int(amount)
            if kind == "result":
                n = len(json.loads(evidence).get("problems", {}))
                bands["multiple_needs" if n >= multiple_needs_from else "average"] += 1
        per = {"average": average_gbp, "multiple_needs": multiple_needs_gbp}
        rows = [
            {
                "band": band,
                "families": bands[band],
                "gbp_per_family_year": per[band],
                "years": years,
                "gbp": round(bands[band] * per[band] * years),
            }
            for band in ("average", "multiple_needs")
        ]
        return _report(
            "cost_avoidance",
            cyc,
            rows,
            assumption=(
                f"each family with a result claim avoids {years:g} year(s) of public spend: "
                f"GBP {multiple_needs_gbp:,} a year with {multiple_needs_from}+ problems, "
                f"else GBP {average_gbp:,}; gross, no counterfactual, no intervention cost"
            ),
            parameters={
                "average_gbp": average_gbp,
                "multiple_needs_gbp": multiple_needs_gbp,
                "multiple_needs_from": multiple_needs_from,
                "years": years,
            },
            families=sum(bands.values()),
            total_gbp=sum(r["gbp"] for r in rows),
            claimed_income_gbp=income,
        )

    result: dict[str, Any] = _read(engine, cycle_id, "cost avoidance", build)
    return result


# --- family lists -----------------------------------------------------------------------------


def _related_indicators(ruleset: Ruleset, problem: str) -> set[str]:
    """The problem's indicators and every combined indicator built on one of them."""
    related = set(ruleset.problems[problem].any_of)
    grew = True
    while grew:
        grew = False
        for iid, ind in ruleset.indicators.items():
            if iid not in related and related & {*ind.any_of, *ind.all_of}:
                related.add(iid)
                grew = True
    return related


def _problem_points(snap: _Snapshot, problem: str, related: set[str]) -> int:
    refs = {f"indicator:{i}" for i in related} | {f"problem:{problem}"}
    return sum(
        int(r["points"])
        for r in snap.detail.get("reasons", ())
        if r["code"] != "BREADTH" and refs & set(r.get("because", ()))
    )


def work_list(
    engine: Engine,
    cycle_id: int | None = None,
    *,
    problem: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Eligible families to work with first: highest score first, with reasons and status.

    With ``problem``, only families meeting it, sorted by the points of their
    reasons touching it (``problem_points``: factors and combinations on its
    indicators, not breadth), then by score: e.g. ``domestic_abuse`` lists the
    biggest domestic-abuse concerns first.
    """

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        if problem is not None:
            _check_problem(cyc.ruleset, problem)
        related = set() if problem is None else _related_indicators(cyc.ruleset, problem)
        history = _history(conn, cyc.cutoff)
        chosen = [
            s
            for s in _snapshots(conn, cyc.id)
            if s.eligible and (problem is None or problem in s.problems)
        ]
        keyed = [
            (0 if problem is None else _problem_points(s, problem, related), s) for s in chosen
        ]
        keyed.sort(key=lambda x: (-x[0], -x[1].score, x[1].family_id))
        if limit is not None:
            keyed = keyed[:limit]
        rows = []
        for position, (points, s) in enumerate(keyed, start=1):
            row: dict[str, Any] = {
                "position": position,
                "family_id": s.family_id,
                "score": s.score,
                "rank": s.rank,
                "percentile": s.percentile,
            }
            if problem is not None:
                row["problem_points"] = points
            row.update(
                {
                    "n_problems": s.n_problems,
                    "problems": s.problems,
                    "top_reasons": s.top_reasons(),
                    "step": s.step or "",
                    "status": _status(s, history),
                    "district": s.district,
                }
            )
            rows.append(row)
        return _report("work_list", cyc, rows, problem=problem, eligible=len(chosen))

    result: dict[str, Any] = _read(engine, cycle_id, "work list", build)
    return result


def longest(
    engine: Engine, cycle_id: int | None = None, *, limit: int | None = None
) -> dict[str, Any]:
    """Eligible families likely to take longest: highest sum of domain scores, most problems.

    ``domain_total`` sums the family's 1 (none) .. 5 (critical) domain scores
    over every problem of the ruleset; ties go to more problems, then the score.
    """

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        history = _history(conn, cyc.cutoff)
        keyed = []
        for s in _snapshots(conn, cyc.id):
            if s.eligible:
                domains = {p: int(v) for p, v in s.detail.get("domains", {}).items()}
                keyed.append((sum(domains.values()), domains, s))
        keyed.sort(key=lambda x: (-x[0], -x[2].n_problems, -x[2].score, x[2].family_id))
        if limit is not None:
            keyed = keyed[:limit]
        rows = [
            {
                "position": k,
                "family_id": s.family_id,
                "domain_total": total,
                "n_problems": s.n_problems,
                "domains": {p: d for p, d in sorted(domains.items()) if d > 1},
                "score": s.score,
                "status": _status(s, history),
                "district": s.district,
            }
            for k, (total, domains, s) in enumerate(keyed, start=1)
        ]
        return _report("longest", cyc, rows)

    result: dict[str, Any] = _read(engine, cycle_id, "longest", build)
    return result


def previously_worked(engine: Engine, cycle_id: int | None = None) -> dict[str, Any]:
    """Eligible families whose status history reached claimed or closed before now.

    A family counts when, before the cycle's period ended, it was claimed or
    closed at least once: it is still claimed, closed, or was identified again
    after an earlier episode. ``attached_before`` says whether that earlier
    episode got as far as attachment (work with the family started).
    """

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        history = _history(conn, cyc.cutoff)
        c = store.claims
        claims: Counter[str] = Counter(
            str(fid)
            for (fid,) in conn.execute(
                sa.select(c.c.family_id).where(c.c.kind == "result", c.c.cycle_id <= cyc.id)
            )
        )
        rows: list[dict[str, Any]] = []
        for s in _snapshots(conn, cyc.id):
            events = history.get(s.family_id, [])
            ended = [k for k, (_at, to) in enumerate(events) if to in ("claimed", "closed")]
            if not s.eligible or not ended:
                continue
            earlier = events[: ended[-1] + 1]
            rows.append(
                {
                    "family_id": s.family_id,
                    "status": events[-1][1],
                    "earlier_statuses": [to for _at, to in earlier],
                    "last_ended": store.iso(earlier[-1][0]),
                    "attached_before": any(to == "attached" for _at, to in earlier),
                    "claimed_before": any(to == "claimed" for _at, to in earlier),
                    "result_claims": claims[s.family_id],
                    "score": s.score,
                    "n_problems": s.n_problems,
                    "district": s.district,
                }
            )
        rows.sort(key=lambda r: (-r["score"], r["family_id"]))
        return _report("previously_worked", cyc, rows)

    result: dict[str, Any] = _read(engine, cycle_id, "previously worked", build)
    return result


def steps(engine: Engine, cycle_id: int | None = None) -> dict[str, Any]:
    """Families whose score rose (step up) or fell (step down) past the model's deltas."""

    def build(conn: Connection, cyc: _Cycle) -> dict[str, Any]:
        history = _history(conn, cyc.cutoff)
        moved = [s for s in _snapshots(conn, cyc.id) if s.step in ("up", "down")]
        moved.sort(
            key=lambda s: (
                s.step != "up",
                -abs(s.score - (s.previous_score or 0)),
                s.family_id,
            )
        )
        rows = [
            {
                "step": s.step,
                "family_id": s.family_id,
                "previous_score": s.previous_score,
                "score": s.score,
                "change": s.score - (s.previous_score or 0),
                "eligible": s.eligible,
                "top_reasons": s.top_reasons(),
                "status": _status(s, history),
                "district": s.district,
            }
            for s in moved
        ]
        t = cyc.model.thresholds
        return _report(
            "steps",
            cyc,
            rows,
            thresholds={"step_up": t.step_up, "step_down": t.step_down},
            step_up=sum(1 for s in moved if s.step == "up"),
            step_down=sum(1 for s in moved if s.step == "down"),
        )

    result: dict[str, Any] = _read(engine, cycle_id, "steps", build)
    return result


REPORTS: Final[dict[str, Callable[..., dict[str, Any]]]] = {
    "status": status_counts,
    "needs": needs_breakdown,
    "coverage": data_coverage,
    "social-care": social_care,
    "outcomes": outcomes_achieved,
    "work-list": work_list,
    "longest": longest,
    "previously-worked": previously_worked,
    "steps": steps,
    "cost-avoidance": cost_avoidance,
}


def run_report(
    engine: Engine, name: str, cycle_id: int | None = None, **params: Any
) -> dict[str, Any]:
    """The report called ``name`` (a key of :data:`REPORTS`) with the parameters it takes.

    Parameters left as None are dropped; one the report does not take is a
    ConflictError naming it, so a CLI or API can pass its options through.
    """
    fn = REPORTS.get(name)
    if fn is None:
        raise NotFound(f"no report {name!r}; reports: {', '.join(REPORTS)}")
    takes = {p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}
    given = {k: v for k, v in params.items() if v is not None}
    extra = sorted(set(given) - takes)
    if extra:
        raise ConflictError(
            f"report {name} takes no {', '.join(extra)}; "
            f"it takes: {', '.join(sorted(takes)) or 'nothing'}"
        )
    return fn(engine, cycle_id, **given)


# --- CSV --------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ";".join(f"{k}:{_cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ";".join(_cell(v) for v in value)
    return str(value)


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def to_csv(report: Mapping[str, Any]) -> str:
    """The report's rows as CSV, the cycle's id, date, ruleset and model in trailing columns.

    Lists are joined with ``;``, mappings written ``key:value;...``.
    """
    rows: Sequence[Mapping[str, Any]] = report["rows"]
    cyc = report["cycle"]
    provenance = {
        "cycle_id": cyc["id"],
        "as_at": cyc["as_at"],
        "ruleset": f"{cyc['ruleset']['name']} {cyc['ruleset']['version']}",
        "ruleset_sha256": cyc["ruleset"]["sha256"],
        "model": f"{cyc['model']['name']} {cyc['model']['version']}",
        "model_sha256": cyc["model"]["sha256"],
    }
    columns = _columns(rows)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([*columns, *provenance])
    for row in rows:
        w.writerow([*(_cell(row.get(k)) for k in columns), *provenance.values()])
    return out.getvalue()
