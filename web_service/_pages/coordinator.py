"""Coordinator pages: the work list of families with filters, a family's page
with its score explained, its timeline and distance travelled and the status
form, claim windows, the programme's reports and returns (with CSV download),
the clerical review queue with decision forms, and charts.

Every call goes to the linkage service with the signed-in coordinator's own
token, so the pages can do nothing the coordinator could not do with the CLI.
Filter and form values are checked here first, so a typo gets a GOV.UK error
summary pointing at the field rather than a service error.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from .. import _charts as charts
from .._app import CsrfChecked, render
from .._backends import Backend
from .._errors import BackendError
from .._sessions import Session
from ._common import CoordinatorSession, backend

__all__ = ["REPORTS", "TRANSITIONS", "router"]

router = APIRouter()
PAGE = 50
REVIEW_PAGE = 20
DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")
REASON = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
WINDOW = re.compile(r"^[0-9]{4}-[A-Z][0-9]{1,2}$")
COHORT = re.compile(r"^[0-9]{4}-Q[1-4]$")
FamilyId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
RecordId = Annotated[int, Path(ge=1, le=2**63 - 1)]
STATUSES = ("identified", "attached", "in_progress", "pending_claim", "claimed", "closed")
# The moves the linkage service allows (linkage_service.programme TRANSITIONS; a
# test keeps the two equal). Claimed is reached only through a claim batch.
TRANSITIONS: dict[str | None, tuple[str, ...]] = {
    None: ("identified", "attached"),
    "identified": ("attached", "closed"),
    "attached": ("in_progress", "pending_claim", "closed"),
    "in_progress": ("pending_claim", "closed"),
    "pending_claim": ("in_progress", "claimed", "closed"),
    "claimed": ("closed",),
    "closed": ("identified", "attached"),
}
STATUS_REASONS = {
    "attached": "WORK_STARTED",
    "in_progress": "WORK_UNDER_WAY",
    "pending_claim": "OUTCOMES_MET",
    "closed": "CASE_CLOSED",
    "identified": "IDENTIFIED_AGAIN",
}
STATUS_TAGS = {
    "identified": "govuk-tag--blue",
    "attached": "govuk-tag--purple",
    "in_progress": "govuk-tag--turquoise",
    "pending_claim": "govuk-tag--yellow",
    "claimed": "govuk-tag--green",
    "closed": "govuk-tag--grey",
}
DECISIONS_PAGE = 50  # decisions in force a page
# what a decision in force does now (protocols ReviewEffect)
DECISION_EFFECTS = {
    "merged": "Applied: the two records are one person",
    "apart": "Applied: the two records are kept apart",
    "pending": "Waiting for the next link run",
    "superseded": "Replaced by a later decision",
}
REVIEW_REASONS = {
    "match": ("SAME_PERSON", "DATE_TYPO", "NAME_VARIANT", "MOVED_ADDRESS"),
    "non_match": ("DIFFERENT_PERSON", "RELATIVE", "TWIN", "SHARED_ADDRESS"),
}


@dataclass(frozen=True)
class Report:
    """A report the linkage service computes, and the parameters its page offers."""

    title: str
    question: str
    params: tuple[str, ...] = ()


REPORTS: dict[str, Report] = {
    "status": Report("Families by status and area", "How many families are at each status, where?"),
    "needs": Report("Breakdown of needs", "Which problems, and which combinations of them?"),
    "coverage": Report("No data or no problem", "Few families in a need area: no data, or none?"),
    "social-care": Report("Open to social care", "Eligible families on a plan or in need, by area"),
    "outcomes": Report("Outcomes achieved", "Which outcomes do we achieve most, and least?"),
    "work-list": Report("Work list", "Which families to work with first?", ("problem",)),
    "scores": Report("Score distribution", "How are eligible families' scores spread?"),
    "longest": Report("Longest to turn around", "Which families will take longest?"),
    "previously-worked": Report("Previously worked", "Who was worked with in an earlier episode?"),
    "steps": Report("Step up and step down", "Whose risk is rising, whose falling?"),
    "cost-avoidance": Report("Cost avoided", "What could results have saved (an upper bound)?"),
    "progress-data": Report("Family Progress Data return", "The FPD cohort return", ("cohort",)),
    "distance-travelled": Report(
        "Distance travelled", "Problem domain scores at baseline and now", ("cohort",)
    ),
    "breakdowns": Report("Breakdowns", "Families by area, age band, lead professional", ("by",)),
    "report-card": Report("Report card per cohort", "Each attachment quarter's results"),
    "forecast": Report("Results forecast", "Which families are on track, for which window?"),
    "cusp": Report("On the cusp", "Families just short of a threshold"),
}
BREAKDOWNS = ("area", "age_band", "lead_professional", "status")


# --- what the pages share ------------------------------------------------------------


def _linkage(request: Request) -> Backend:
    return backend(request, "linkage")


def _programme(request: Request, session: Session) -> dict[str, Any]:
    """The ruleset and model in force (problem titles, thresholds, combinations)."""
    found: dict[str, Any] = _linkage(request).get_json("/programme", session.user.credential)
    return found


@dataclass(frozen=True)
class Band:
    """A score band: its name, the range it covers and how it is shown."""

    key: str
    label: str
    low: int
    high: int | None
    tag: str


def bands(unlock: int) -> list[Band]:
    """High (at or above the unlock threshold), medium (from half of it), low."""
    half = unlock // 2
    return [
        Band("high", f"High: {unlock} or more", unlock, None, "govuk-tag--red"),
        Band("medium", f"Medium: {half} to {unlock - 1}", half, unlock - 1, "govuk-tag--orange"),
        Band("low", f"Low: under {half}", 0, half - 1, "govuk-tag--green"),
    ]


def band_of(score: int, all_bands: list[Band]) -> Band:
    """The band a score falls in."""
    for b in all_bands:
        if score >= b.low and (b.high is None or score <= b.high):
            return b
    return all_bands[-1]


def _titles(programme: Mapping[str, Any]) -> dict[str, str]:
    problems: dict[str, Any] = programme["ruleset"]["problems"]
    return {pid: str(p["title"]) for pid, p in problems.items()}


def _csv(answer: Any, filename: str) -> Response:
    return Response(
        answer.content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- the work list ---------------------------------------------------------------------


@dataclass(frozen=True)
class FamilyFilters:
    """The work list's filters as the form sent them, and any errors found."""

    area: str
    problem: str
    status: str
    band: str
    eligible: str
    offset: int
    errors: dict[str, str]

    def query(self, **change: Any) -> str:
        """This filter set as a query string (for paging links)."""
        from urllib.parse import urlencode

        values = {
            "area": self.area,
            "problem": self.problem,
            "status": self.status,
            "band": self.band,
            "eligible": self.eligible,
            "offset": self.offset,
        }
        values.update(change)
        return urlencode({k: v for k, v in values.items() if v not in ("", None, 0)})


def parse_filters(
    area: str,
    problem: str,
    status: str,
    band: str,
    eligible: str,
    offset: str,
    problems: Mapping[str, str],
) -> FamilyFilters:
    """Check the work list's filters; each error names the field and what is expected."""
    errors: dict[str, str] = {}
    area = area.strip().upper().replace(" ", "")
    if area and not DISTRICT.match(area):
        errors["area"] = "Enter a postcode district like M15 or LS16 (the first half of a postcode)"
    if problem and problem not in problems:
        errors["problem"] = "Choose a problem from the list"
    if status and status not in STATUSES:
        errors["status"] = "Choose a status from the list"
    if band and band not in ("high", "medium", "low"):
        errors["band"] = "Choose a score band from the list"
    if eligible not in ("yes", "all"):
        errors["eligible"] = "Choose eligible families or all families"
    start = 0
    if offset:
        if not offset.isdigit() or len(offset) > 9:
            errors["offset"] = "The page number in the address is not a whole number"
        else:
            start = int(offset)
    return FamilyFilters(area, problem, status, band, eligible, start, errors)


@router.get("/families", response_class=HTMLResponse)
def families(
    request: Request,
    session: CoordinatorSession,
    area: str = "",
    problem: str = "",
    status: str = "",
    band: str = "",
    eligible: str = "yes",
    offset: str = "",
) -> HTMLResponse:
    """The latest cycle's families, highest score first, filtered."""
    programme = _programme(request, session)
    titles = _titles(programme)
    combinations: dict[str, Any] = programme["model"].get("combinations", {})
    all_bands = bands(int(programme["model"]["thresholds"]["unlock"]))
    filters = parse_filters(area, problem, status, band, eligible, offset, titles)
    answer: dict[str, Any] = {}
    if not filters.errors:
        chosen = next((b for b in all_bands if b.key == filters.band), None)
        answer = _linkage(request).get_json(
            "/families",
            session.user.credential,
            eligible="true" if filters.eligible == "yes" else None,
            status=filters.status,
            district=filters.area,
            problem=filters.problem,
            min_score=chosen.low if chosen else None,
            max_score=chosen.high if chosen else None,
            offset=filters.offset,
            limit=PAGE,
        )
    rows = [
        {
            **f,
            "band": band_of(int(f["score"]), all_bands),
            "critical": [
                str(combinations[c].get("title", c))
                for c in f.get("reason_codes", [])
                if c in combinations
            ],
        }
        for f in answer.get("families", [])
    ]
    return render(
        request,
        "coordinator/families.html",
        400 if filters.errors else 200,
        title="Families",
        cycle=answer.get("cycle"),
        families=rows,
        next_offset=answer.get("next_offset"),
        filters=filters,
        problems=titles,
        statuses=STATUSES,
        status_tags=STATUS_TAGS,
        bands=all_bands,
        errors=filters.errors,
    )


# --- a family --------------------------------------------------------------------------


def _family_context(request: Request, session: Session, family_id: str) -> dict[str, Any]:
    linkage = _linkage(request)
    token = session.user.credential
    view: dict[str, Any] = linkage.get_json(f"/families/{family_id}", token)
    programme = _programme(request, session)
    titles = _titles(programme)
    model = programme["model"]
    unlock = int(model["thresholds"]["unlock"])
    outcomes: dict[str, Any] | None = None
    if view.get("baseline_cycle") is not None:
        try:
            outcomes = linkage.get_json(f"/families/{family_id}/outcomes", token)
        except BackendError as exc:
            if exc.status not in (404, 409):
                raise
    latest = view["latest"]
    combos = model.get("combinations", {})
    reasons = [{**r, "critical": r["code"] in combos} for r in latest.get("reasons", [])]
    baseline_cycle = view.get("baseline_cycle")
    scores = view.get("scores", [])
    baseline_score = next((s["score"] for s in scores if s["cycle_id"] == baseline_cycle), None)
    timeline = [(f"{s['as_at']} (cycle {s['cycle_id']})", float(s["score"])) for s in scores]
    progress = view.get("progress")
    domain_rows = []
    if progress:
        domain_rows = [
            (titles.get(p, p), float(v["change"])) for p, v in progress["domains"].items()
        ]
    return {
        "title": f"Family {family_id}",
        "family": view,
        "latest": latest,
        "reasons": reasons,
        "problems": titles,
        "outcomes": outcomes,
        "band": band_of(int(latest["score"]), bands(unlock)),
        "unlock": unlock,
        "status_tags": STATUS_TAGS,
        "next_statuses": [s for s in TRANSITIONS.get(view.get("status")) or () if s != "claimed"],
        "status_reasons": STATUS_REASONS,
        "baseline_score": baseline_score,
        "timeline_chart": charts.line_chart(
            "Score at each assessment cycle",
            {"Score": timeline},
            reference=baseline_score if baseline_score is not None else float(unlock),
            reference_label="baseline" if baseline_score is not None else "unlock threshold",
        ),
        "distance_chart": charts.bar_chart(
            "Change in each problem domain since the baseline (negative is better)",
            domain_rows,
            colour=charts.PURPLE,
        )
        if domain_rows
        else None,
    }


@router.get("/families/{family_id}", response_class=HTMLResponse)
def family(request: Request, session: CoordinatorSession, family_id: FamilyId) -> HTMLResponse:
    """A family: its score explained, problems with evidence, timeline, status, outcomes."""
    context = _family_context(request, session, family_id)
    return render(request, "coordinator/family.html", errors={}, form={}, **context)


@router.post("/families/{family_id}/status", response_class=HTMLResponse)
def change_status(
    request: Request,
    session: CoordinatorSession,
    _csrf: CsrfChecked,
    family_id: FamilyId,
    status: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=64)] = "",
    on: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Move the family to a new status (attaching fixes its baseline)."""
    errors: dict[str, str] = {}
    reason = reason.strip().upper()
    if status not in STATUSES or status == "claimed":
        errors["status"] = "Choose the new status"
    if not REASON.match(reason):
        errors["reason"] = (
            "Enter a reason code of 2 to 32 capital letters, digits or underscores, "
            "starting with a letter, like WORK_STARTED"
        )
    day: dt.date | None = None
    if on.strip():
        try:
            day = dt.date.fromisoformat(on.strip())
        except ValueError:
            errors["on"] = "Enter the date as YYYY-MM-DD, like 2026-11-01"
    if not errors:
        body: dict[str, Any] = {"status": status, "reason": reason}
        if day is not None:
            body["on"] = day.isoformat()
        try:
            _linkage(request).post_json(
                f"/families/{family_id}/status", session.user.credential, body
            )
        except BackendError as exc:
            # refused for this family (a date out of range, a move not allowed now):
            # said beside the form, which keeps what was entered
            if exc.status not in (409, 422) or not isinstance(exc.detail, str):
                raise
            errors["on" if exc.field == "on" else "status"] = exc.detail
    if errors:
        context = _family_context(request, session, family_id)
        form = {"status": status, "reason": reason, "on": on}
        return render(request, "coordinator/family.html", 400, errors=errors, form=form, **context)
    session.flash.append(f"Family {family_id} is now {status.replace('_', ' ')}.")
    return RedirectResponse(f"/families/{family_id}", status_code=303)


# --- claims ----------------------------------------------------------------------------


@router.get("/claims", response_class=HTMLResponse)
def claims(request: Request, session: CoordinatorSession, window_id: str = "") -> HTMLResponse:
    """Claim windows, and the claims with their evidence (of one window, or all)."""
    errors: dict[str, str] = {}
    if window_id and not WINDOW.match(window_id):
        errors["window_id"] = "Enter a claim window like 2026-H2"
    linkage = _linkage(request)
    every: list[dict[str, Any]] = linkage.get_json("/claims", session.user.credential)["claims"]
    windows: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for c in every:
        w = windows[c["window_id"]]
        w["claims"] += 1
        w[c["kind"]] += 1
        w["amount_gbp"] += c["amount_gbp"]
    shown = [c for c in every if not window_id or c["window_id"] == window_id]
    order = sorted(windows)
    return render(
        request,
        "coordinator/claims.html",
        400 if errors else 200,
        title="Claims",
        errors=errors,
        window_id=window_id,
        windows=[(w, windows[w]) for w in order],
        claims=[] if errors else shown,
        chart=charts.bar_chart(
            "Claims per window", [(w, float(windows[w]["claims"])) for w in order]
        ),
    )


@router.post("/claims", response_class=HTMLResponse)
def make_claims(
    request: Request,
    session: CoordinatorSession,
    _csrf: CsrfChecked,
    window_id: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """A claim batch for a window: attachment fees and results with their evidence."""
    window_id = window_id.strip().upper()
    if not WINDOW.match(window_id):
        return render(
            request,
            "error.html",
            400,
            title="No claims were made",
            message=f"Enter a claim window like 2026-H2 (you entered {window_id or 'nothing'}).",
        )
    batch = _linkage(request).post_json(
        "/claims", session.user.credential, {"window_id": window_id}
    )
    session.flash.append(
        f"Claims for {window_id}: {batch['attachment_claims']} attachment, "
        f"{batch['result_claims']} result, £{batch['amount_gbp']:,} in all."
    )
    return RedirectResponse(f"/claims?window_id={window_id}", status_code=303)


@router.get("/claims/export.csv")
def claims_export(
    request: Request,
    session: CoordinatorSession,
    window_id: Annotated[str | None, Query(pattern=WINDOW.pattern)] = None,
    sample_pct: Annotated[float, Query(gt=0, le=100)] = 100.0,
) -> Response:
    """The claims with one row per evidence item, for internal audit (CSV)."""
    answer = _linkage(request).call(
        "GET",
        "/claims/export",
        session.user.credential,
        params={"window_id": window_id, "format": "csv", "sample_pct": sample_pct},
    )
    return _csv(answer, f"claims-{window_id or 'all'}.csv")


# --- reports ---------------------------------------------------------------------------


@router.get("/reports", response_class=HTMLResponse)
def reports_index(request: Request, _session: CoordinatorSession) -> HTMLResponse:
    """The reports and returns, each with the question it answers."""
    return render(request, "coordinator/reports.html", title="Reports", reports=REPORTS)


def _report_params(
    name: str, problem: str, cohort: str, by: str
) -> tuple[dict[str, str], dict[str, str]]:
    errors: dict[str, str] = {}
    params: dict[str, str] = {}
    wanted = REPORTS[name].params
    if "problem" in wanted and problem:
        if not re.match(r"^[a-z][a-z0-9_]{0,47}$", problem):
            errors["problem"] = "Choose a problem from the list"
        params["problem"] = problem
    if "cohort" in wanted and cohort:
        if not COHORT.match(cohort):
            errors["cohort"] = "Enter a cohort quarter like 2026-Q1"
        params["cohort"] = cohort
    if "by" in wanted and by:
        if by not in BREAKDOWNS:
            errors["by"] = "Choose what to break the families down by"
        params["by"] = by
    return params, errors


@router.get("/reports/{name}.csv")
def report_csv(
    request: Request,
    session: CoordinatorSession,
    name: str,
    problem: str = "",
    cohort: str = "",
    by: str = "",
) -> Response:
    """A report as CSV, with the cycle's provenance in the last columns."""
    if name not in REPORTS:
        return render(request, "error.html", 404, title="Not found", message=f"No report {name}")
    params, errors = _report_params(name, problem, cohort, by)
    if errors:
        return render(
            request,
            "error.html",
            400,
            title="Check the report's filters",
            message="; ".join(errors.values()),
        )
    answer = _linkage(request).call(
        "GET", f"/reports/{name}", session.user.credential, params={**params, "format": "csv"}
    )
    return _csv(answer, f"{name}.csv")


def _scalars(answer: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The report's own figures (not rows, not the cycle) that fit a summary list."""
    out: list[tuple[str, Any]] = []
    for key, value in answer.items():
        if key in ("report", "cycle", "rows"):
            continue
        if isinstance(value, dict):
            if all(not isinstance(v, dict | list) for v in value.values()):
                out.append((key, ", ".join(f"{k}: {v}" for k, v in value.items()) or "–"))
        elif isinstance(value, list):
            if all(not isinstance(v, dict | list) for v in value):
                out.append((key, ", ".join(str(v) for v in value) or "–"))
        else:
            out.append((key, value))
    return out


@router.get("/reports/{name}", response_class=HTMLResponse)
def report(
    request: Request,
    session: CoordinatorSession,
    name: str,
    problem: str = "",
    cohort: str = "",
    by: str = "",
) -> HTMLResponse:
    """One report as a page: its figures, its rows as a table, a CSV link."""
    if name not in REPORTS:
        return render(request, "error.html", 404, title="Not found", message=f"No report {name}")
    params, errors = _report_params(name, problem, cohort, by)
    titles = _titles(_programme(request, session)) if "problem" in REPORTS[name].params else {}
    if problem and titles and problem not in titles:
        errors["problem"] = "Choose a problem from the list"
    answer: dict[str, Any] = {}
    if not errors:
        answer = _linkage(request).get_json(f"/reports/{name}", session.user.credential, **params)
    rows: list[dict[str, Any]] = answer.get("rows", [])
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    from urllib.parse import urlencode

    return render(
        request,
        "coordinator/report.html",
        400 if errors else 200,
        title=REPORTS[name].title,
        report_name=name,
        report=REPORTS[name],
        answer=answer,
        summary=_scalars(answer),
        rows=rows,
        columns=columns,
        params=params,
        errors=errors,
        problems=titles,
        breakdowns=BREAKDOWNS,
        csv_href=f"/reports/{name}.csv" + (f"?{urlencode(params)}" if params else ""),
    )


# --- review ----------------------------------------------------------------------------


def _offset(value: str, errors: dict[str, str]) -> int:
    if not value:
        return 0
    if value.isdigit() and len(value) <= 9:
        return int(value)
    errors["offset"] = "The page number in the address is not a whole number"
    return 0


def _review_page(
    request: Request,
    session: Session,
    offset: str,
    impactful: str,
    errors: dict[str, str],
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    start = _offset(offset, errors)
    linkage = _linkage(request)
    token = session.user.credential
    summary = linkage.get_json("/review/summary", token)
    queue: dict[str, Any] = {}
    if "offset" not in errors:
        queue = linkage.get_json(
            "/review",
            token,
            offset=start,
            limit=REVIEW_PAGE,
            impactful_only="true" if impactful == "yes" else None,
        )
    return render(
        request,
        "coordinator/review.html",
        400 if errors else 200,
        title="Review",
        errors=errors,
        form=form or {},
        summary=summary,
        queue=queue,
        offset=start,
        impactful=impactful == "yes",
        reasons=REVIEW_REASONS,
        page=REVIEW_PAGE,
        chart=charts.bar_chart(
            "Review pairs by match probability",
            [
                (f"{b['low']:.1f}–{b['high']:.1f}", float(b["pairs"]))
                for b in summary.get("probability", [])
            ],
        ),
    )


@router.get("/review", response_class=HTMLResponse)
def review(
    request: Request, session: CoordinatorSession, offset: str = "", impactful: str = ""
) -> HTMLResponse:
    """The clerical review queue, pairs that would change a family first."""
    return _review_page(request, session, offset, impactful, {})


def _send_decision(
    request: Request,
    session: Session,
    records: tuple[int, int],
    decision: str,
    reason: str,
    pair: str,
    *,
    change: bool,
) -> dict[str, str]:
    """Check a decision form and send it (``change``: replacing the one in force); the
    errors to show beside the pair, keyed ``{pair}-match`` / ``{pair}-reason``, if any."""
    a, b = records
    errors: dict[str, str] = {}
    if decision not in REVIEW_REASONS:
        errors[f"{pair}-match"] = f"Choose whether records {a} and {b} are the same person"
    if not REASON.match(reason):
        errors[f"{pair}-reason"] = (
            f"Enter a reason code for {'the change on ' if change else ''}records {a} and {b}, "
            "capital letters and underscores like SAME_PERSON"
        )
    if errors:
        return errors
    body: dict[str, Any] = {"decision": decision, "reason": reason}
    if change:
        body["change"] = True
    try:
        _linkage(request).post_json(f"/review/{a}/{b}/decision", session.user.credential, body)
    except BackendError as exc:
        # decided meanwhile by a colleague, or a record retired since: beside the pair
        if exc.status not in (404, 409, 422) or not isinstance(exc.detail, str):
            raise
        later = "" if change else ". A decision in force is changed under Review decisions"
        errors[f"{pair}-match"] = f"{exc.detail}{later}."
    return errors


@router.post("/review/{record_a}/{record_b}/decision", response_class=HTMLResponse)
def decide(
    request: Request,
    session: CoordinatorSession,
    _csrf: CsrfChecked,
    record_a: RecordId,
    record_b: RecordId,
    decision: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=64)] = "",
    offset: Annotated[str, Form(max_length=12)] = "",
    impactful: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Record match / non-match on a pair, with a reason code."""
    reason = reason.strip().upper()
    pair = f"pair-{record_a}-{record_b}"
    errors = _send_decision(
        request, session, (record_a, record_b), decision, reason, pair, change=False
    )
    if errors:
        form = {"pair": pair, "decision": decision, "reason": reason}
        return _review_page(request, session, offset, impactful, errors, form)
    session.flash.append(
        f"Records {record_a} and {record_b}: "
        f"{'the same person' if decision == 'match' else 'not the same person'} ({reason})."
    )
    back = "&".join(
        part
        for part in (
            f"offset={offset}" if offset.isdigit() else "",
            "impactful=yes" if impactful == "yes" else "",
        )
        if part
    )
    return RedirectResponse("/review" + (f"?{back}" if back else ""), status_code=303)


def _decisions_page(
    request: Request,
    session: Session,
    after: str,
    errors: dict[str, str],
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    start = _offset(after, errors)
    listing: dict[str, Any] = {}
    if "offset" not in errors:
        listing = _linkage(request).get_json(
            "/review/decisions",
            session.user.credential,
            current_only="true",
            after=start,
            limit=DECISIONS_PAGE,
        )
    return render(
        request,
        "coordinator/decisions.html",
        400 if errors else 200,
        title="Review decisions",
        errors=errors,
        form=form or {},
        decisions=listing.get("decisions", []),
        next_after=listing.get("next_after"),
        after=start,
        reasons=REVIEW_REASONS,
        effects=DECISION_EFFECTS,
    )


@router.get("/review/decisions", response_class=HTMLResponse)
def review_decisions(
    request: Request, session: CoordinatorSession, after: str = ""
) -> HTMLResponse:
    """The clerical decisions in force, oldest first, each with a form to change it."""
    return _decisions_page(request, session, after, {})


@router.post("/review/{record_a}/{record_b}/change", response_class=HTMLResponse)
def change_decision(
    request: Request,
    session: CoordinatorSession,
    _csrf: CsrfChecked,
    record_a: RecordId,
    record_b: RecordId,
    decision: Annotated[str, Form(max_length=16)] = "",
    reason: Annotated[str, Form(max_length=64)] = "",
    after: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Replace the decision in force on a pair (recorded as its next version)."""
    reason = reason.strip().upper()
    pair = f"decision-{record_a}-{record_b}"
    errors = _send_decision(
        request, session, (record_a, record_b), decision, reason, pair, change=True
    )
    if errors:
        form = {"pair": pair, "decision": decision, "reason": reason}
        return _decisions_page(request, session, after, errors, form)
    session.flash.append(
        f"Records {record_a} and {record_b}: changed to "
        f"{'the same person' if decision == 'match' else 'not the same person'} ({reason}); "
        "it binds the records from the next link run."
    )
    back = f"?after={after}" if after.isdigit() else ""
    return RedirectResponse(f"/review/decisions{back}", status_code=303)


# --- charts ----------------------------------------------------------------------------


@router.get("/charts", response_class=HTMLResponse)
def charts_page(request: Request, session: CoordinatorSession) -> HTMLResponse:
    """The programme at a glance: each chart with its numbers in a table beside it."""
    linkage = _linkage(request)
    token = session.user.credential
    programme = _programme(request, session)
    titles = _titles(programme)
    unlock = int(programme["model"]["thresholds"]["unlock"])
    distribution = linkage.get_json("/reports/scores", token)
    scores = [float(r["score"]) for r in distribution["rows"] for _ in range(r["families"])]
    score_bins = charts.bins(scores, 10)
    needs = [r for r in linkage.get_json("/reports/needs", token)["rows"] if r["kind"] == "problem"]
    by_problem = [(titles.get(r["problems"], r["problems"]), float(r["families"])) for r in needs]
    by_area = [(str(d), float(n)) for d, n in distribution["by_district"].items() if n]
    claims_rows = linkage.get_json("/claims", token)["claims"]
    per_window = Counter[str](c["window_id"] for c in claims_rows)
    windows = [(w, float(per_window[w])) for w in sorted(per_window)]
    distance = linkage.get_json("/reports/distance-travelled", token)
    cohort_rows = distance.get("rows", [])
    runs = [
        r for r in linkage.get_json("/runs", token, limit=30)["runs"] if r["status"] == "applied"
    ]
    runs.reverse()
    quality = {
        "Links (record pairs joined)": [
            (str(r["run_id"]), float(r["stats"].get("links", 0))) for r in runs
        ],
        "Pairs left for review": [
            (str(r["run_id"]), float(r["stats"].get("review", 0))) for r in runs
        ],
    }
    return render(
        request,
        "coordinator/charts.html",
        title="Charts",
        unlock=unlock,
        eligible=len(scores),
        score_bins=score_bins,
        score_chart=charts.histogram(
            "Scores of eligible families",
            scores,
            bin_width=10,
            threshold=unlock,
            threshold_label="unlock threshold",
        ),
        by_problem=by_problem,
        problem_chart=charts.bar_chart("Eligible families by problem", by_problem),
        by_area=by_area,
        area_chart=charts.bar_chart("Eligible families by postcode district", by_area),
        windows=windows,
        window_chart=charts.bar_chart("Claims per window", windows),
        cohort=distance,
        cohort_rows=[{**r, "title": titles.get(r["problem"], r["problem"])} for r in cohort_rows],
        cohort_chart=charts.bar_chart(
            "Change in mean domain score since baseline, per problem (negative is better)",
            [
                (titles.get(r["problem"], r["problem"]), float(r["change"] or 0))
                for r in cohort_rows
            ],
            colour=charts.PURPLE,
        ),
        runs=runs,
        quality_chart=charts.line_chart("Linkage over runs", quality) if runs else None,
    )
