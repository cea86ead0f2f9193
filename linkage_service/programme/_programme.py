"""Assessing one family: measures, indicators, problems, eligibility, score and reasons.

Pure functions over plain data: :class:`FamilyInput` (the family's members, their
records' agencies and extract types, and their events) in, :class:`Assessment`
out. Nothing here reads the database or a clock, so every number can be
recomputed and explained from the inputs, the ruleset and the model alone.

As at a date ``as_at``: an event counts for a measure when its type is one the
measure names, its member is in the measure's group (by age at ``as_at``), and
its date is in the window ``(as_at - window_days, as_at]``. Events after
``as_at`` are not seen at all. A measure with no counted event is *missing*;
a missing measure never meets an indicator, so no data never reads as a
problem, nor as agreement.

"No data or no problem?": for each problem the assessment lists the agencies
that hold a record of a family member in one of the problem's source extract
types (they could have reported it) and the agencies whose events met it.

An assessment's problems, evidence and reasons are typed dicts (:class:`ProblemFinding`,
:class:`EventJson`, :class:`ReasonJson`): a cycle makes millions of them and
writes them straight to JSON, and a dict costs a tenth of a model to build.
What a cycle stores of them, the snapshot's *detail*, is read back as models:
:class:`SnapshotDetail`, all of it, or :class:`OutcomeDetail`, what outcome
rules, distance travelled and re-derivation read (the rest is skipped unparsed).

Must never: see a plaintext identifier (there is none to see), do I/O.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, NotRequired, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from protocols import (
    EvidenceEvent,
    FamilyMemberView,
    ReasonView,
    SnapshotProblem,
    VersionRef,
    age_span,
    describe_errors,
)

from .._errors import StorageError
from ._riskmodel import RiskModel
from ._ruleset import Ruleset

__all__ = [
    "Assessment",
    "DetailJson",
    "Event",
    "EventJson",
    "FamilyInput",
    "MemberInput",
    "MemberJson",
    "OutcomeDetail",
    "Plan",
    "ProblemFinding",
    "Reason",
    "ReasonJson",
    "SnapshotDetail",
    "age_at",
    "assess_family",
    "compare",
    "member_groups",
    "parse_detail",
    "rank",
]

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def compare(value: float | None, op: str, threshold: float) -> bool:
    """``value op threshold``; a missing value never compares true."""
    return value is not None and OPS[op](value, threshold)


class Event(NamedTuple):
    """One indicator value reported by one agency about one member.

    Tuples, not frozen dataclasses: a million are made per assessment, and a
    frozen dataclass costs several times more to construct.
    """

    type: str
    value: float
    date: dt.date
    agency_id: str
    record_ref: str


class MemberInput(NamedTuple):
    """One member: pseudonymous id, coarse attributes and what agencies report."""

    person_id: str
    age: int | None  # whole years at ``age_date`` (the latest record's extract date), under 25
    age_date: dt.date
    sex: str | None
    records: tuple[tuple[str, str, str], ...]  # (agency_id, record_ref, extract_type)
    events: tuple[Event, ...]
    dependent: bool = False  # a child, or 16-18 in education or training
    expectant: bool = False
    # from 25 agencies send a band, not an age (protocols.AGE_BANDS): "25-34", ...
    age_band: str | None = None


@dataclass(frozen=True, slots=True)
class FamilyInput:
    """A household and its members, as the linkage service knows them."""

    family_id: str
    household_id: str
    district: str | None
    members: tuple[MemberInput, ...]

    def is_family(self, presume_in_education_to_age: int = 15) -> bool:
        """A household with a dependent child or an expectant parent (DOMAIN.md).

        A dependent child is 0-15, or 16-18 in education or training; members aged
        16 to ``presume_in_education_to_age`` are presumed in education unless an
        agency reports them NEET.
        """
        for m in self.members:
            if m.dependent or m.expectant:
                return True
            if m.age is not None and 16 <= m.age <= presume_in_education_to_age:
                if not any(e.type == "months_neet" for e in m.events):
                    return True
        return False


class ReasonJson(TypedDict):
    """A reason as the snapshot detail stores it (read back as ``protocols.ReasonView``)."""

    code: str
    points: int
    title: str
    because: list[str]


class ProblemFinding(TypedDict):
    """One problem area of an assessment: met, by which indicators, the agencies that could
    have reported it (``data_from``) and those whose events met it; ``no_data``: neither.
    Read back from a snapshot as ``protocols.SnapshotProblem``."""

    met: bool
    indicators: list[str]
    data_from: list[str]
    met_by: list[str]
    no_data: bool


class EventJson(TypedDict):
    """A counted event behind an indicator met (read back as ``protocols.EvidenceEvent``)."""

    person_id: str
    agency_id: str
    record_ref: str
    type: str
    value: float
    date: str  # ISO


class MemberJson(TypedDict):
    """A member as a snapshot stores it: ``[agency, ref]`` records; ``age_band`` only when
    set (snapshots from before extract v2 have none)."""

    person_id: str
    age: int | None
    sex: str | None
    records: list[list[str]]
    age_band: NotRequired[str]


class DetailJson(TypedDict):
    """A snapshot's detail as a cycle writes it (see :class:`SnapshotDetail`)."""

    indicators: list[str]
    problems: dict[str, ProblemFinding]  # those met or with an agency that could report them
    no_data: list[str]
    domains: dict[str, int]
    measures: dict[str, float]
    reasons: list[ReasonJson]
    members: list[MemberJson]
    evidence: NotRequired[dict[str, list[EventJson]]]  # eligible or above the unlock threshold
    step_source: NotRequired[str]  # "data": the same people; "relink": members changed


class OutcomeDetail(BaseModel):
    """What outcome rules, distance travelled and re-derivation read of a snapshot's detail.

    Problems (met, indicators, the agencies behind them), domain scores (1 none
    .. 5 critical), measures, and the events of the indicators met (None: not
    kept, the family was neither eligible nor above the unlock threshold).
    Other keys are skipped unparsed: this is read for every snapshot of every
    attached family in each cycle and report. ``rederived`` names the ruleset a
    detail was re-derived under (``_active``); a stored detail has none.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    problems: dict[str, SnapshotProblem]
    domains: dict[str, int]
    measures: dict[str, float]
    evidence: dict[str, list[EvidenceEvent]] | None = None
    rederived: VersionRef | None = None


class SnapshotDetail(OutcomeDetail):
    """A snapshot's whole detail JSON as stored (:class:`DetailJson`); no other key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    indicators: list[str]
    no_data: list[str]
    reasons: list[ReasonView]
    members: list[FamilyMemberView]
    step_source: str | None = None


_D = TypeVar("_D", bound=BaseModel)


def parse_detail(model: type[_D], text: str, family_id: str, cycle_id: int) -> _D:
    """A snapshot's stored detail JSON as ``model`` (:class:`SnapshotDetail`, :class:`OutcomeDetail`
    or a narrower read); StorageError naming the snapshot and the fields if it is not one."""
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise StorageError(
            f"snapshot of {family_id} in cycle {cycle_id}: stored detail does not parse: "
            f"{describe_errors(exc, '(top)')}"
        ) from exc


@dataclass(frozen=True, slots=True)
class Reason:
    """One term of a score: a reason code, its points and the indicators behind it."""

    code: str
    points: int
    title: str
    because: tuple[str, ...]

    def as_json(self) -> ReasonJson:
        """JSON-ready form."""
        return {
            "code": self.code,
            "points": self.points,
            "title": self.title,
            "because": list(self.because),
        }


@dataclass(frozen=True)
class Assessment:
    """Everything decided about one family at one date, with its evidence."""

    family_id: str
    is_family: bool
    eligible: bool
    measures: dict[str, float | None]
    indicators: tuple[str, ...]  # met, in ruleset order
    problems: dict[str, ProblemFinding]
    domains: dict[str, int]  # problem -> 1 none .. 5 critical
    score: int
    reasons: tuple[Reason, ...]
    clearance_required: int
    evidence: dict[str, list[EventJson]] = field(default_factory=dict)  # indicator -> events

    @property
    def problems_met(self) -> list[str]:
        """Ids of the problems met."""
        return [p for p, v in self.problems.items() if v["met"]]


def age_at(member: MemberInput, as_at: dt.date) -> int | None:
    """The member's age in whole years at ``as_at`` (from the age at their latest record).

    For a member whose records give an age band (25 and over), the youngest age
    the band allows: every rule's threshold is at or below 25, so the groups it
    falls in are the same whatever the age in the band.
    """
    span = age_span(member.age, member.age_band)
    if span is None:
        return None
    elapsed = (as_at - member.age_date).days
    return max(0, span[0] + int(elapsed // 365.25))


def member_groups(age: int | None) -> frozenset[str]:
    """The measure member groups an age falls in (``all`` always)."""
    if age is None:
        return frozenset(("all",))
    groups = ["all"]
    if age < 18:
        groups.append("children")
    if 5 <= age <= 15:
        groups.append("school_age")
    if age < 5:
        groups.append("under_fives")
    if age >= 18:
        groups.append("adults")
    if 16 <= age <= 24:
        groups.append("young_people")
    return frozenset(groups)


_IndicatorStep = tuple[str, str | None, str | None, float, tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True)
class Plan:
    """A ruleset and model compiled once for assessing many families."""

    measures: tuple[tuple[str, tuple[str, ...], int, str, str], ...]  # id, types, days, agg, who
    indicators: tuple[
        tuple[str, str | None, str | None, float, tuple[str, ...], tuple[str, ...]], ...
    ]
    indicator_ids: tuple[str, ...]  # ruleset order
    aggregate_of: dict[str, str]  # measure -> its aggregate
    measure_types: tuple[frozenset[str], ...]  # per measure, its event types
    problems: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]  # id, any_of, sources

    @classmethod
    def build(cls, ruleset: Ruleset) -> Plan:
        """Compile ``ruleset`` (indicators ordered so combinations follow their parts)."""
        measures = tuple(
            (mid, tuple(t.value for t in m.events), m.window_days, m.aggregate, m.members)
            for mid, m in ruleset.measures.items()
        )
        indicators = []
        for iid in ruleset.indicator_order():
            ind = ruleset.indicators[iid]
            threshold = float(ind.threshold) if ind.threshold is not None else 0.0
            indicators.append((iid, ind.measure, ind.op, threshold, ind.any_of, ind.all_of))
        return cls(
            measures=measures,
            indicators=tuple(indicators),
            indicator_ids=tuple(ruleset.indicators),
            aggregate_of={mid: agg for mid, _t, _d, agg, _w in measures},
            measure_types=tuple(frozenset(types) for _m, types, _d, _a, _w in measures),
            problems=tuple((p, v.any_of, v.sources) for p, v in ruleset.problems.items()),
        )


def _measure(
    types: tuple[str, ...],
    days: int,
    agg: str,
    who: str,
    as_at: dt.date,
    by_type: Mapping[str, list[tuple[str, Event]]],
    groups: Mapping[str, frozenset[str]],
) -> tuple[float | None, list[tuple[str, Event]]]:
    start = as_at - dt.timedelta(days=days)
    counted = [
        (pid, e)
        for t in types
        for pid, e in by_type.get(t, ())
        if start < e.date <= as_at and who in groups[pid]
    ]
    if not counted:
        return None, counted
    if agg == "sum":
        return float(sum(e.value for _, e in counted)), counted
    if agg == "max":
        return float(max(e.value for _, e in counted)), counted
    if agg == "min":
        return float(min(e.value for _, e in counted)), counted
    if agg == "count":
        return float(len(counted)), counted
    if agg == "people":
        return float(len({pid for pid, _ in counted})), counted
    latest = max(e.date for _, e in counted)  # "latest": the largest value on the latest date
    return float(max(e.value for _, e in counted if e.date == latest)), counted


def qualifying(
    counted: Sequence[tuple[str, Event]], aggregate: str, op: str, threshold: float
) -> list[tuple[str, Event]]:
    """The events of a measure that meet its indicator: its evidence.

    A total (sum, count, people) is met by all of its events together; a lowest,
    highest or latest value only by the events that meet the threshold themselves
    (a child's 56% attendance is evidence of persistent absence, a sibling's 95%
    is not), the latest only on its date. Never empty when the indicator is met.
    """
    if aggregate in ("min", "max"):
        return [(p, e) for p, e in counted if compare(e.value, op, threshold)]
    if aggregate == "latest":
        on = max(e.date for _, e in counted)
        return [(p, e) for p, e in counted if e.date == on and compare(e.value, op, threshold)]
    return list(counted)


def _evidence(counted: Iterable[tuple[str, Event]]) -> list[EventJson]:
    return [
        {
            "person_id": pid,
            "agency_id": e.agency_id,
            "record_ref": e.record_ref,
            "type": e.type,
            "value": e.value,
            "date": e.date.isoformat(),
        }
        for pid, e in sorted(counted, key=lambda x: (x[1].date, x[1].agency_id, x[1].record_ref))
    ]


def assess_family(
    family: FamilyInput,
    ruleset: Ruleset,
    model: RiskModel,
    as_at: dt.date,
    *,
    with_evidence: bool = True,
    plan: Plan | None = None,
) -> Assessment:
    """Measures, indicators, problems, eligibility, domain scores and score of ``family``.

    ``plan`` is :meth:`Plan.build` of ``ruleset``, when assessing many families.
    """
    plan = plan or Plan.build(ruleset)
    groups: dict[str, frozenset[str]] = {}
    by_type: dict[str, list[tuple[str, Event]]] = {}
    for member in family.members:
        groups[member.person_id] = member_groups(age_at(member, as_at))
        for e in member.events:
            by_type.setdefault(e.type, []).append((member.person_id, e))
    measures: dict[str, float | None] = {}
    counted: dict[str, list[tuple[str, Event]]] = {}
    for (mid, types, days, agg, who), type_set in zip(
        plan.measures, plan.measure_types, strict=True
    ):
        if type_set.isdisjoint(by_type):
            measures[mid], counted[mid] = None, []
        else:
            measures[mid], counted[mid] = _measure(types, days, agg, who, as_at, by_type, groups)

    met: dict[str, bool] = {}
    for iid, measure, op, threshold, any_of, all_of in plan.indicators:
        if measure is not None:
            assert op is not None
            met[iid] = compare(measures[measure], op, threshold)
        else:
            met[iid] = (not any_of or any(met[r] for r in any_of)) and all(met[r] for r in all_of)
    met_ids = tuple(i for i in plan.indicator_ids if met[i])

    # the events behind each met indicator of a measure (its evidence, the agencies that met it)
    behind: dict[str, list[tuple[str, Event]]] = {}
    for iid, measure, op, threshold, _any, _all in plan.indicators:
        if measure is not None and met[iid]:
            assert op is not None
            behind[iid] = qualifying(counted[measure], plan.aggregate_of[measure], op, threshold)
    evidence: dict[str, list[EventJson]] = {}
    if with_evidence:
        evidence = {iid: _evidence(behind[iid]) for iid in met_ids if iid in behind}

    records_by_type: dict[str, set[str]] = {}
    for member in family.members:
        for agency_id, _ref, extract_type in member.records:
            records_by_type.setdefault(extract_type, set()).add(agency_id)
    problems: dict[str, ProblemFinding] = {}
    domains: dict[str, int] = {}
    for pid, any_of, sources in plan.problems:
        hits = [i for i in any_of if met[i]]
        data_from = sorted({a for t in sources if t in records_by_type for a in records_by_type[t]})
        met_by: set[str] = set()
        for i in hits:
            met_by.update(e.agency_id for _, e in behind.get(i, ()))
        problems[pid] = {
            "met": bool(hits),
            "indicators": hits,
            "data_from": data_from,
            "met_by": sorted(met_by),
            "no_data": not data_from and not hits,
        }
        domains[pid] = max((ruleset.indicators[i].severity for i in hits), default=1)

    n_problems = sum(1 for p in problems.values() if p["met"])
    is_family = family.is_family(ruleset.eligibility.presume_in_education_to_age)
    eligible = n_problems >= ruleset.eligibility.min_problems and (
        is_family or not ruleset.eligibility.families_only
    )
    holds = frozenset(
        [f"indicator:{i}" for i in met_ids]
        + [f"problem:{p}" for p, v in problems.items() if v["met"]]
    )
    reasons, score = _score(model, holds)
    clearance = model.clearance.default
    for rule in model.clearance.rules:
        if rule.when in holds:
            clearance = max(clearance, rule.level)
    return Assessment(
        family_id=family.family_id,
        is_family=is_family,
        eligible=eligible,
        measures=measures,
        indicators=met_ids,
        problems=problems,
        domains=domains,
        score=score,
        reasons=reasons,
        clearance_required=clearance,
        evidence=evidence,
    )


def _score(model: RiskModel, holds: frozenset[str]) -> tuple[tuple[Reason, ...], int]:
    """Reason codes and score; ``holds`` is every ``indicator:<id>`` / ``problem:<id>`` met."""
    reasons: list[Reason] = []
    for code, factor in model.factors.items():
        if factor.when in holds:
            reasons.append(Reason(code, factor.points, factor.title, (factor.when,)))
    for code, combo in model.combinations.items():
        if all(r in holds for r in combo.all_of):
            reasons.append(Reason(code, combo.points, combo.title, combo.all_of))
    met_problems = tuple(sorted(r for r in holds if r.startswith("problem:")))
    if model.points_per_problem and met_problems:
        reasons.append(
            Reason(
                "BREADTH",
                model.points_per_problem * len(met_problems),
                f"{len(met_problems)} problem areas x {model.points_per_problem} points",
                met_problems,
            )
        )
    reasons.sort(key=lambda r: (-r.points, r.code))
    return tuple(reasons), sum(r.points for r in reasons)


def rank(scores: Sequence[tuple[str, int]]) -> dict[str, tuple[int, float]]:
    """Family id -> (rank, percentile) in the cohort: rank 1 is the highest score.

    Ties share the best rank; the percentile is the share of the cohort scoring
    strictly lower, in percent.
    """
    ordered = sorted((s for _, s in scores), reverse=True)
    n = len(ordered)
    first: dict[int, int] = {}
    counts: dict[int, int] = {}
    for k, s in enumerate(ordered):
        first.setdefault(s, k + 1)
        counts[s] = counts.get(s, 0) + 1
    return {
        fid: (first[s], round(100.0 * (n - first[s] + 1 - counts[s]) / n, 2)) for fid, s in scores
    }
