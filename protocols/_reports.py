"""The programme reports as wire models: one model per report, its own fields and its rows.

``GET /reports/{name}`` answers one of these (:data:`Report`, a union tagged
by ``report``), and ``linkage-service report NAME`` prints the same JSON. Each
report is ``{"report": tag, "cycle": ReportCycle, ...its own fields...,
"rows": [row, ...]}``; the row model's fields, in order, are the columns of
the report's table and of its CSV export. Field names, nesting and order are
exactly the JSON the service answered before these models existed.

The tag (``report``) is the report's own name, with underscores
(``work_list``); the URL and CLI name has hyphens (``work-list``). A row field
with a default (only ``WorkListRow.problem_points``) is a column that the
report fills in some cases only and leaves out of the JSON otherwise (the
service serialises with ``exclude_unset``). A count is ``int``; a figure that
the service takes as given (a parameter, a measured value) is ``int | float``,
an int staying an int in the JSON.

Must never: import anything but pydantic and the standard library, or hold a
field for anything that names a person (reports carry pseudonymous ids only).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from ._views import Number, VersionRef

__all__ = [
    "BreakdownRow",
    "BreakdownsReport",
    "CostAvoidanceParameters",
    "CostAvoidanceReport",
    "CostAvoidanceRow",
    "CoverageReport",
    "CoverageRow",
    "CuspCounts",
    "CuspParameters",
    "CuspReport",
    "CuspRow",
    "CuspThresholds",
    "DistanceTravelledReport",
    "DistanceTravelledRow",
    "ForecastParameters",
    "ForecastReport",
    "ForecastRow",
    "ForecastWindow",
    "LongestReport",
    "LongestRow",
    "NeedsReport",
    "NeedsRow",
    "OutcomeByAgency",
    "OutcomesReport",
    "OutcomesRow",
    "PreviouslyWorkedReport",
    "PreviouslyWorkedRow",
    "ProgressDataReport",
    "ProgressDataRow",
    "Report",
    "ReportCardReport",
    "ReportCardRow",
    "ReportCycle",
    "ReportView",
    "ScoresReport",
    "ScoresRow",
    "SocialCareCounts",
    "SocialCareIndicators",
    "SocialCareReport",
    "SocialCareRow",
    "StatusCounts",
    "StatusReport",
    "StatusRow",
    "StepThresholds",
    "StepsReport",
    "StepsRow",
    "WorkListReport",
    "WorkListRow",
]

Result = Literal["progress", "employment"]
Dimension = Literal["area", "age_band", "lead_professional", "status"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportCycle(_Wire):
    """The cycle a report was computed from, with the ruleset and model it used."""

    id: int
    as_at: str
    ruleset: VersionRef
    model: VersionRef


# --- counts by status and district --------------------------------------------------------


class StatusCounts(_Wire):
    """Families per status (each programme status, then not eligible and no status)."""

    identified: int
    attached: int
    in_progress: int
    pending_claim: int
    claimed: int
    closed: int
    not_eligible: int
    no_status: int
    total: int


class StatusRow(_Wire):
    """One postcode district: its families per status."""

    district: str
    identified: int
    attached: int
    in_progress: int
    pending_claim: int
    claimed: int
    closed: int
    not_eligible: int
    no_status: int
    total: int


class StatusReport(_Wire):
    """``status``: the cycle's families by status, in total and per postcode district.

    ``not_in_cycle``: families with a status whose household is not in this cycle.
    """

    report: Literal["status"]
    cycle: ReportCycle
    totals: StatusCounts
    not_in_cycle: int
    rows: list[StatusRow]


# --- needs ---------------------------------------------------------------------------------


class NeedsRow(_Wire):
    """Eligible families meeting one problem (``problem``), or exactly one set (``combination``).

    ``problems`` is the problem id, or the combination's ids joined with ``+``;
    ``title`` is the problem's title (empty for a combination).
    """

    kind: Literal["problem", "combination"]
    problems: str
    n_problems: int
    families: int
    title: str


class NeedsReport(_Wire):
    """``needs``: eligible families per problem and per combination of problems met."""

    report: Literal["needs"]
    cycle: ReportCycle
    eligible: int
    by_number_of_problems: dict[str, int]
    rows: list[NeedsRow]


class CoverageRow(_Wire):
    """One problem over every family: with it, with data but not it, no data.

    ``agencies``: per agency, the families it holds source records of the problem for.
    """

    problem: str
    families: int
    with_problem: int
    data_no_problem: int
    no_data: int
    no_data_share: float
    agencies: dict[str, int]
    title: str


class CoverageReport(_Wire):
    """``coverage``: "no data or no problem?", per problem."""

    report: Literal["coverage"]
    cycle: ReportCycle
    families: int
    rows: list[CoverageRow]


class SocialCareIndicators(_Wire):
    """The indicator ids the social care report read."""

    child_protection: str
    child_in_need: str


class SocialCareCounts(_Wire):
    """Eligible families open to social care: on a plan, child in need only, both."""

    eligible: int
    open_to_social_care: int
    child_protection: int
    child_in_need_only: int
    both: int


class SocialCareRow(_Wire):
    """One postcode district's eligible families open to social care."""

    district: str
    eligible: int
    open_to_social_care: int
    child_protection: int
    child_in_need_only: int
    both: int


class SocialCareReport(_Wire):
    """``social_care``: eligible families on a protection plan, or child in need only."""

    report: Literal["social_care"]
    cycle: ReportCycle
    indicators: SocialCareIndicators
    totals: SocialCareCounts
    rows: list[SocialCareRow]


# --- outcomes and claims -------------------------------------------------------------------


class OutcomesRow(_Wire):
    """One problem: attached families that had it, how many meet its outcome now, the rate,
    and the result claims whose evidence shows it met (``rate`` None: none had it)."""

    problem: str
    attached_with_problem: int
    outcome_met: int
    rate: float | None
    result_claims_showing_outcome: int
    title: str


class OutcomeByAgency(_Wire):
    """One problem as identified by one agency's records: families and outcomes met."""

    problem: str
    agency_id: str
    attached_with_problem: int
    outcome_met: int
    rate: float


class OutcomesReport(_Wire):
    """``outcomes``: outcomes achieved most and least, per problem (rows by rate, highest first)."""

    report: Literal["outcomes"]
    cycle: ReportCycle
    attached_families: int
    employment_met: int
    by_agency: list[OutcomeByAgency]
    result_claims: dict[str, int]
    most: list[str]
    least: list[str]
    rows: list[OutcomesRow]


class CostAvoidanceParameters(_Wire):
    """The figures the cost avoidance estimate was computed with (GBP, years)."""

    average_gbp: int
    multiple_needs_gbp: int
    multiple_needs_from: int
    years: Number
    intervention_gbp: int
    saving_per_family_year_gbp: int


class CostAvoidanceRow(_Wire):
    """One result: families counted, saving per family-year, and gross and net GBP."""

    result: Result
    families: int
    gbp_per_family_year: int
    years: Number
    gross_gbp: int
    intervention_gbp: int
    net_gbp: int


class CostAvoidanceReport(_Wire):
    """``cost_avoidance``: public spend avoided by families turned around (an upper bound).

    ``total_gbp`` is net of intervention; ``assumption`` says the method in words.
    """

    report: Literal["cost_avoidance"]
    cycle: ReportCycle
    assumption: str
    parameters: CostAvoidanceParameters
    families: int
    not_counted: int
    gross_gbp: int
    total_gbp: int
    claimed_income_gbp: int
    rows: list[CostAvoidanceRow]


# --- family lists --------------------------------------------------------------------------


class ScoresRow(_Wire):
    """One score: eligible families with it, and whether it reaches the unlock threshold."""

    score: int
    families: int
    at_or_above_unlock: bool


class ScoresReport(_Wire):
    """``scores``: eligible families per score, lowest first, and per postcode district."""

    report: Literal["scores"]
    cycle: ReportCycle
    by_district: dict[str, int]
    eligible: int
    unlock_threshold: int
    at_or_above_unlock: int
    rows: list[ScoresRow]


class WorkListRow(_Wire):
    """One eligible family to work with: position, score, problems, top reasons, status.

    ``problem_points`` (the points of the reasons touching the report's
    ``problem``) is there only when the report was asked for one problem.
    """

    position: int
    family_id: str
    score: int
    rank: int
    percentile: float
    problem_points: int | None = None
    n_problems: int
    problems: list[str]
    top_reasons: list[str]
    step: str
    status: str
    district: str


class WorkListReport(_Wire):
    """``work_list``: eligible families, highest score (or problem points) first.

    ``eligible``: how many there were before ``limit`` cut the list.
    """

    report: Literal["work_list"]
    cycle: ReportCycle
    problem: str | None
    eligible: int
    rows: list[WorkListRow]


class LongestRow(_Wire):
    """One eligible family by the sum of its domain scores; ``domains``: those above 1."""

    position: int
    family_id: str
    domain_total: int
    n_problems: int
    domains: dict[str, int]
    score: int
    status: str
    district: str


class LongestReport(_Wire):
    """``longest``: eligible families likely to take longest to turn around."""

    report: Literal["longest"]
    cycle: ReportCycle
    rows: list[LongestRow]


class PreviouslyWorkedRow(_Wire):
    """One eligible family whose status history reached claimed or closed before."""

    family_id: str
    status: str
    earlier_statuses: list[str]
    last_ended: str
    attached_before: bool
    claimed_before: bool
    result_claims: int
    score: int
    n_problems: int
    district: str


class PreviouslyWorkedReport(_Wire):
    """``previously_worked``: eligible families already worked with in an earlier episode."""

    report: Literal["previously_worked"]
    cycle: ReportCycle
    rows: list[PreviouslyWorkedRow]


class StepThresholds(_Wire):
    """The risk model's score changes that make a step up or a step down."""

    step_up: int
    step_down: int


class StepsRow(_Wire):
    """One family whose score rose (``up``) or fell (``down``) past the model's deltas."""

    step: Literal["up", "down"]
    family_id: str
    previous_score: int | None
    score: int
    change: int
    eligible: bool
    top_reasons: list[str]
    status: str
    district: str


class StepsReport(_Wire):
    """``steps``: step-up families, then step-down, largest change first."""

    report: Literal["steps"]
    cycle: ReportCycle
    thresholds: StepThresholds
    step_up: int
    step_down: int
    rows: list[StepsRow]


# --- the returns councils file -------------------------------------------------------------


class ProgressDataRow(_Wire):
    """One Family Progress Data measure: families reporting it and with an issue at baseline
    and now, totals, and improved / unchanged / worsened / cleared / new."""

    measure: str
    category: str
    title: str
    families: int
    baseline_reported: int
    baseline_with_issue: int
    now_reported: int
    now_with_issue: int
    baseline_total: float
    now_total: float
    improved: int
    unchanged: int
    worsened: int
    cleared: int
    new: int


class ProgressDataReport(_Wire):
    """``progress_data``: the Family Progress Data cohort return (``cohort`` None: every one)."""

    report: Literal["progress_data"]
    cycle: ReportCycle
    cohort: str | None
    families: int
    measures: int
    rows: list[ProgressDataRow]


class DistanceTravelledRow(_Wire):
    """One problem's 1 (none) .. 5 (critical) domain score over the cohort, baseline and now.

    ``baseline_scores`` and ``now_scores``: families per score, keys ``"1"`` to ``"5"``.
    """

    problem: str
    families: int
    baseline_mean: float | None
    now_mean: float | None
    change: float | None
    improved: int
    unchanged: int
    worsened: int
    baseline_scores: dict[str, int]
    now_scores: dict[str, int]
    title: str


class DistanceTravelledReport(_Wire):
    """``distance_travelled``: the cohort's distance travelled per problem."""

    report: Literal["distance_travelled"]
    cycle: ReportCycle
    cohort: str | None
    families: int
    mean_baseline: float | None
    mean_now: float | None
    rows: list[DistanceTravelledRow]


class BreakdownRow(_Wire):
    """One group of one dimension: families, eligible, attached, open, claims, mean figures."""

    dimension: Dimension
    group: str
    families: int
    eligible: int
    attached: int
    open: int
    pending_claim: int
    claimed: int
    closed: int
    mean_score: float | None
    result_claims: int
    mean_domain_change: float | None


class BreakdownsReport(_Wire):
    """``breakdowns``: the programme's families by area, age band, lead professional, status."""

    report: Literal["breakdowns"]
    cycle: ReportCycle
    by: Dimension | None
    dimensions: list[Dimension]
    rows: list[BreakdownRow]


class ReportCardRow(_Wire):
    """One cohort (quarter of attachment): statuses, claims, results and mean figures."""

    cohort: str
    families: int
    attached: int
    in_progress: int
    pending_claim: int
    claimed: int
    closed: int
    attachment_claims: int
    result_claims: int
    progress: int
    employment: int
    claimed_income_gbp: int
    with_result: int
    result_rate: float
    domain_mean_baseline: float | None
    domain_mean_now: float | None
    fpd_issues_at_baseline: int
    fpd_improved_or_cleared: int
    fpd_improved_share: float | None


class ReportCardReport(_Wire):
    """``report_card``: a report card per cohort."""

    report: Literal["report_card"]
    cycle: ReportCycle
    cohorts: int
    families: int
    rows: list[ReportCardRow]


class ForecastParameters(_Wire):
    """The review cadence and horizon the forecast projected over."""

    cadence_days: int
    horizon_cycles: int


class ForecastWindow(_Wire):
    """One claim window: the claims forecast to fall in it and their amount."""

    window_id: str
    attachment_claims: int
    result_claims: int
    progress: int
    employment: int
    amount_gbp: int


class ForecastRow(_Wire):
    """One attached family without a results claim: its forecast result, date and window
    (None when not on track), and the problems still unmet at the horizon."""

    family_id: str
    cohort: str
    status: str
    forecast: Literal["progress", "employment", "not_on_track"]
    forecast_as_at: str | None
    claim_window: str | None
    cycles_ahead: int | None
    unmet: list[str]
    lead_professional: str


class ForecastReport(_Wire):
    """``forecast``: results and claim windows if every family's latest values hold."""

    report: Literal["forecast"]
    cycle: ReportCycle
    parameters: ForecastParameters
    assumption: str
    by_window: list[ForecastWindow]
    on_track: int
    not_on_track: int
    rows: list[ForecastRow]


class CuspParameters(_Wire):
    """The margins below a threshold that count as on the cusp."""

    unlock_margin: int
    margin_pct: Number


class CuspThresholds(_Wire):
    """The unlock threshold and the eligibility minimum of problems."""

    unlock: int
    min_problems: int


class CuspCounts(_Wire):
    """Rows per kind of threshold."""

    unlock: int
    eligibility: int
    indicator: int


class CuspRow(_Wire):
    """One family just below one threshold: which (``kind``, ``what``), its value, the gap."""

    family_id: str
    score: int
    n_problems: int
    kind: Literal["unlock", "eligibility", "indicator"]
    what: str
    value: Number
    threshold: Number
    gap: float
    status: str
    district: str


class CuspReport(_Wire):
    """``cusp``: families just below the unlock, eligibility or an indicator's threshold."""

    report: Literal["cusp"]
    cycle: ReportCycle
    parameters: CuspParameters
    thresholds: CuspThresholds
    families: int
    by_kind: CuspCounts
    rows: list[CuspRow]


Report = Annotated[
    StatusReport
    | NeedsReport
    | CoverageReport
    | SocialCareReport
    | OutcomesReport
    | CostAvoidanceReport
    | ScoresReport
    | WorkListReport
    | LongestReport
    | PreviouslyWorkedReport
    | StepsReport
    | ProgressDataReport
    | DistanceTravelledReport
    | BreakdownsReport
    | ReportCardReport
    | ForecastReport
    | CuspReport,
    Field(discriminator="report"),
]


class ReportView(RootModel[Report]):
    """A programme report, any of them: the model named by its ``report`` tag."""

    model_config = ConfigDict(frozen=True)
