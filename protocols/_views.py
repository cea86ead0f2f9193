"""Read views of the linkage service: the JSON its read routes answer, as wire models.

These are the shapes a web front end, the unlock service and the CLIs read
back: persons, households, runs, statistics, the programme in force,
assessment cycles, families, outcomes, claims, restriction flags, id
resolution and health (the reports are in ``_reports``). Every id is
pseudonymous; no model here has a field for a name, a date of birth or an
address, and none carries a sealed blob.

Field names and nesting are exactly the JSON the service answered before these
models existed. Where the service answers an open-ended mapping (records per
agency, a run's counters, a ruleset's full content) the model says so
(``dict[str, int]``, ``dict[str, JsonValue]``) rather than inventing a closed
shape. Keys that the service adds only in some cases (a
retired person's ``events``, an attached family's ``progress``) default to
None and are left out of the JSON when absent (the routes serialise with
``exclude_unset``). Keys that are only ever absent, never null, are also left
out when None (``exclude_if``), so their JSON does not depend on how the model
was built; the same holds for keys the service added later, which older stored
JSON (a claim's evidence, a cycle's counts) does not have.

Must never: import anything but pydantic and the standard library.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ._review import RecordRef

__all__ = [
    "AttachmentEvidence",
    "ClaimBatch",
    "ClaimList",
    "ClaimView",
    "ConditionOutcome",
    "CycleList",
    "CycleRestrictions",
    "CycleStats",
    "CycleView",
    "EvidenceEvent",
    "FamilyClaimView",
    "FamilyMemberView",
    "FamilyOutcomes",
    "FamilyPage",
    "FamilyProgress",
    "FamilyRow",
    "FamilySnapshot",
    "FamilyView",
    "HealthView",
    "HeldSince",
    "HouseholdPage",
    "HouseholdPersonView",
    "HouseholdRow",
    "HouseholdView",
    "IdEvent",
    "IdResolution",
    "LeadProfessionalView",
    "Lineage",
    "LinkageStatistics",
    "MeasureProgress",
    "Observation",
    "OutcomeEvaluation",
    "PairDecisionView",
    "PairView",
    "PersonPage",
    "PersonRow",
    "PersonView",
    "ProblemOutcome",
    "ProgrammeView",
    "ReasonView",
    "RecordIndicatorView",
    "RecordLinks",
    "RecordView",
    "RestrictionLifted",
    "RestrictionList",
    "RestrictionRuleView",
    "RestrictionSet",
    "RestrictionView",
    "RulesetSwitchView",
    "RulesetSwitched",
    "RunList",
    "RunView",
    "ScoreChange",
    "ScorePoint",
    "SnapshotProblem",
    "StatusChangeView",
    "StatusView",
    "UnmetOutcome",
    "VersionRef",
]

_VIEW = ConfigDict(extra="forbid", frozen=True)
IdState = Literal["current", "merged", "split", "retired"]
Number = int | float  # as the service computed it: an int stays an int in the JSON


class _View(BaseModel):
    model_config = _VIEW


def _absent(value: object) -> bool:
    """``exclude_if`` of a key that is left out rather than written as null."""
    return value is None


# --- persons and households ------------------------------------------------------------


class RecordIndicatorView(_View):
    """One indicator of a record: type, value and date (ISO)."""

    type: str
    value: float
    date: str


class RecordView(_View):
    """A record as the service holds it: agency, ref, coarse attributes, indicators."""

    record_id: int
    agency_id: str
    record_ref: str
    extract_id: str
    active: bool
    age: int | None  # whole years at the extract date, under 25 (extract v2)
    age_band: str | None = None  # from 25: "25-34", "35-49", "50+"
    sex: str | None
    postcode_district: str | None  # a child's or an expectant parent's record only
    extract_date: str
    indicators: list[RecordIndicatorView]


class PersonRow(_View):
    """A person in a page of persons: household and number of active records."""

    person_id: str
    household_id: str | None
    records: int


class PersonPage(_View):
    """A page of current persons; ``next_after`` is the cursor of the next page (None: last)."""

    persons: list[PersonRow]
    next_after: str | None


class IdEvent(_View):
    """How a retired id was retired: a merge or split event and the id it went to."""

    kind: str
    to: str | None
    run_id: int


class PersonView(_View):
    """One person with household and active records; ``events`` only once retired."""

    person_id: str
    created_run: int
    retired_run: int | None
    household_id: str | None
    records: list[RecordView]
    events: list[IdEvent] | None = None


class HouseholdRow(_View):
    """A household in a page of households, with its number of persons."""

    household_id: str
    persons: int


class HouseholdPage(_View):
    """A page of current households; ``next_after`` is the next page's cursor (None: last)."""

    households: list[HouseholdRow]
    next_after: str | None


class HouseholdPersonView(_View):
    """A person of a household with their active records."""

    person_id: str
    records: list[RecordView]


class HouseholdView(_View):
    """One household with its persons and their records."""

    household_id: str
    created_run: int
    retired_run: int | None
    persons: list[HouseholdPersonView]


class PairView(_View):
    """A scored record pair (a link, or a review candidate) with its comparison evidence."""

    a: RecordRef
    b: RecordRef
    score: float
    evidence: dict[str, JsonValue]
    run_id: int


class PairDecisionView(_View):
    """A clerical decision on a pair of this record (every version, oldest first)."""

    record_a: int
    record_b: int
    version: int
    decision: str
    reason: str
    decided_at: str | None
    decided_by: str


class RecordLinks(_View):
    """An active record's links, review candidates, person and clerical decisions."""

    record_id: int
    links: list[PairView]
    review: list[PairView]
    person_id: str | None
    decisions: list[PairDecisionView]


class IdResolution(_View):
    """Where an id ever issued lives now: its state and the current ids it resolves to."""

    id: str
    state: IdState
    current: list[str]


# --- runs and statistics -----------------------------------------------------------------


class RunView(_View):
    """One linkage run; ``stats`` are the run's own counters (and its match model)."""

    run_id: int
    kind: str
    status: str
    agency_id: str | None
    extract_id: str | None
    started_at: str | None
    finished_at: str | None
    stats: dict[str, JsonValue]
    error: str | None


class RunList(_View):
    """Linkage runs, newest first."""

    runs: list[RunView]


class LinkageStatistics(_View):
    """Counts of records (per agency), persons, households, links, review pairs and runs."""

    active_records: int
    active_records_by_agency: dict[str, int]
    retired_records: int
    persons: int
    households: int
    links: int
    review_candidates: int
    runs: int
    failed_runs: int
    last_run: RunView | None


class HealthView(_View):
    """The service answers, whether an extract is being applied, and the caller's role."""

    status: Literal["ok"]
    ingesting: bool
    role: str


# --- the programme in force and assessment cycles -----------------------------------------


class VersionRef(_View):
    """A ruleset or risk model by name, version and SHA-256 of its canonical content."""

    name: str
    version: str
    sha256: str


class RulesetSwitchView(_View):
    """One switch of the active ruleset: what to, from which, when, by whom and why."""

    switch_id: int
    ruleset: VersionRef
    previous_sha256: str
    switched_at: str | None
    switched_by: str
    reason: str


class ProgrammeView(_View):
    """The ruleset and risk model in force (``sha256`` and full content) and the switches.

    The content is the ruleset's and model's own document (their formats are
    defined by the programme engine), so it is carried as JSON, not re-modelled.
    """

    ruleset: dict[str, JsonValue]
    model: dict[str, JsonValue]
    switches: list[RulesetSwitchView]


class CycleRestrictions(_View):
    """Families a cycle left out because their flags stop profiling, and those whose flags
    stop claims, by kind of flag."""

    excluded: int
    excluded_by_kind: dict[str, int]
    claims_blocked_by_kind: dict[str, int]


class CycleStats(_View):
    """What an assessment cycle counted, stored with it: families, eligibility, steps,
    statuses, restrictions, results, attestations, review impacts and seconds per phase.

    ``attestations`` only for a cycle that signed them. The keys that default to
    None were added after the first cycles (re-linked steps, carried statuses,
    restrictions, review impacts, timings), so a cycle stored before them has none.
    """

    cycle_id: int
    as_at: str
    families: int
    eligible: int
    above_unlock: int
    step_up: int
    step_down: int
    # of the steps, how many because re-linking changed the family's members
    step_up_relinked: int | None = Field(default=None, exclude_if=_absent)
    step_down_relinked: int | None = Field(default=None, exclude_if=_absent)
    ruleset: str  # "name version"
    ruleset_sha256: str
    model: str
    model_sha256: str
    statuses_carried: int | None = Field(default=None, exclude_if=_absent)
    identified: int
    restrictions: CycleRestrictions | None = Field(default=None, exclude_if=_absent)
    pending_claim: int
    attestations: int | None = Field(default=None, exclude_if=_absent)
    review: dict[str, int] | None = Field(default=None, exclude_if=_absent)  # pairs by impact
    seconds: dict[str, float] | None = Field(default=None, exclude_if=_absent)  # per phase


class CycleView(_View):
    """An assessment cycle: date, ruleset and model it used, who ran it, its counts."""

    cycle_id: int
    as_at: str
    ruleset: VersionRef
    model: VersionRef
    created_at: str | None
    created_by: str
    stats: CycleStats


class CycleList(_View):
    """Assessment cycles, newest first."""

    cycles: list[CycleView]


# --- families ------------------------------------------------------------------------------


class FamilyRow(_View):
    """A family in a cycle's page: score, rank, step, clearance and status, the
    problems it meets and the reason codes of its score."""

    family_id: str
    household_id: str
    postcode_district: str | None
    eligible: bool
    problems: int
    score: int
    rank: int
    percentile: float
    previous_score: int | None
    step: str | None
    clearance_required: int
    status: str | None
    problems_met: list[str]
    reason_codes: list[str]


class FamilyPage(_View):
    """A page of one cycle's families, highest score first (``next_offset`` None: last)."""

    cycle: CycleView
    families: list[FamilyRow]
    next_offset: int | None


class SnapshotProblem(_View):
    """One problem area of a snapshot: met, the indicators and agencies behind it."""

    met: bool
    indicators: list[str]
    data_from: list[str]
    met_by: list[str]
    no_data: bool


class EvidenceEvent(_View):
    """A dated event that met an indicator: member, agency, record ref, event type, value."""

    person_id: str
    agency_id: str
    record_ref: str
    type: str
    value: Number
    date: str


class ReasonView(_View):
    """One term of a score: reason code, points, title and the indicators behind it."""

    code: str
    points: int
    title: str
    because: list[str]


class FamilyMemberView(_View):
    """A member of a family at a snapshot: person id, age, sex, ``[agency, ref]`` records."""

    person_id: str
    age: int | None
    age_band: str | None = Field(default=None, exclude_if=_absent)  # from 25 (extract v2)
    sex: str | None
    records: list[list[str]]


class FamilySnapshot(_View):
    """A family's assessment in one cycle, with the explanation of its score.

    ``evidence`` (indicator -> dated events) is present for families that are
    eligible or above the unlock threshold; ``step_source`` when the step came
    from new data (``data``) or from re-linking (``relink``).
    """

    cycle_id: int
    eligible: bool
    problems: dict[str, SnapshotProblem]
    score: int
    rank: int
    percentile: float
    previous_score: int | None
    step: str | None
    clearance_required: int
    postcode_district: str | None
    indicators: list[str]
    no_data: list[str]
    domains: dict[str, int]
    measures: dict[str, Number]
    reasons: list[ReasonView]
    members: list[FamilyMemberView]
    evidence: dict[str, list[EvidenceEvent]] | None = Field(default=None, exclude_if=_absent)
    step_source: str | None = Field(default=None, exclude_if=_absent)


class Lineage(_View):
    """What re-linking has made of a family id: its state and the ids it lives on as."""

    state: IdState
    current: list[str]


class StatusChangeView(_View):
    """One status change of a family: from, to, when, by whom and why."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str | None = Field(alias="from")
    to: str
    at: str | None
    by: str
    reason: str


class ScorePoint(_View):
    """A family's score in one cycle."""

    cycle_id: int
    as_at: str
    score: int
    step: str | None


class FamilyClaimView(_View):
    """A claim made for a family (the full record, with evidence, is in ``/claims``)."""

    claim_id: int
    kind: str
    result: str | None
    window_id: str
    amount_gbp: int


class ScoreChange(_View):
    """A value at baseline and now, and the change."""

    baseline: int
    now: int
    change: int


class MeasureProgress(_View):
    """A Family Progress Data measure at baseline and now (None: no data)."""

    category: str
    title: str
    baseline: Number | None
    now: Number | None


class FamilyProgress(_View):
    """Distance travelled since the baseline: score, problem domains and progress measures."""

    baseline_cycle: int
    latest_cycle: int
    score: ScoreChange
    domains: dict[str, ScoreChange]
    family_progress_data: dict[str, MeasureProgress]


class FamilyView(_View):
    """A family: latest snapshot, lineage, status and its history, scores, claims, progress.

    ``progress`` is present once the family is attached and its baseline cycle is held.
    """

    family_id: str
    household_id: str
    lineage: Lineage
    as_at: str
    latest: FamilySnapshot
    status: str | None
    attached_on: str | None
    baseline_cycle: int | None
    status_history: list[StatusChangeView]
    scores: list[ScorePoint]
    claims: list[FamilyClaimView]
    progress: FamilyProgress | None = Field(default=None, exclude_if=_absent)


class UnmetOutcome(_View):
    """Why an outcome is not met: the problem (None: no problem at all), code and words."""

    problem: str | None
    reason: str
    why_not: str


class HeldSince(_View):
    """The snapshot since which a sustained condition has held at every snapshot."""

    cycle_id: int
    as_at: str


class Observation(_View):
    """A condition's measure at one snapshot since the baseline, and whether it held there.

    ``fall_pct`` is set for a percentage-fall condition only (None there: no value
    to fall to), so it is written only when set (``exclude_unset``).
    """

    cycle_id: int
    as_at: str
    value: Number | None
    fall_pct: Number | None = None
    held: bool | None = Field(default=None, exclude_if=_absent)  # claims before Dec 2026: none


class ConditionOutcome(_View):
    """One condition of an outcome rule evaluated: the rule, the baseline value, the values
    since (``snapshots``), the dates it needs, and for a condition not met its reason code
    (``TOO_SOON``, ``NOT_SUSTAINED``, ``BASELINE_MISSING`` ...) and why, in words.

    Claims made before outcome rules were stated in calendar months (December
    2026) carry no months, ``missing_as_zero``, baseline cycle, reason code or dates.
    """

    measure: str
    compare: Literal["value", "baseline", "fall_pct"]
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: Number
    sustained_months: int | None = Field(default=None, exclude_if=_absent)
    months_since_attachment: int | None = Field(default=None, exclude_if=_absent)
    missing_as_zero: bool | None = Field(default=None, exclude_if=_absent)
    baseline: Number | None
    baseline_cycle: int | None = Field(default=None, exclude_if=_absent)
    met: bool
    reason: str | None = Field(default=None, exclude_if=_absent)
    why_not: str | None = Field(default=None, exclude_if=_absent)
    snapshots: list[Observation] | None = Field(default=None, exclude_if=_absent)
    due_on: str | None = Field(default=None, exclude_if=_absent)
    held_since: HeldSince | None = Field(default=None, exclude_if=_absent)
    sustained_until: str | None = Field(default=None, exclude_if=_absent)


class OutcomeEvaluation(_View):
    """An outcome rule against the snapshots since baseline: met when every condition is;
    when not, the first unmet condition's reason code and why."""

    title: str
    met: bool
    conditions: list[ConditionOutcome]
    reason: str | None = Field(default=None, exclude_if=_absent)
    why_not: str | None = Field(default=None, exclude_if=_absent)


class ProblemOutcome(_View):
    """One problem's outcome evaluation, and where the problem was first identified: the
    cycle, the indicators met, the agencies whose events met them, and those events.

    A problem the ruleset has no outcome rule for has no title or conditions, only
    ``met`` False and its reason (``NO_OUTCOME_RULE``).
    """

    title: str | None = Field(default=None, exclude_if=_absent)
    met: bool
    conditions: list[ConditionOutcome] | None = Field(default=None, exclude_if=_absent)
    reason: str | None = Field(default=None, exclude_if=_absent)
    why_not: str | None = Field(default=None, exclude_if=_absent)
    identified_cycle: int
    identified_as_at: str
    indicators: list[str]
    source_agencies: list[str]
    events: list[EvidenceEvent]


class FamilyOutcomes(_View):
    """An attached family's outcome plan evaluated against its snapshots since baseline.

    ``problems`` maps each problem the family had (at baseline or since) to its
    evaluation; ``employment`` is the continuous-employment result's (None: the
    ruleset has none). Without a result, ``unmet`` says for each problem not met
    (and the employment result) the reason code and why. A results claim's
    evidence is this evaluation as it stood; claims made before December 2026
    have no ``unmet`` or ``as_at``.
    """

    problems: dict[str, ProblemOutcome]
    employment: OutcomeEvaluation | None
    result: Literal["progress", "employment"] | None
    unmet: list[UnmetOutcome] | None = Field(default=None, exclude_if=_absent)
    baseline_cycle: int
    latest_cycle: int
    as_at: str | None = Field(default=None, exclude_if=_absent)


class AttachmentEvidence(_View):
    """An attachment claim's evidence: when the family was attached and its baseline cycle."""

    attached_on: str
    baseline_cycle: int


# --- claims and restrictions --------------------------------------------------------------


class ClaimView(_View):
    """A payment-by-results claim with the evidence it was made on."""

    claim_id: int
    family_id: str
    kind: str
    result: str | None
    window_id: str
    cycle_id: int
    amount_gbp: int
    created_at: str | None
    created_by: str
    evidence: AttachmentEvidence | FamilyOutcomes  # a results claim: the outcomes as they stood


class ClaimList(_View):
    """Claims (of one window, or all), oldest first."""

    claims: list[ClaimView]


class RestrictionRuleView(_View):
    """What one kind of opt-out / restriction flag stops."""

    profiling: bool
    claims: bool
    release: bool


class RestrictionView(_View):
    """A flag in force: family, kind, number of persons it follows, who set it, what it stops."""

    family_id: str
    kind: str
    persons: int
    set_at: str | None
    set_by: str
    stops: list[str]


class RestrictionList(_View):
    """The configured flag kinds and every flag in force."""

    rules: dict[str, RestrictionRuleView]
    restrictions: list[RestrictionView]


# --- answers to changes ------------------------------------------------------------------


class StatusView(_View):
    """A family's status after a change: status, attachment date, baseline, who changed it."""

    family_id: str
    status: str
    attached_on: str | None
    baseline_cycle: int | None
    updated_by: str


class LeadProfessionalView(_View):
    """A family's lead professional after a change (a code, never a name; None: cleared)."""

    family_id: str
    lead_professional: str | None


class RestrictionSet(_View):
    """A flag just set: family, kind, number of persons it follows, what it stops."""

    family_id: str
    kind: str
    persons: int
    stops: list[str]


class RestrictionLifted(_View):
    """A flag just lifted: the family and the kind it carried."""

    family_id: str
    lifted: str


class RulesetSwitched(_View):
    """A switch of the active ruleset just recorded: to, from, when, by whom and why."""

    ruleset: VersionRef
    previous: VersionRef
    switched_at: str
    switched_by: str
    reason: str


class ClaimBatch(_View):
    """A claim batch just made: its window and cycle, counts, total and families held back."""

    window_id: str
    cycle_id: int
    attachment_claims: int
    result_claims: int
    progress: int
    employment: int
    amount_gbp: int
    restricted: int
