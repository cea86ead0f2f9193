"""Programme reports: the coordinators' questions answered from one assessment cycle.

Each report is a plain function ``report(engine, cycle_id=None, ...)`` over the
stored cycles, snapshots, statuses and claims; it reads the latest cycle unless
given one, and returns the report's wire model (``protocols._reports``: one
model per report, tagged by ``report``)::

    {"report": name, "cycle": {id, as_at, ruleset {name, version, sha256},
     model {name, version, sha256}}, ...report fields..., "rows": [row, ...]}

``rows`` is the report's table, one row model per line; :func:`to_csv` writes
it (the row model's fields as columns, the cycle's provenance in trailing
columns) for the CSV export. Its JSON is ``model_dump(exclude_unset=True)``:
a column a report fills only in some cases is left out when unset. The
ruleset and the model are read from the cycle row itself, so a report on an
old cycle uses the rules that cycle was computed with.

A family's *status* in a report is the last status in ``status_events`` before
the next cycle was run (for the latest cycle: the current status), so an old
cycle's report shows the statuses of its period. Families in the cycle with no
status are ``not_eligible`` when the cycle found them not eligible, else
``no_status``.

Must never: write to the database, or read a sealed blob or anything that
names a person (reports carry pseudonymous family and person ids only).
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import functools
import inspect
import io
import json
import re
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar, cast, get_args

from pydantic import BaseModel
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from protocols import (
    BreakdownRow,
    BreakdownsReport,
    CostAvoidanceParameters,
    CostAvoidanceReport,
    CostAvoidanceRow,
    CoverageReport,
    CoverageRow,
    CuspCounts,
    CuspParameters,
    CuspReport,
    CuspRow,
    CuspThresholds,
    DistanceTravelledReport,
    DistanceTravelledRow,
    ForecastParameters,
    ForecastReport,
    ForecastRow,
    ForecastWindow,
    LongestReport,
    LongestRow,
    NeedsReport,
    NeedsRow,
    OutcomeByAgency,
    OutcomesReport,
    OutcomesRow,
    PreviouslyWorkedReport,
    PreviouslyWorkedRow,
    ProgressDataReport,
    ProgressDataRow,
    Report,
    ReportCardReport,
    ReportCardRow,
    ReportCycle,
    ScoresReport,
    ScoresRow,
    SocialCareCounts,
    SocialCareIndicators,
    SocialCareReport,
    SocialCareRow,
    StatusCounts,
    StatusReport,
    StatusRow,
    StepsReport,
    StepsRow,
    StepThresholds,
    WorkListReport,
    WorkListRow,
    gc_paused,
)

from .. import _store as store
from .._errors import ConflictError, NotFound, StorageError
from . import _store as pstore
from . import _store_reports as rstore
from ._assessment import STATUSES
from ._claims import Snap, _snaps, evaluate_outcomes
from ._programme import SnapshotDetail, parse_detail
from ._riskmodel import RiskModel
from ._ruleset import Ruleset

__all__ = [
    "AVERAGE_FAMILY_GBP",
    "BREAKDOWNS",
    "PARAMETERS",
    "MULTIPLE_NEEDS_GBP",
    "REPORTS",
    "age_band",
    "breakdowns",
    "claim_window_of",
    "cohort_of",
    "columns",
    "cost_avoidance",
    "distance_travelled",
    "forecast",
    "on_the_cusp",
    "progress_data",
    "report_card",
    "row_model",
    "data_coverage",
    "longest",
    "needs_breakdown",
    "outcomes_achieved",
    "previously_worked",
    "run_report",
    "score_distribution",
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
    provenance: ReportCycle


@dataclass(frozen=True)
class _Snapshot:
    family_id: str
    cycle_id: int
    district: str
    eligible: bool
    n_problems: int
    score: int
    rank: int
    percentile: float
    previous_score: int | None
    step: str | None
    raw_detail: str

    @functools.cached_property
    def detail(self) -> SnapshotDetail:
        """The snapshot's detail, parsed on first use: most reports look at the
        eligible families' only, and parsing was most of a report's time."""
        return parse_detail(SnapshotDetail, self.raw_detail, self.family_id, self.cycle_id)

    @property
    def problems(self) -> list[str]:
        return [p for p, v in self.detail.problems.items() if v.met]

    def top_reasons(self, n: int = _TOP_REASONS) -> list[str]:
        return [f"{r.code}:{r.points}" for r in self.detail.reasons[:n]]


# --- reading ------------------------------------------------------------------------------


def _cycle(conn: Connection, cycle_id: int | None) -> _Cycle:
    row = pstore.cycle_row(conn, cycle_id)
    if row is None:
        if cycle_id is None:
            raise ConflictError("no assessment has been run: nothing to report")
        raise NotFound(f"no assessment cycle {cycle_id}")
    cutoff = rstore.next_cycle_cutoff(conn, int(row.id))
    return _Cycle(
        id=int(row.id),
        as_at=row.as_at.isoformat(),
        cutoff=cutoff,
        ruleset=Ruleset.model_validate_json(row.ruleset),
        model=RiskModel.model_validate_json(row.model),
        provenance=ReportCycle.model_validate(
            {"id": int(row.id), "as_at": row.as_at.isoformat(), **pstore.cycle_versions(row)}
        ),
    )


def _each_snapshot(
    conn: Connection, cycle_id: int, *, eligible_only: bool = False
) -> Iterator[_Snapshot]:
    """The cycle's snapshots one at a time: a report that reads each once lets each go
    (with its parsed detail) before the next, which keeps the garbage collector's work
    small (on 3,000 families it was half of a report's time with them all kept)."""
    for r in rstore.report_snapshots(conn, cycle_id, eligible_only=eligible_only):
        yield _Snapshot(
            family_id=str(r.family_id),
            cycle_id=cycle_id,
            district=r.district or UNKNOWN_DISTRICT,
            eligible=bool(r.eligible),
            n_problems=int(r.n_problems),
            score=int(r.score),
            rank=int(r.rank),
            percentile=float(r.percentile),
            previous_score=None if r.previous_score is None else int(r.previous_score),
            step=r.step,
            raw_detail=r.detail,
        )


def _snapshots(conn: Connection, cycle_id: int, *, eligible_only: bool = False) -> list[_Snapshot]:
    return list(_each_snapshot(conn, cycle_id, eligible_only=eligible_only))


def _history(conn: Connection, cutoff: int | None) -> dict[str, list[tuple[int, str]]]:
    """Family id -> its status events (time, new status), oldest first, before ``cutoff``."""
    out: dict[str, list[tuple[int, str]]] = {}
    for fid, at, to in rstore.status_history(conn, cutoff):
        out.setdefault(fid, []).append((at, to))
    return out


def _status(snap: _Snapshot, history: Mapping[str, list[tuple[int, str]]]) -> str:
    events = history.get(snap.family_id)
    if events:
        return events[-1][1]
    return NO_STATUS if snap.eligible else NOT_ELIGIBLE


# Reports whose inputs are only one stored cycle (its snapshots, ruleset and
# model, written once by the assessment and never changed) are kept per engine
# and cycle: computed once, however often a page asks. Weak keys: a disposed
# engine's entries go with it.
_PER_CYCLE: weakref.WeakKeyDictionary[Engine, dict[tuple[str, int], BaseModel]] = (
    weakref.WeakKeyDictionary()
)
_PER_CYCLE_LOCK = threading.Lock()
_PER_CYCLE_KEEP = 8  # reports x cycles kept per engine


_R = TypeVar("_R", bound=BaseModel)


def _read(
    engine: Engine,
    cycle_id: int | None,
    what: str,
    fn: Callable[[Connection, _Cycle], _R],
    *,
    cycle_only: bool = False,
) -> _R:
    """``fn`` over one cycle (the latest by default); with ``cycle_only`` (``fn``
    reads nothing but that cycle's snapshots and versions) the answer is kept.

    The cyclic garbage collector is paused meanwhile (:func:`protocols.gc_paused`):
    a report keeps thousands of parsed snapshot details, which it would otherwise
    rescan over and over.
    """
    try:
        with gc_paused(), engine.connect() as conn:
            cyc = _cycle(conn, cycle_id)
            if not cycle_only:
                return fn(conn, cyc)
            with _PER_CYCLE_LOCK:
                kept = _PER_CYCLE.setdefault(engine, {})
                found = kept.get((what, cyc.id))
            if found is None:
                found = fn(conn, cyc)
                with _PER_CYCLE_LOCK:
                    if len(kept) >= _PER_CYCLE_KEEP:
                        kept.pop(next(iter(kept)))
                    kept[(what, cyc.id)] = found
            # frozen models, but their lists are not: a caller's change must not reach the kept one
            return cast(_R, copy.deepcopy(found))
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the {what} report: {exc}") from exc


def _problem_title(ruleset: Ruleset, problem: str) -> str:
    return ruleset.problems[problem].title if problem in ruleset.problems else problem


def _check_problem(ruleset: Ruleset, problem: str) -> None:
    if problem not in ruleset.problems:
        raise NotFound(
            f"ruleset {ruleset.name} {ruleset.version} has no problem {problem!r}; "
            f"problems: {', '.join(ruleset.problems)}"
        )


# --- counts by status and district -----------------------------------------------------------


def status_counts(engine: Engine, cycle_id: int | None = None) -> StatusReport:
    """Families of the cycle by status, in total and by postcode district."""

    def build(conn: Connection, cyc: _Cycle) -> StatusReport:
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
                StatusRow(
                    district=district,
                    **{k: counts[k] for k in STATUS_COLUMNS},
                    total=sum(counts.values()),
                )
            )
        in_cycle = {s.family_id for s in snaps}
        return StatusReport(
            report="status",
            cycle=cyc.provenance,
            totals=StatusCounts(**{k: totals[k] for k in STATUS_COLUMNS}, total=len(snaps)),
            # families with a status whose household is not in this cycle (moved, dissolved)
            not_in_cycle=sum(1 for f in history if f not in in_cycle),
            rows=rows,
        )

    return _read(engine, cycle_id, "status", build)


# --- needs -------------------------------------------------------------------------------


def needs_breakdown(engine: Engine, cycle_id: int | None = None) -> NeedsReport:
    """Eligible families per problem, and per combination of problems met."""

    def build(conn: Connection, cyc: _Cycle) -> NeedsReport:
        eligible = _snapshots(conn, cyc.id, eligible_only=True)
        per_problem: Counter[str] = Counter()
        combos: Counter[tuple[str, ...]] = Counter()
        order = list(cyc.ruleset.problems)
        for s in eligible:
            met = tuple(p for p in order if p in s.problems)
            per_problem.update(met)
            combos[met] += 1
        rows = [
            NeedsRow(
                kind="problem",
                problems=p,
                n_problems=1,
                families=per_problem[p],
                title=_problem_title(cyc.ruleset, p),
            )
            for p in order
        ]
        for met, n in sorted(combos.items(), key=lambda x: (-x[1], len(x[0]), x[0])):
            rows.append(
                NeedsRow(
                    kind="combination",
                    problems="+".join(met),
                    n_problems=len(met),
                    families=n,
                    title="",
                )
            )
        by_count = Counter(len(met) for met in combos.elements())
        return NeedsReport(
            report="needs",
            cycle=cyc.provenance,
            eligible=len(eligible),
            by_number_of_problems={str(k): by_count[k] for k in sorted(by_count)},
            rows=rows,
        )

    return _read(engine, cycle_id, "needs", build, cycle_only=True)


def data_coverage(engine: Engine, cycle_id: int | None = None) -> CoverageReport:
    """ "No data or no problem?": per problem, families with it, with data but not it, no data.

    Over every family in the cycle. *No data* means no member has a record in
    any of the problem's source extract types; ``agencies`` counts, per agency,
    the families it holds such records for.
    """

    def build(conn: Connection, cyc: _Cycle) -> CoverageReport:
        snaps = _snapshots(conn, cyc.id)
        rows = []
        for p in cyc.ruleset.problems:
            met = data_only = no_data = 0
            agencies: Counter[str] = Counter()
            for s in snaps:
                info = s.detail.problems.get(p)
                if info is None or p in s.detail.no_data:
                    no_data += 1
                    continue
                agencies.update(info.data_from)
                if info.met:
                    met += 1
                else:
                    data_only += 1
            rows.append(
                CoverageRow(
                    problem=p,
                    families=len(snaps),
                    with_problem=met,
                    data_no_problem=data_only,
                    no_data=no_data,
                    no_data_share=round(no_data / len(snaps), 4) if snaps else 0.0,
                    agencies=dict(sorted(agencies.items())),
                    title=_problem_title(cyc.ruleset, p),
                )
            )
        return CoverageReport(
            report="coverage", cycle=cyc.provenance, families=len(snaps), rows=rows
        )

    return _read(engine, cycle_id, "coverage", build)


def social_care(
    engine: Engine,
    cycle_id: int | None = None,
    *,
    child_protection: str = "child_protection",
    child_in_need: str = "child_in_need",
) -> SocialCareReport:
    """Eligible families open to social care: on a protection plan, or child in need only.

    A family with both indicators counts under child protection (the statutory
    level above child in need); ``both`` says how many of those also have one.
    """

    def build(conn: Connection, cyc: _Cycle) -> SocialCareReport:
        for iid in (child_protection, child_in_need):
            if iid not in cyc.ruleset.indicators:
                raise NotFound(
                    f"ruleset {cyc.ruleset.name} {cyc.ruleset.version} has no indicator {iid!r}"
                )
        eligible = _snapshots(conn, cyc.id, eligible_only=True)
        by_district: dict[str, Counter[str]] = {}
        for s in eligible:
            ind = set(s.detail.indicators)
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
            rows.append(
                SocialCareRow(district=district, **{k: by_district[district][k] for k in keys})
            )
        return SocialCareReport(
            report="social_care",
            cycle=cyc.provenance,
            indicators=SocialCareIndicators(
                child_protection=child_protection, child_in_need=child_in_need
            ),
            totals=SocialCareCounts(**{k: totals[k] for k in keys}),
            rows=rows,
        )

    return _read(engine, cycle_id, "social care", build)


# --- outcomes and claims ---------------------------------------------------------------------


def outcomes_achieved(engine: Engine, cycle_id: int | None = None) -> OutcomesReport:
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

    def build(conn: Connection, cyc: _Cycle) -> OutcomesReport:
        claimed: Counter[str] = Counter()
        results: Counter[str] = Counter()
        for claim in rstore.claims_up_to(conn, cyc.id, kind="result", with_evidence=True):
            results[str(claim.result)] += 1
            for p, v in json.loads(claim.evidence or "{}").get("problems", {}).items():
                if v.get("met"):
                    claimed[p] += 1
        attached = rstore.attached_up_to(conn, cyc.id)
        snaps = _snaps(conn, [r.family_id for r in attached])
        had: Counter[str] = Counter()
        met: Counter[str] = Counter()
        by_agency_had: Counter[tuple[str, str]] = Counter()
        by_agency_met: Counter[tuple[str, str]] = Counter()
        employment = 0
        for r in attached:
            history = [x for x in snaps.get(r.family_id, []) if x.cycle_id <= cyc.id]
            base = [x for x in history if x.cycle_id == r.baseline_cycle]
            if not base or r.attached_on is None:  # attaching sets both
                continue
            after = [x for x in history if x.cycle_id > r.baseline_cycle]
            ev = evaluate_outcomes(cyc.ruleset, base[0], after, r.attached_on)
            for p, v in ev.problems.items():
                had[p] += 1
                met[p] += v.met
                for agency in v.source_agencies:
                    by_agency_had[(p, agency)] += 1
                    by_agency_met[(p, agency)] += v.met
            employment += ev.employment is not None and ev.employment.met
        rows = [
            OutcomesRow(
                problem=p,
                attached_with_problem=had[p],
                outcome_met=met[p],
                rate=round(met[p] / had[p], 4) if had[p] else None,
                result_claims_showing_outcome=claimed[p],
                title=(
                    cyc.ruleset.outcomes[p].title
                    if p in cyc.ruleset.outcomes
                    else "(no outcome rule)"
                ),
            )
            for p in cyc.ruleset.problems
        ]
        rows.sort(key=lambda r: (r.rate is None, -(r.rate or 0.0), r.problem))
        rates = [r.rate for r in rows if r.rate is not None]
        top, bottom = (max(rates), min(rates)) if rates else (None, None)
        return OutcomesReport(
            report="outcomes",
            cycle=cyc.provenance,
            attached_families=len(attached),
            employment_met=employment,
            by_agency=[
                OutcomeByAgency(
                    problem=p,
                    agency_id=a,
                    attached_with_problem=n,
                    outcome_met=by_agency_met[(p, a)],
                    rate=round(by_agency_met[(p, a)] / n, 4),
                )
                for (p, a), n in sorted(by_agency_had.items())
            ],
            result_claims={k: results[k] for k in sorted(results)},
            most=[r.problem for r in rows if rates and r.rate == top],
            least=[r.problem for r in rows if top != bottom and r.rate == bottom],
            rows=rows,
        )

    return _read(engine, cycle_id, "outcomes", build)


def cost_avoidance(
    engine: Engine,
    cycle_id: int | None = None,
    *,
    average_gbp: int = AVERAGE_FAMILY_GBP,
    multiple_needs_gbp: int = MULTIPLE_NEEDS_GBP,
    multiple_needs_from: int | None = None,
    years: float = 1.0,
    intervention_gbp: int = 0,
) -> CostAvoidanceReport:
    """Public spend avoided by families turned around (a gross, upper-bound estimate).

    The seeds' method (Cambridgeshire's estimate): a family with multiple needs
    costs about ``multiple_needs_gbp`` a year, an average family about
    ``average_gbp``; a family turned around (a result claim made up to the
    cycle) saves at most the difference for each of ``years`` years. A family
    counts as one with multiple needs when its claim's evidence shows at least
    ``multiple_needs_from`` problems (default: the ruleset's eligibility
    minimum); a result for a family with fewer is not counted. The net figure
    takes off ``intervention_gbp`` per family counted. No counterfactual, no
    discounting.
    """
    for name, value in (
        ("average_gbp", average_gbp),
        ("multiple_needs_gbp", multiple_needs_gbp),
        ("intervention_gbp", intervention_gbp),
    ):
        if value < 0:
            raise ConflictError(f"{name} {value}: expected 0 or more")
    if multiple_needs_gbp < average_gbp:
        raise ConflictError(
            f"multiple_needs_gbp {multiple_needs_gbp} is below average_gbp {average_gbp}: "
            "a family with multiple needs is expected to cost more"
        )
    if not 0 < years <= 10:
        raise ConflictError(f"years {years}: expected more than 0 and at most 10")

    def build(conn: Connection, cyc: _Cycle) -> CostAvoidanceReport:
        least = multiple_needs_from or cyc.ruleset.eligibility.min_problems
        counted: Counter[str] = Counter()
        not_counted = 0
        income = 0
        for claim in rstore.claims_up_to(conn, cyc.id, with_evidence=True):
            income += claim.amount_gbp
            if claim.kind != "result":
                continue
            result = claim.result
            if len(json.loads(claim.evidence or "{}").get("problems", {})) >= least:
                counted[str(result)] += 1
            else:
                not_counted += 1
        saving = multiple_needs_gbp - average_gbp
        rows = [
            CostAvoidanceRow(
                result=result,
                families=counted[result],
                gbp_per_family_year=saving,
                years=years,
                gross_gbp=round(counted[result] * saving * years),
                intervention_gbp=counted[result] * intervention_gbp,
                net_gbp=round(counted[result] * (saving * years - intervention_gbp)),
            )
            for result in ("progress", "employment")
        ]
        families = sum(counted.values())
        return CostAvoidanceReport(
            report="cost_avoidance",
            cycle=cyc.provenance,
            assumption=(
                f"each family turned around (a result claim) with {least}+ problems saves at "
                f"most GBP {saving:,} a year (GBP {multiple_needs_gbp:,} for a family with "
                f"multiple needs less GBP {average_gbp:,} for an average family) for "
                f"{years:g} year(s), less GBP {intervention_gbp:,} of intervention per family; "
                "an upper bound: no counterfactual, no discounting"
            ),
            parameters=CostAvoidanceParameters(
                average_gbp=average_gbp,
                multiple_needs_gbp=multiple_needs_gbp,
                multiple_needs_from=least,
                years=years,
                intervention_gbp=intervention_gbp,
                saving_per_family_year_gbp=saving,
            ),
            families=families,
            not_counted=not_counted,
            gross_gbp=sum(r.gross_gbp for r in rows),
            total_gbp=sum(r.net_gbp for r in rows),
            claimed_income_gbp=income,
            rows=rows,
        )

    return _read(engine, cycle_id, "cost avoidance", build)


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
        r.points for r in snap.detail.reasons if r.code != "BREADTH" and refs & set(r.because)
    )


def score_distribution(engine: Engine, cycle_id: int | None = None) -> ScoresReport:
    """Eligible families per score, lowest first, against the unlock threshold (one
    grouped query: what a chart of the distribution needs, without the work list)."""

    def build(conn: Connection, cyc: _Cycle) -> ScoresReport:
        unlock = cyc.model.thresholds.unlock
        counted = rstore.score_counts(conn, cyc.id)
        rows = [
            ScoresRow(score=int(score), families=int(n), at_or_above_unlock=score >= unlock)
            for score, n in counted
        ]
        districts = rstore.district_counts(conn, cyc.id)
        return ScoresReport(
            report="scores",
            cycle=cyc.provenance,
            by_district={str(d or UNKNOWN_DISTRICT): int(n) for d, n in districts},
            eligible=sum(r.families for r in rows),
            unlock_threshold=unlock,
            at_or_above_unlock=sum(r.families for r in rows if r.at_or_above_unlock),
            rows=rows,
        )

    return _read(engine, cycle_id, "scores", build, cycle_only=True)


def work_list(
    engine: Engine,
    cycle_id: int | None = None,
    *,
    problem: str | None = None,
    limit: int | None = None,
) -> WorkListReport:
    """Eligible families to work with first: highest score first, with reasons and status.

    With ``problem``, only families meeting it, sorted by the points of their
    reasons touching it (``problem_points``: factors and combinations on its
    indicators, not breadth), then by score: e.g. ``domestic_abuse`` lists the
    biggest domestic-abuse concerns first.
    """

    def build(conn: Connection, cyc: _Cycle) -> WorkListReport:
        if problem is not None:
            _check_problem(cyc.ruleset, problem)
        related = set() if problem is None else _related_indicators(cyc.ruleset, problem)
        history = _history(conn, cyc.cutoff)
        # a row as each snapshot streams past, so its parsed detail goes with it; the
        # positions are set once the list is sorted
        keyed: list[tuple[int, WorkListRow]] = []
        for s in _each_snapshot(conn, cyc.id, eligible_only=True):
            problems = s.problems
            if problem is not None and problem not in problems:
                continue
            points = 0 if problem is None else _problem_points(s, problem, related)
            row = WorkListRow(
                position=0,
                family_id=s.family_id,
                score=s.score,
                rank=s.rank,
                percentile=s.percentile,
                # a column of the one-problem list only: left unset (out of the JSON) otherwise
                **({} if problem is None else {"problem_points": points}),
                n_problems=s.n_problems,
                problems=problems,
                top_reasons=s.top_reasons(),
                step=s.step or "",
                status=_status(s, history),
                district=s.district,
            )
            keyed.append((points, row))
        keyed.sort(key=lambda x: (-x[0], -x[1].score, x[1].family_id))
        chosen = len(keyed)
        if limit is not None:
            keyed = keyed[:limit]
        rows = [
            row.model_copy(update={"position": position})
            for position, (_points, row) in enumerate(keyed, start=1)
        ]
        return WorkListReport(
            report="work_list",
            cycle=cyc.provenance,
            problem=problem,
            eligible=chosen,
            rows=rows,
        )

    return _read(engine, cycle_id, "work list", build)


def longest(
    engine: Engine, cycle_id: int | None = None, *, limit: int | None = None
) -> LongestReport:
    """Eligible families likely to take longest: highest sum of domain scores, most problems.

    ``domain_total`` sums the family's 1 (none) .. 5 (critical) domain scores
    over every problem of the ruleset; ties go to more problems, then the score.
    """

    def build(conn: Connection, cyc: _Cycle) -> LongestReport:
        history = _history(conn, cyc.cutoff)
        # a row as each snapshot streams past, so its parsed detail goes with it; the
        # positions are set once the list is sorted
        keyed: list[LongestRow] = []
        for s in _each_snapshot(conn, cyc.id):
            if s.eligible:
                domains = dict(s.detail.domains)
                keyed.append(
                    LongestRow(
                        position=0,
                        family_id=s.family_id,
                        domain_total=sum(domains.values()),
                        n_problems=s.n_problems,
                        domains={p: d for p, d in sorted(domains.items()) if d > 1},
                        score=s.score,
                        status=_status(s, history),
                        district=s.district,
                    )
                )
        keyed.sort(key=lambda r: (-r.domain_total, -r.n_problems, -r.score, r.family_id))
        if limit is not None:
            keyed = keyed[:limit]
        rows = [r.model_copy(update={"position": k}) for k, r in enumerate(keyed, start=1)]
        return LongestReport(report="longest", cycle=cyc.provenance, rows=rows)

    return _read(engine, cycle_id, "longest", build)


def previously_worked(engine: Engine, cycle_id: int | None = None) -> PreviouslyWorkedReport:
    """Eligible families whose status history reached claimed or closed before now.

    A family counts when, before the cycle's period ended, it was claimed or
    closed at least once: it is still claimed, closed, or was identified again
    after an earlier episode. ``attached_before`` says whether that earlier
    episode got as far as attachment (work with the family started).
    """

    def build(conn: Connection, cyc: _Cycle) -> PreviouslyWorkedReport:
        history = _history(conn, cyc.cutoff)
        claims: Counter[str] = Counter(
            c.family_id for c in rstore.claims_up_to(conn, cyc.id, kind="result")
        )
        rows: list[PreviouslyWorkedRow] = []
        for s in _snapshots(conn, cyc.id):
            events = history.get(s.family_id, [])
            ended = [k for k, (_at, to) in enumerate(events) if to in ("claimed", "closed")]
            if not s.eligible or not ended:
                continue
            earlier = events[: ended[-1] + 1]
            rows.append(
                PreviouslyWorkedRow(
                    family_id=s.family_id,
                    status=events[-1][1],
                    earlier_statuses=[to for _at, to in earlier],
                    last_ended=store.iso(earlier[-1][0]),
                    attached_before=any(to == "attached" for _at, to in earlier),
                    claimed_before=any(to == "claimed" for _at, to in earlier),
                    result_claims=claims[s.family_id],
                    score=s.score,
                    n_problems=s.n_problems,
                    district=s.district,
                )
            )
        rows.sort(key=lambda r: (-r.score, r.family_id))
        return PreviouslyWorkedReport(report="previously_worked", cycle=cyc.provenance, rows=rows)

    return _read(engine, cycle_id, "previously worked", build)


def steps(engine: Engine, cycle_id: int | None = None) -> StepsReport:
    """Families whose score rose (step up) or fell (step down) past the model's deltas."""

    def build(conn: Connection, cyc: _Cycle) -> StepsReport:
        history = _history(conn, cyc.cutoff)
        # a row as each snapshot streams past, so its parsed detail goes with it
        rows = [
            StepsRow(
                step=s.step,
                family_id=s.family_id,
                previous_score=s.previous_score,
                score=s.score,
                change=s.score - (s.previous_score or 0),
                eligible=s.eligible,
                top_reasons=s.top_reasons(),
                status=_status(s, history),
                district=s.district,
            )
            for s in _each_snapshot(conn, cyc.id)
            if s.step in ("up", "down")
        ]
        rows.sort(key=lambda r: (r.step != "up", -abs(r.change), r.family_id))
        t = cyc.model.thresholds
        return StepsReport(
            report="steps",
            cycle=cyc.provenance,
            thresholds=StepThresholds(step_up=t.step_up, step_down=t.step_down),
            step_up=sum(1 for r in rows if r.step == "up"),
            step_down=sum(1 for r in rows if r.step == "down"),
            rows=rows,
        )

    return _read(engine, cycle_id, "steps", build)


# --- the returns councils file ---------------------------------------------------------------

AGE_BANDS: Final = ((0, 4, "0-4"), (5, 10, "5-10"), (11, 15, "11-15"), (16, 18, "16-18"))
NO_CHILD: Final = "(no child)"
NO_LEAD: Final = "(none recorded)"
BREAKDOWNS: Final = ("area", "age_band", "lead_professional", "status")
_OPEN = ("attached", "in_progress", "pending_claim")


def cohort_of(attached_on: dt.date) -> str:
    """The cohort of a family: the quarter it was attached in (``2026-Q1``)."""
    return f"{attached_on.year}-Q{(attached_on.month - 1) // 3 + 1}"


def claim_window_of(day: dt.date) -> str:
    """The half-year claim window a date falls in (``YYYY-H1`` January-June, else ``H2``)."""
    return f"{day.year}-H{1 if day.month <= 6 else 2}"


def age_band(ages: Iterable[int | None]) -> str:
    """The band of the family's youngest member under 19, or ``(no child)``."""
    young = [a for a in ages if a is not None and a <= 18]
    if not young:
        return NO_CHILD
    youngest = min(young)
    return next(label for lo, hi, label in AGE_BANDS if lo <= youngest <= hi)


@dataclass(frozen=True)
class _Attached:
    """A family attached by the cycle: baseline, snapshots since (up to the cycle), status."""

    family_id: str
    attached_on: dt.date
    cohort: str
    status: str
    lead_professional: str
    baseline: Snap
    after: list[Snap]

    @property
    def latest(self) -> Snap:
        return self.after[-1] if self.after else self.baseline


def _attached(
    conn: Connection, cyc: _Cycle, history: Mapping[str, list[tuple[int, str]]]
) -> list[_Attached]:
    rows = rstore.attached_up_to(conn, cyc.id)
    snaps = _snaps(conn, [r.family_id for r in rows])
    out = []
    for r in rows:
        fid = str(r.family_id)
        mine = [x for x in snaps.get(fid, []) if x.cycle_id <= cyc.id]
        base = [x for x in mine if x.cycle_id == r.baseline_cycle]
        if not base or r.attached_on is None:
            continue
        events = history.get(fid)
        out.append(
            _Attached(
                family_id=fid,
                attached_on=r.attached_on,
                cohort=cohort_of(r.attached_on),
                status=events[-1][1] if events else NO_STATUS,
                lead_professional=r.lead_professional or NO_LEAD,
                baseline=base[0],
                after=[x for x in mine if x.cycle_id > r.baseline_cycle],
            )
        )
    return out


def _cohort(
    conn: Connection, cyc: _Cycle, cohort: str | None
) -> tuple[list[_Attached], dict[str, list[tuple[int, str]]]]:
    if cohort is not None and not re.fullmatch(r"[0-9]{4}-Q[1-4]", cohort):
        raise ConflictError(f"cohort {cohort!r}: expected YYYY-Qn, the quarter of attachment")
    history = _history(conn, cyc.cutoff)
    fams = [a for a in _attached(conn, cyc, history) if cohort is None or a.cohort == cohort]
    return fams, history


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _domain_mean(snap: Snap, problems: Iterable[str]) -> float:
    domains = snap.detail.domains
    scores = [int(domains.get(p, 1)) for p in problems]
    return sum(scores) / len(scores) if scores else 1.0


def progress_data(
    engine: Engine, cycle_id: int | None = None, *, cohort: str | None = None
) -> ProgressDataReport:
    """The Family Progress Data cohort return: the 13 measures at baseline and now.

    Over the families attached by the cycle (one cohort, the quarter of
    attachment, with ``cohort``): for each Family Progress Data measure of the
    ruleset, how many families it was reported for at baseline and at their
    latest snapshot up to the cycle, how many had an issue (a value above 0),
    the totals, and, for families with a value at both, how many improved
    (lower now), worsened or stayed the same. ``cleared``: a value above 0 at
    baseline and none reported now (no event in the measure's window: resolved,
    or no longer reported); ``new``: none at baseline, above 0 now. Every
    Family Progress Data measure counts something bad, so lower is better.
    """

    def build(conn: Connection, cyc: _Cycle) -> ProgressDataReport:
        fams, _history_ = _cohort(conn, cyc, cohort)
        rows = []
        for mid, m in cyc.ruleset.measures.items():
            if m.progress is None:
                continue
            c: Counter[str] = Counter()
            base_total = now_total = 0.0
            for a in fams:
                b, n = a.baseline.measures.get(mid), a.latest.measures.get(mid)
                c["baseline_reported"] += b is not None
                c["baseline_with_issue"] += b is not None and b > 0
                c["now_reported"] += n is not None
                c["now_with_issue"] += n is not None and n > 0
                base_total += b or 0.0
                now_total += n or 0.0
                if b is not None and n is not None:
                    c["improved" if n < b else "worsened" if n > b else "unchanged"] += 1
                elif b is not None and b > 0:
                    c["cleared"] += 1
                elif n is not None and n > 0:
                    c["new"] += 1
            rows.append(
                ProgressDataRow(
                    measure=mid,
                    category=m.progress,
                    title=m.title,
                    families=len(fams),
                    baseline_reported=c["baseline_reported"],
                    baseline_with_issue=c["baseline_with_issue"],
                    now_reported=c["now_reported"],
                    now_with_issue=c["now_with_issue"],
                    baseline_total=round(base_total, 2),
                    now_total=round(now_total, 2),
                    improved=c["improved"],
                    unchanged=c["unchanged"],
                    worsened=c["worsened"],
                    cleared=c["cleared"],
                    new=c["new"],
                )
            )
        return ProgressDataReport(
            report="progress_data",
            cycle=cyc.provenance,
            cohort=cohort,
            families=len(fams),
            measures=len(rows),
            rows=rows,
        )

    return _read(engine, cycle_id, "progress data", build)


def distance_travelled(
    engine: Engine, cycle_id: int | None = None, *, cohort: str | None = None
) -> DistanceTravelledReport:
    """Cohort distance travelled: each problem's 1 (none) .. 5 (critical) score, baseline and now.

    Over the families attached by the cycle (or one cohort): per problem of the
    ruleset, the mean domain score at baseline and at the latest snapshot up to
    the cycle, how many families improved (lower), stayed or worsened, and the
    distribution of scores 1..5 at each end. ``mean_baseline`` / ``mean_now``
    average each family's mean domain score.
    """

    def build(conn: Connection, cyc: _Cycle) -> DistanceTravelledReport:
        fams, _history_ = _cohort(conn, cyc, cohort)
        problems = list(cyc.ruleset.problems)
        rows = []
        for p in problems:
            base = [a.baseline.detail.domains.get(p, 1) for a in fams]
            now = [a.latest.detail.domains.get(p, 1) for a in fams]
            pairs = list(zip(base, now, strict=True))
            rows.append(
                DistanceTravelledRow(
                    problem=p,
                    families=len(fams),
                    baseline_mean=_mean(base),
                    now_mean=_mean(now),
                    change=None if not fams else round((sum(now) - sum(base)) / len(fams), 3),
                    improved=sum(1 for b, n in pairs if n < b),
                    unchanged=sum(1 for b, n in pairs if n == b),
                    worsened=sum(1 for b, n in pairs if n > b),
                    baseline_scores={str(k): base.count(k) for k in range(1, 6)},
                    now_scores={str(k): now.count(k) for k in range(1, 6)},
                    title=_problem_title(cyc.ruleset, p),
                )
            )
        return DistanceTravelledReport(
            report="distance_travelled",
            cycle=cyc.provenance,
            cohort=cohort,
            families=len(fams),
            mean_baseline=_mean([_domain_mean(a.baseline, problems) for a in fams]),
            mean_now=_mean([_domain_mean(a.latest, problems) for a in fams]),
            rows=rows,
        )

    return _read(engine, cycle_id, "distance travelled", build)


def breakdowns(
    engine: Engine, cycle_id: int | None = None, *, by: str | None = None
) -> BreakdownsReport:
    """The programme's families by area, age band, lead professional and status.

    Over the cycle's families that are eligible or have a status. ``area`` is
    the postcode district (the coarsest place the service holds); ``age_band``
    the band of the youngest member under 19 (0-4, 5-10, 11-15, 16-18);
    ``lead_professional`` the code a coordinator recorded; ``status`` as in the
    status report. Per group: families, eligible, attached by the cycle, open
    (attached, in progress, pending claim), pending claim, claimed, closed,
    mean score, result claims, and the attached families' mean change in mean
    domain score since baseline (negative is better). ``by`` gives one dimension.
    """
    if by is not None and by not in BREAKDOWNS:
        raise ConflictError(f"breakdown by {by!r}: expected one of {', '.join(BREAKDOWNS)}")

    def build(conn: Connection, cyc: _Cycle) -> BreakdownsReport:
        history = _history(conn, cyc.cutoff)
        attached = {a.family_id: a for a in _attached(conn, cyc, history)}
        leads = rstore.lead_professionals(conn)
        results = {c.family_id for c in rstore.claims_up_to(conn, cyc.id, kind="result")}
        problems = list(cyc.ruleset.problems)
        groups: dict[tuple[str, str], list[_Snapshot]] = {}
        for s in _snapshots(conn, cyc.id):
            status = _status(s, history)
            if not s.eligible and status in (NOT_ELIGIBLE, NO_STATUS):
                continue
            for dim in BREAKDOWNS if by is None else (by,):
                key = _group_key(dim, s, status, leads)
                groups.setdefault((dim, key), []).append(s)
        rows = []
        for (dim, group), snaps in sorted(
            groups.items(), key=lambda x: (BREAKDOWNS.index(x[0][0]), x[0][1])
        ):
            statuses = Counter(_status(s, history) for s in snaps)
            mine = [attached[s.family_id] for s in snaps if s.family_id in attached]
            rows.append(
                BreakdownRow(
                    dimension=dim,
                    group=group,
                    families=len(snaps),
                    eligible=sum(1 for s in snaps if s.eligible),
                    attached=len(mine),
                    open=sum(statuses[k] for k in _OPEN),
                    pending_claim=statuses["pending_claim"],
                    claimed=statuses["claimed"],
                    closed=statuses["closed"],
                    mean_score=_mean([s.score for s in snaps]),
                    result_claims=sum(1 for s in snaps if s.family_id in results),
                    mean_domain_change=_mean(
                        [
                            round(
                                _domain_mean(a.latest, problems)
                                - _domain_mean(a.baseline, problems),
                                6,
                            )
                            for a in mine
                        ]
                    ),
                )
            )
        return BreakdownsReport(
            report="breakdowns",
            cycle=cyc.provenance,
            by=by,
            dimensions=list(BREAKDOWNS if by is None else (by,)),
            rows=rows,
        )

    return _read(engine, cycle_id, "breakdowns", build)


def _group_key(dim: str, s: _Snapshot, status: str, leads: Mapping[str, str]) -> str:
    """A family's group in one breakdown dimension (only ``age_band`` parses the
    snapshot's detail, so the others never do)."""
    if dim == "area":
        return s.district
    if dim == "age_band":
        return age_band(m.age for m in s.detail.members)
    if dim == "lead_professional":
        return leads.get(s.family_id, NO_LEAD)
    return status


def report_card(engine: Engine, cycle_id: int | None = None) -> ReportCardReport:
    """A report card per cohort (quarter of attachment), one row each.

    Families attached, by status at the cycle; attachment and result claims
    made up to the cycle (progress, employment) and the income claimed; the
    share with a result (claimed or pending claim); the cohort's mean domain
    score at baseline and now; and, over the Family Progress Data measures
    with an issue at baseline, the share improved or cleared.
    """

    def build(conn: Connection, cyc: _Cycle) -> ReportCardReport:
        history = _history(conn, cyc.cutoff)
        fams = _attached(conn, cyc, history)
        claims: dict[str, list[tuple[str, str | None, int]]] = {}
        for c in rstore.claims_up_to(conn, cyc.id):
            claims.setdefault(c.family_id, []).append((c.kind, c.result, c.amount_gbp))
        problems = list(cyc.ruleset.problems)
        fpd = [mid for mid, m in cyc.ruleset.measures.items() if m.progress is not None]
        by_cohort: dict[str, list[_Attached]] = {}
        for a in fams:
            by_cohort.setdefault(a.cohort, []).append(a)
        rows = []
        for name in sorted(by_cohort):
            members = by_cohort[name]
            statuses = Counter(a.status for a in members)
            made = [x for a in members for x in claims.get(a.family_id, [])]
            results = Counter(str(r) for k, r, _amt in made if k == "result")
            with_result = sum(
                1
                for a in members
                if a.status == "pending_claim"
                or any(k == "result" for k, _r, _amt in claims.get(a.family_id, []))
            )
            issues = improved = 0
            for a in members:
                for mid in fpd:
                    b, n = a.baseline.measures.get(mid), a.latest.measures.get(mid)
                    if b is not None and b > 0:
                        issues += 1
                        improved += n is None or n < b
            rows.append(
                ReportCardRow(
                    cohort=name,
                    families=len(members),
                    attached=statuses["attached"],
                    in_progress=statuses["in_progress"],
                    pending_claim=statuses["pending_claim"],
                    claimed=statuses["claimed"],
                    closed=statuses["closed"],
                    attachment_claims=sum(1 for k, _r, _amt in made if k == "attachment"),
                    result_claims=sum(results.values()),
                    progress=results["progress"],
                    employment=results["employment"],
                    claimed_income_gbp=sum(amt for _k, _r, amt in made),
                    with_result=with_result,
                    result_rate=round(with_result / len(members), 4),
                    domain_mean_baseline=_mean(
                        [_domain_mean(a.baseline, problems) for a in members]
                    ),
                    domain_mean_now=_mean([_domain_mean(a.latest, problems) for a in members]),
                    fpd_issues_at_baseline=issues,
                    fpd_improved_or_cleared=improved,
                    fpd_improved_share=round(improved / issues, 4) if issues else None,
                )
            )
        return ReportCardReport(
            report="report_card",
            cycle=cyc.provenance,
            cohorts=len(rows),
            families=len(fams),
            rows=rows,
        )

    return _read(engine, cycle_id, "report card", build)


def _cadence(conn: Connection, cyc: _Cycle) -> int:
    """The median number of days between the cycles up to this one (91 with one cycle)."""
    dates = sorted(rstore.cycle_dates(conn, cyc.id))
    gaps = sorted((b - a).days for a, b in zip(dates, dates[1:], strict=False) if (b - a).days > 0)
    return gaps[len(gaps) // 2] if gaps else 91


def forecast(
    engine: Engine,
    cycle_id: int | None = None,
    *,
    cadence_days: int | None = None,
    horizon_cycles: int = 8,
) -> ForecastReport:
    """Results and claim-window forecast, if every family's latest values hold.

    For each family attached by the cycle without a results claim, the outcome
    plan is evaluated (``_claims.evaluate_outcomes``) on its snapshots so far
    and then on projected ones: the latest snapshot repeated every
    ``cadence_days`` (default: the median gap between the cycles so far) for
    up to ``horizon_cycles`` cycles. The first projected cycle with a result
    gives the forecast date and claim window; a family with no result by the
    horizon is ``not_on_track`` with the problems still unmet. Attachment fees
    not yet claimed fall in the window of the cycle's date. It is a projection
    of "nothing changes", not a prediction: values that move change it.
    """
    if cadence_days is not None and not 1 <= cadence_days <= 366:
        raise ConflictError(f"cadence_days {cadence_days}: expected 1 to 366")
    if not 1 <= horizon_cycles <= 24:
        raise ConflictError(f"horizon_cycles {horizon_cycles}: expected 1 to 24")

    def build(conn: Connection, cyc: _Cycle) -> ForecastReport:
        history = _history(conn, cyc.cutoff)
        fams = _attached(conn, cyc, history)
        cadence = cadence_days or _cadence(conn, cyc)
        made = {(c.family_id, c.kind) for c in rstore.claims_up_to(conn, cyc.id)}
        as_at = dt.date.fromisoformat(cyc.as_at)
        payments = cyc.ruleset.payments
        windows: dict[str, Counter[str]] = {}
        rows = []
        for a in fams:
            if a.status not in _OPEN:
                continue
            if (a.family_id, "attachment") not in made:
                windows.setdefault(claim_window_of(as_at), Counter())["attachment_claims"] += 1
            if (a.family_id, "result") in made:
                continue
            projected = list(a.after)
            ev = evaluate_outcomes(cyc.ruleset, a.baseline, projected, a.attached_on)
            ahead = 0
            while ev.result is None and ahead < horizon_cycles:
                ahead += 1
                last = a.latest
                projected.append(
                    Snap(
                        cycle_id=cyc.id + ahead,
                        as_at=as_at + dt.timedelta(days=cadence * ahead),
                        measures=last.measures,
                        problems=last.problems,
                        detail=last.detail,
                    )
                )
                ev = evaluate_outcomes(cyc.ruleset, a.baseline, projected, a.attached_on)
            when = as_at + dt.timedelta(days=cadence * ahead)
            on_track = ev.result is not None
            if on_track:
                tally = windows.setdefault(claim_window_of(when), Counter())
                tally["result_claims"] += 1
                tally[str(ev.result)] += 1
            rows.append(
                ForecastRow(
                    family_id=a.family_id,
                    cohort=a.cohort,
                    status=a.status,
                    forecast=ev.result or "not_on_track",
                    forecast_as_at=when.isoformat() if on_track else None,
                    claim_window=claim_window_of(when) if on_track else None,
                    cycles_ahead=ahead if on_track else None,
                    unmet=sorted(p for p, v in ev.problems.items() if not v.met),
                    lead_professional=a.lead_professional,
                )
            )
        rows.sort(key=lambda r: (r.forecast_as_at is None, r.forecast_as_at or "", r.family_id))
        by_window = [
            ForecastWindow(
                window_id=w,
                attachment_claims=due["attachment_claims"],
                result_claims=due["result_claims"],
                progress=due["progress"],
                employment=due["employment"],
                amount_gbp=due["attachment_claims"] * payments.attachment_gbp
                + due["result_claims"] * payments.result_gbp,
            )
            for w, due in sorted(windows.items())
        ]
        return ForecastReport(
            report="forecast",
            cycle=cyc.provenance,
            parameters=ForecastParameters(cadence_days=cadence, horizon_cycles=horizon_cycles),
            assumption=(
                f"each family's latest values hold at a review every {cadence} days for "
                f"{horizon_cycles} cycles; claim windows are half-years (H1 January-June)"
            ),
            by_window=by_window,
            on_track=sum(1 for r in rows if r.forecast != "not_on_track"),
            not_on_track=sum(1 for r in rows if r.forecast == "not_on_track"),
            rows=rows,
        )

    return _read(engine, cycle_id, "forecast", build)


def _near(op: str, threshold: float, value: float, margin: float) -> bool:
    """Whether ``value`` misses ``op threshold`` by no more than ``margin``."""
    if op == ">=":
        return threshold - margin <= value < threshold
    if op == ">":
        return threshold - margin < value <= threshold
    if op == "<":
        return threshold <= value <= threshold + margin
    if op == "<=":
        return threshold < value <= threshold + margin
    return False


def on_the_cusp(
    engine: Engine,
    cycle_id: int | None = None,
    *,
    unlock_margin: int = 5,
    margin_pct: float = 5.0,
) -> CuspReport:
    """Families just below a threshold: unlock, eligibility, or an indicator's.

    ``unlock``: scoring within ``unlock_margin`` points below the unlock
    threshold. ``eligibility``: one problem short of the ruleset's minimum.
    ``indicator``: a measure within ``margin_pct`` percent of an indicator's
    threshold without meeting it (e.g. lowest attendance 90-94.5% against
    persistent absence below 90%). Measures are per family (e.g. the lowest
    attendance of any child), so a row names the family, not the child.
    """
    if not 0 <= unlock_margin <= 100:
        raise ConflictError(f"unlock_margin {unlock_margin}: expected 0 to 100")
    if not 0 < margin_pct <= 50:
        raise ConflictError(f"margin_pct {margin_pct}: expected more than 0 and at most 50")

    def build(conn: Connection, cyc: _Cycle) -> CuspReport:
        history = _history(conn, cyc.cutoff)
        unlock = cyc.model.thresholds.unlock
        least = cyc.ruleset.eligibility.min_problems
        simple = [
            (iid, ind.measure, float(ind.threshold), str(ind.op))
            for iid, ind in cyc.ruleset.indicators.items()
            if ind.measure is not None and ind.threshold is not None and ind.op is not None
        ]
        rows: list[CuspRow] = []
        for s in _each_snapshot(conn, cyc.id):
            found: list[tuple[str, str, float, float]] = []
            if unlock - unlock_margin <= s.score < unlock:
                found.append(("unlock", "unlock threshold", s.score, unlock))
            if not s.eligible and s.n_problems == least - 1:
                found.append(("eligibility", "problems", s.n_problems, least))
            met = set(s.detail.indicators)
            measures = s.detail.measures
            for iid, measure, threshold, op in simple:
                value = measures.get(measure)
                if iid in met or value is None:
                    continue
                margin = abs(threshold) * margin_pct / 100
                if margin and _near(op, threshold, float(value), margin):
                    found.append(("indicator", iid, float(value), threshold))
            if not found:
                continue
            status = _status(s, history)
            rows.extend(
                CuspRow(
                    family_id=s.family_id,
                    score=s.score,
                    n_problems=s.n_problems,
                    kind=kind,
                    what=what,
                    value=value,
                    threshold=threshold,
                    gap=round(abs(float(threshold) - float(value)), 4),
                    status=status,
                    district=s.district,
                )
                for kind, what, value, threshold in found
            )
        order = {"unlock": 0, "eligibility": 1, "indicator": 2}
        rows.sort(key=lambda r: (order[r.kind], r.gap, -r.score, r.family_id, r.what))
        by_kind: Counter[str] = Counter(r.kind for r in rows)
        return CuspReport(
            report="cusp",
            cycle=cyc.provenance,
            parameters=CuspParameters(unlock_margin=unlock_margin, margin_pct=margin_pct),
            thresholds=CuspThresholds(unlock=unlock, min_problems=least),
            families=len({r.family_id for r in rows}),
            by_kind=CuspCounts(**{k: by_kind[k] for k in order}),
            rows=rows,
        )

    return _read(engine, cycle_id, "on the cusp", build)


REPORTS: Final[dict[str, Callable[..., Report]]] = {
    "status": status_counts,
    "needs": needs_breakdown,
    "coverage": data_coverage,
    "social-care": social_care,
    "outcomes": outcomes_achieved,
    "work-list": work_list,
    "scores": score_distribution,
    "longest": longest,
    "previously-worked": previously_worked,
    "steps": steps,
    "cost-avoidance": cost_avoidance,
    "progress-data": progress_data,
    "distance-travelled": distance_travelled,
    "breakdowns": breakdowns,
    "report-card": report_card,
    "forecast": forecast,
    "cusp": on_the_cusp,
}


# Every keyword parameter some report takes (the API and CLI pass these through).
PARAMETERS: Final = tuple(
    sorted(
        {
            p.name
            for fn in REPORTS.values()
            for p in inspect.signature(fn).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        }
    )
)


def run_report(engine: Engine, name: str, cycle_id: int | None = None, **params: object) -> Report:
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


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ";".join(f"{k}:{_cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ";".join(_cell(v) for v in value)
    return str(value)


def row_model(report: Report) -> type[BaseModel]:
    """The model of one row of ``report`` (its fields are the report's columns)."""
    row: type[BaseModel] = get_args(type(report).model_fields["rows"].annotation)[0]
    return row


def columns(report: Report) -> list[str]:
    """The report's columns: its row model's fields, in order.

    A field with a default (a column the report fills in some cases only, such
    as the work list's ``problem_points``) is a column when some row has it set.
    """
    return [
        name
        for name, field in row_model(report).model_fields.items()
        if field.is_required() or any(name in r.model_fields_set for r in report.rows)
    ]


def to_csv(report: Report) -> str:
    """The report's rows as CSV, the cycle's id, date, ruleset and model in trailing columns.

    The columns are :func:`columns` (a report with no rows still has its
    header). Lists are joined with ``;``, mappings written ``key:value;...``.
    """
    cyc = report.cycle
    provenance = (
        cyc.id,
        cyc.as_at,
        f"{cyc.ruleset.name} {cyc.ruleset.version}",
        cyc.ruleset.sha256,
        f"{cyc.model.name} {cyc.model.version}",
        cyc.model.sha256,
    )
    names = columns(report)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([*names, "cycle_id", "as_at", "ruleset", "ruleset_sha256", "model", "model_sha256"])
    for row in report.rows:
        w.writerow([*(_cell(getattr(row, k)) for k in names), *provenance])
    return out.getvalue()
