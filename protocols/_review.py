"""The review queue and clerical decisions as the linkage service answers them.

A page of the queue (pairs that would change a family first, then the least
certain), the queue's summary, and reviewers' match / non-match decisions with
their effect. Records are named by the service's id, the agency and the
agency's own pseudonymous record ref, never by anything that identifies a person.

Must never: import anything but pydantic and the standard library.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ComparisonLevels",
    "DecisionCounts",
    "DecisionList",
    "DecisionView",
    "FamilyImpact",
    "FamilyStateView",
    "ImpactCounts",
    "LevelCount",
    "ProbabilityBand",
    "RecordRef",
    "ReviewDecision",
    "ReviewEffect",
    "ReviewImpact",
    "ReviewPair",
    "ReviewQueue",
    "ReviewSummary",
]

ReviewImpact = Literal["none", "eligibility", "threshold", "both"]
ReviewDecision = Literal["match", "non_match"]
ReviewEffect = Literal["merged", "apart", "pending", "superseded"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordRef(_Model):
    """One record of a pair: the service's id, the agency and the agency's record ref."""

    record_id: int
    agency_id: str
    record_ref: str


class FamilyStateView(_Model):
    """A family's eligibility, score and unlock status (score None: not a family)."""

    eligible: bool
    score: int | None
    at_unlock_threshold: bool


class FamilyImpact(_Model):
    """A family a pair's match would touch: as assessed, and with the match."""

    family_id: str
    household_id: str
    before: FamilyStateView
    after: FamilyStateView
    eligibility_changes: bool
    threshold_changes: bool


class ReviewPair(_Model):
    """One pair in the queue: its records, probability, evidence and impact."""

    a: RecordRef
    b: RecordRef
    score: float  # the match probability
    uncertainty: float  # |score - 0.5|
    impact: ReviewImpact | None  # None: not assessed since the engine wrote the pair
    impact_cycle: int | None
    families: list[FamilyImpact]
    evidence: dict[str, Any]
    run_id: int


class ReviewQueue(_Model):
    """A page of the review queue: impactful pairs first, then the least certain."""

    cycle_id: int | None  # the latest assessment cycle (impacts are relative to it)
    impactful_only: bool
    candidates: list[ReviewPair]
    next_offset: int | None


class ImpactCounts(_Model):
    """Review pairs by impact; ``not_assessed``: written since the latest cycle, or no cycle."""

    none: int
    eligibility: int
    threshold: int
    both: int
    not_assessed: int


class ProbabilityBand(_Model):
    """Pairs with match probability in ``[low, high)`` (the last band includes 1.0)."""

    low: float
    high: float
    pairs: int


class LevelCount(_Model):
    """Pairs at one level of one comparison."""

    level: str
    pairs: int


class ComparisonLevels(_Model):
    """One comparison of the match model and how many pairs sit at each of its levels."""

    comparison: str
    levels: list[LevelCount]


class DecisionCounts(_Model):
    """Clerical decisions in force (pairs no longer in the queue) and what they did.

    ``applied``: the engine has merged a match's persons / kept a non-match's
    apart; ``pending``: until the next update; ``changes``: decisions that
    replaced an earlier one.
    """

    match: int
    non_match: int
    applied: int
    pending: int
    changes: int


class ReviewSummary(_Model):
    """What the review queue holds, without working it."""

    pairs: int
    cycle_id: int | None
    impactful: int  # eligibility + threshold + both
    impact: ImpactCounts
    families_affected: int  # distinct families an impactful pair would change
    probability: list[ProbabilityBand]
    comparisons: list[ComparisonLevels]
    unexplained: int  # pairs whose evidence names no comparison levels (no match model)
    decisions: DecisionCounts


class DecisionView(_Model):
    """One decision as stored, and its effect on the two records' persons now."""

    id: int
    a: RecordRef
    b: RecordRef
    version: int  # 1: the pair's first decision; each recorded change the next
    decision: ReviewDecision
    reason: str
    decided_at: str  # ISO 8601 UTC
    decided_by: str  # role:label of the reviewer
    current: bool  # the decision in force on the pair
    effect: ReviewEffect
    person_a: str | None
    person_b: str | None
    score: float | None  # the pair's match probability when decided (None: not scored)
    evidence: dict[str, Any] | None  # the pair's evidence when decided


class DecisionList(_Model):
    """Decisions in the order they were made, with the id to continue after."""

    decisions: list[DecisionView]
    next_after: int | None
