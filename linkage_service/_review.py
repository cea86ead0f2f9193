"""The review queue: which undecided pairs would change a family, in what order, what the rest are.

The engine keeps the pairs it could not decide (match probability between the
review and the match threshold, and merges it refused) in the ``review``
table: 100,000 and more at a million records, more than any team can work.
This module makes the queue workable:

* **Impact** (:class:`WhatIf`): for one pair, what the latest assessment cycle
  would have said had its two records been one person. The two persons'
  records and events are taken together (:func:`merge_members`, the way
  ``_assessment.load_families`` builds a person) and put in each one's
  household in place of that household's own member; each household is
  re-assessed with the programme's own ``assess_family`` and compared with
  its stored snapshot: eligibility, and whether the score is at or above the
  unlock threshold. A pair has impact ``eligibility``, ``threshold``,
  ``both`` or ``none``.
* :func:`update_impacts` runs inside each assessment cycle's transaction and
  stores each pair's impact and queue rank on its review row, so reading the
  queue (:func:`review_queue`) is one index range scan: impactful pairs first,
  then the least certain (probability nearest 0.5). A pair the engine rewrites
  after the cycle has no impact (``None``) until the next cycle.
* :func:`review_summary`: counts by impact, a histogram of match probability,
  and how many pairs sit at each level of each comparison of the match model.

Must never: see or return a plaintext identifier (there is none to see; only
record, person, household and family ids, scores and indicators pass through
here), decide a pair or change a person: an impact is a what-if, stored
beside the pair, and nothing else is written. Decided pairs have left the
queue (``_decisions``); the summary counts them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Engine

from protocols import (
    ComparisonLevels,
    DecisionCounts,
    FamilyImpact,
    FamilyStateView,
    ImpactCounts,
    LevelCount,
    ProbabilityBand,
    ReviewImpact,
    ReviewPair,
    ReviewQueue,
    ReviewSummary,
)

from . import _store as store
from ._matchmodel import COMPARISONS
from .programme._programme import Assessment, FamilyInput, MemberInput, Plan, assess_family
from .programme._riskmodel import RiskModel
from .programme._ruleset import Ruleset

__all__ = [
    "BAND_EDGES",
    "EXPORT_COLUMNS",
    "IMPACTS",
    "FamilyChange",
    "FamilyState",
    "PairImpact",
    "WhatIf",
    "iter_queue",
    "merge_members",
    "queue_csv",
    "review_queue",
    "review_summary",
    "update_impacts",
]

Impact = ReviewImpact
IMPACTS: tuple[Impact, ...] = ("none", "eligibility", "threshold", "both")
# Probability bands of the summary's histogram: [0.0, 0.1), ..., [0.9, 1.0].
BAND_EDGES = tuple(round(k / 10, 1) for k in range(11))
EXPORT_PAGE = 1000


# --- what one merge would change (pure) ---------------------------------------------------


def merge_members(home: MemberInput, other: MemberInput) -> MemberInput:
    """``home`` and ``other`` as one person, living where ``home`` lives.

    As ``_assessment.load_families`` builds a person from their records: records
    and events are pooled; age, age date and sex are those of the member with
    the later latest record (``home``'s on the same date; the other's sex if
    ``home`` has none); a dependent child when either member at that date is
    one, or is 16-18 with an ``in_education_or_training`` event in the pool;
    expectant when either is.
    """
    day = max(home.age_date, other.age_date)
    latest = [m for m in (home, other) if m.age_date == day]
    first = latest[0]
    events = home.events + other.events
    in_education = any(e.type == "in_education_or_training" for e in events)
    dependent = any(m.dependent for m in latest) or (
        in_education and any(m.age is not None and 16 <= m.age <= 18 for m in latest)
    )
    return MemberInput(
        person_id=home.person_id,
        age=first.age,
        age_band=first.age_band,
        age_date=day,
        sex=first.sex or (other.sex if first is home else home.sex),
        records=tuple(sorted(set(home.records) | set(other.records))),
        events=events,
        dependent=dependent,
        expectant=home.expectant or other.expectant,
    )


@dataclass(frozen=True, slots=True)
class FamilyState:
    """A household's outcome in a cycle: eligible, score, at or above the unlock threshold.

    ``score`` is None when the household is not a family (not assessed).
    """

    eligible: bool
    score: int | None
    unlock: bool

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"eligible": self.eligible, "score": self.score, "unlock": self.unlock}


NOT_A_FAMILY = FamilyState(eligible=False, score=None, unlock=False)


@dataclass(frozen=True, slots=True)
class FamilyChange:
    """One household a pair's match would touch: its state in the cycle and with the match."""

    family_id: str
    household_id: str
    before: FamilyState
    after: FamilyState

    @property
    def eligibility_changes(self) -> bool:
        """Whether the match would make the family eligible, or no longer eligible."""
        return self.before.eligible != self.after.eligible

    @property
    def threshold_changes(self) -> bool:
        """Whether the match would take the family over the unlock threshold, or below it."""
        return self.before.unlock != self.after.unlock

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (what the review row stores)."""
        return {
            "family_id": self.family_id,
            "household_id": self.household_id,
            "before": self.before.as_json(),
            "after": self.after.as_json(),
        }


@dataclass(frozen=True, slots=True)
class PairImpact:
    """What deciding one review pair "match" would change in the latest cycle."""

    impact: Impact
    families: tuple[FamilyChange, ...]


NO_IMPACT = PairImpact("none", ())


def _kind(changes: Iterable[FamilyChange]) -> Impact:
    eligibility = threshold = False
    for c in changes:
        eligibility |= c.eligibility_changes
        threshold |= c.threshold_changes
    if eligibility and threshold:
        return "both"
    if eligibility:
        return "eligibility"
    return "threshold" if threshold else "none"


class WhatIf:
    """One cycle's households and assessments, to ask what merging two persons would change.

    ``families`` are every current household (``load_families``), ``assessed``
    the cycle's assessments by family id (its cohort); ``persons`` limits the
    index to the persons that will be asked about.
    """

    def __init__(
        self,
        families: Iterable[FamilyInput],
        assessed: Mapping[str, Assessment],
        ruleset: Ruleset,
        model: RiskModel,
        as_at: dt.date,
        *,
        plan: Plan | None = None,
        persons: Collection[str] | None = None,
    ) -> None:
        self._home: dict[str, tuple[FamilyInput, MemberInput]] = {}
        for family in families:
            for m in family.members:
                if persons is None or m.person_id in persons:
                    self._home[m.person_id] = (family, m)
        self._assessed = assessed
        self._ruleset, self._model, self._as_at = ruleset, model, as_at
        self._plan = plan or Plan.build(ruleset)
        self._unlock = model.thresholds.unlock
        self.assessments = 0  # households re-assessed so far (the cost of the what-ifs)

    def _before(self, family: FamilyInput) -> FamilyState:
        a = self._assessed.get(family.family_id)
        if a is None:
            return NOT_A_FAMILY
        return FamilyState(a.eligible, a.score, a.score >= self._unlock)

    def _after(self, family: FamilyInput) -> FamilyState:
        rules = self._ruleset.eligibility
        if rules.families_only and not family.is_family(rules.presume_in_education_to_age):
            return NOT_A_FAMILY
        self.assessments += 1
        a = assess_family(
            family, self._ruleset, self._model, self._as_at, with_evidence=False, plan=self._plan
        )
        return FamilyState(a.eligible, a.score, a.score >= self._unlock)

    def impact(self, person_a: str | None, person_b: str | None) -> PairImpact | None:
        """What the cycle would say were ``person_a`` and ``person_b`` one person.

        None when either record has no current person in a household (nothing
        to assess); no impact when both records are already one person.
        """
        if person_a is not None and person_a == person_b:
            return NO_IMPACT
        home_a = self._home.get(person_a) if person_a is not None else None
        home_b = self._home.get(person_b) if person_b is not None else None
        if home_a is None or home_b is None:
            return None
        (family_a, member_a), (family_b, member_b) = home_a, home_b
        apart = family_a.household_id != family_b.household_id
        targets = [(family_a, member_a, member_b)]
        if apart:
            targets.append((family_b, member_b, member_a))
        changes: list[FamilyChange] = []
        for family, home, other in targets:
            merged = merge_members(home, other)
            before = self._before(family)
            if apart and not other.events and _counts_alike(merged, home):
                after = before  # the other adds only record refs: nothing an assessment counts
            else:
                members = [m for m in family.members if m.person_id not in (person_a, person_b)]
                members.append(merged)
                members.sort(key=lambda m: m.person_id)
                hypothetical = FamilyInput(
                    family.family_id, family.household_id, family.district, tuple(members)
                )
                after = self._after(hypothetical)
            if before.score is None and after.score is None:
                continue  # not a family either way
            changes.append(FamilyChange(family.family_id, family.household_id, before, after))
        return PairImpact(_kind(changes), tuple(changes))


def _counts_alike(a: MemberInput, b: MemberInput) -> bool:
    """Whether an assessment reads the two members alike (it reads no record refs or sex)."""
    return (a.age, a.age_band, a.age_date, a.dependent, a.expectant, a.events) == (
        b.age,
        b.age_band,
        b.age_date,
        b.dependent,
        b.expectant,
        b.events,
    )


# --- the cycle's step ----------------------------------------------------------------------


def update_impacts(
    conn: Connection,
    cycle_id: int,
    families: Iterable[FamilyInput],
    assessed: Mapping[str, Assessment],
    ruleset: Ruleset,
    model: RiskModel,
    as_at: dt.date,
    *,
    plan: Plan | None = None,
) -> dict[str, int]:
    """Store every review pair's impact in cycle ``cycle_id`` (inside the cycle's transaction).

    Counts of pairs by impact (``not_assessed``: a record without a current
    person in a household) and the number of households re-assessed.
    """
    pairs = store.review_pair_persons(conn)
    persons = {p for _a, _b, pa, pb in pairs for p in (pa, pb) if p is not None}
    what_if = WhatIf(families, assessed, ruleset, model, as_at, plan=plan, persons=persons)
    counts = Counter[str]()
    rows: list[store.ReviewImpactRow] = []
    # an impact depends on the two persons only, and several record pairs often
    # join the same two persons (one has records at two agencies)
    known: dict[tuple[str | None, str | None], PairImpact | None] = {}
    for record_a, record_b, person_a, person_b in pairs:
        persons_ = (person_a, person_b)
        if person_a is not None and person_b is not None and person_b < person_a:
            persons_ = (person_b, person_a)
        if persons_ not in known:
            known[persons_] = what_if.impact(*persons_)
        found = known[persons_]
        if found is None:
            counts["not_assessed"] += 1
            rows.append(store.ReviewImpactRow(record_a, record_b, None, None))
            continue
        counts[found.impact] += 1
        detail = json.dumps(
            [c.as_json() for c in found.families], sort_keys=True, separators=(",", ":")
        )
        rows.append(store.ReviewImpactRow(record_a, record_b, found.impact, detail))
    store.write_review_impacts(conn, cycle_id, rows)
    out = {k: counts[k] for k in (*IMPACTS, "not_assessed")}
    out["households_reassessed"] = what_if.assessments
    return out


# --- reads: the queue and its summary ------------------------------------------------------


def _state(raw: Mapping[str, Any]) -> FamilyStateView:
    return FamilyStateView(
        eligible=bool(raw["eligible"]), score=raw["score"], at_unlock_threshold=bool(raw["unlock"])
    )


def _family(raw: Mapping[str, Any]) -> FamilyImpact:
    before, after = _state(raw["before"]), _state(raw["after"])
    return FamilyImpact(
        family_id=raw["family_id"],
        household_id=raw["household_id"],
        before=before,
        after=after,
        eligibility_changes=before.eligible != after.eligible,
        threshold_changes=before.at_unlock_threshold != after.at_unlock_threshold,
    )


def review_queue(
    engine: Engine, offset: int = 0, limit: int = 100, *, impactful_only: bool = False
) -> ReviewQueue:
    """A page of the review queue: impactful pairs first, then probability nearest 0.5."""
    page = store.list_review(engine, offset, limit, impactful_only=impactful_only)
    return ReviewQueue(
        cycle_id=page.cycle_id,
        impactful_only=impactful_only,
        candidates=[
            ReviewPair.model_validate(
                {
                    "a": r.a,
                    "b": r.b,
                    "score": r.score,
                    "uncertainty": r.uncertainty,
                    "impact": r.impact,
                    "impact_cycle": r.impact_cycle,
                    "families": [_family(f) for f in json.loads(r.impact_detail or "[]")],
                    "evidence": json.loads(r.evidence),
                    "run_id": r.run_id,
                }
            )
            for r in page.rows
        ],
        next_offset=offset + limit if len(page.rows) == limit else None,
    )


def _level_order() -> dict[str, dict[str, int]]:
    return {c.name: {level: k for k, level in enumerate(c.levels)} for c in COMPARISONS}


def review_summary(engine: Engine) -> ReviewSummary:
    """Counts by impact, the probability histogram and the comparison levels of the queue."""
    raw = store.review_statistics(engine, BAND_EDGES)
    families: set[str] = set()
    for detail in raw.impactful_details:
        families.update(
            f["family_id"]
            for f in json.loads(detail)
            if _family(f).eligibility_changes or _family(f).threshold_changes
        )
    by_impact = {k: raw.by_impact.get(k, 0) for k in IMPACTS}
    order = _level_order()
    comparisons: dict[str, list[LevelCount]] = {}
    for (name, level), n in raw.levels.items():
        comparisons.setdefault(name, []).append(LevelCount(level=level, pairs=n))
    known = list(order)

    def comparison_key(name: str) -> tuple[int, str]:
        return (known.index(name) if name in order else len(known), name)

    def levels_of(name: str) -> list[LevelCount]:
        known_levels = order.get(name, {})

        def key(lv: LevelCount) -> tuple[int, int, str]:
            rank = known_levels.get(lv.level)
            return (0 if rank is not None else 1, rank or 0, lv.level)

        return sorted(comparisons[name], key=key)

    return ReviewSummary(
        pairs=raw.pairs,
        cycle_id=raw.cycle_id,
        impactful=by_impact["eligibility"] + by_impact["threshold"] + by_impact["both"],
        impact=ImpactCounts(**by_impact, not_assessed=raw.by_impact.get(None, 0)),
        families_affected=len(families),
        probability=[
            ProbabilityBand(low=lo, high=hi, pairs=n)
            for lo, hi, n in zip(BAND_EDGES[:-1], BAND_EDGES[1:], raw.bands, strict=True)
        ],
        comparisons=[
            ComparisonLevels(
                comparison=name,
                levels=levels_of(name),
            )
            for name in sorted(comparisons, key=comparison_key)
        ],
        unexplained=raw.unexplained,
        decisions=_decision_counts(engine),
    )


def _decision_counts(engine: Engine) -> DecisionCounts:
    rows = store.list_decisions(engine, current_only=True)
    applied = sum(
        (r.person_a is not None and r.person_a == r.person_b) == (r.decision == "match")
        for r in rows
    )
    return DecisionCounts(
        match=sum(r.decision == "match" for r in rows),
        non_match=sum(r.decision == "non_match" for r in rows),
        applied=applied,
        pending=len(rows) - applied,
        changes=sum(r.version > 1 for r in rows),
    )


EXPORT_COLUMNS = (
    "position",
    "agency_a",
    "record_ref_a",
    "agency_b",
    "record_ref_b",
    "probability",
    "impact",
    "family_id",
    "eligible_before",
    "eligible_after",
    "score_before",
    "score_after",
    "at_unlock_before",
    "at_unlock_after",
)


def iter_queue(engine: Engine, *, impactful_only: bool = True) -> Iterator[ReviewPair]:
    """Every pair of the queue in queue order (a page at a time)."""
    offset = 0
    while True:
        page = review_queue(engine, offset, EXPORT_PAGE, impactful_only=impactful_only)
        yield from page.candidates
        if page.next_offset is None:
            return
        offset = page.next_offset


def queue_csv(pairs: Iterable[ReviewPair]) -> str:
    """CSV of queue pairs, one row per pair and family it would touch (ids and numbers only)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)

    def cell(value: object) -> object:
        return "" if value is None else value

    for position, pair in enumerate(pairs, start=1):
        head = [
            position,
            pair.a.agency_id,
            pair.a.record_ref,
            pair.b.agency_id,
            pair.b.record_ref,
            round(pair.score, 6),
            cell(pair.impact),
        ]
        if not pair.families:
            writer.writerow([*head, *[""] * (len(EXPORT_COLUMNS) - len(head))])
        for f in pair.families:
            writer.writerow(
                [
                    *head,
                    f.family_id,
                    f.before.eligible,
                    f.after.eligible,
                    cell(f.before.score),
                    cell(f.after.score),
                    f.before.at_unlock_threshold,
                    f.after.at_unlock_threshold,
                ]
            )
    return out.getvalue()
