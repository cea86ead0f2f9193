"""``/reports/{name}``: the coordinators' programme reports, as JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from protocols import ReportView
from service_common import MAX_SQL_INT

from ..programme import _reports as reports
from .deps import Reader, ServiceDep

__all__ = ["ReportQuery", "router"]

router = APIRouter(tags=["reports"])

_NAMES = (
    f"The report: one of {', '.join(reports.REPORTS)}. Its JSON is the report of the same "
    'name with underscores (`work-list`: `WorkListReport`, tagged `"report": "work_list"`); '
    "another name is a 404 that lists these."
)


class ReportQuery(BaseModel):
    """A report's query: cycle, format, and the parameters (each report takes some)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cycle_id: int | None = Field(default=None, ge=1, le=MAX_SQL_INT)
    format: Literal["json", "csv"] = "json"

    problem: str | None = Field(default=None, max_length=48)
    limit: int | None = Field(default=None, ge=1, le=100_000)
    cohort: str | None = Field(default=None, pattern=r"^[0-9]{4}-Q[1-4]$")
    by: Literal["area", "age_band", "lead_professional", "status"] | None = None
    cadence_days: int | None = Field(default=None, ge=1, le=366)
    horizon_cycles: int | None = Field(default=None, ge=1, le=24)
    unlock_margin: int | None = Field(default=None, ge=0, le=100)
    margin_pct: float | None = Field(default=None, gt=0, le=50)
    average_gbp: int | None = Field(default=None, ge=0)
    multiple_needs_gbp: int | None = Field(default=None, ge=0)
    multiple_needs_from: int | None = Field(default=None, ge=1, le=20)
    years: float | None = Field(default=None, gt=0, le=10)
    intervention_gbp: int | None = Field(default=None, ge=0)


@router.get(
    "/reports/{name}",
    response_model=ReportView,
    # the work list's problem_points is a column of the one-problem list only
    response_model_exclude_unset=True,
    responses={
        200: {
            "description": "The report named by its `report` tag (JSON), or its table as CSV.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
    },
)
def report(
    _caller: Reader,
    service: ServiceDep,
    name: Annotated[str, Path(description=_NAMES)],
    query: Annotated[ReportQuery, Query()],
) -> ReportView | PlainTextResponse:
    """A programme report for coordinators (JSON, or CSV with ``format=csv``).

    The JSON is one of the reports of the ``ReportView`` union, told apart by
    its ``report`` tag (``work-list`` answers ``"report": "work_list"``); each
    report's ``rows`` item schema lists its columns, as in the CSV.
    """
    params = query.model_dump(exclude={"cycle_id", "format"})
    out = reports.run_report(service.sql, name, query.cycle_id, **params)
    if query.format == "csv":
        return PlainTextResponse(reports.to_csv(out), media_type="text/csv")
    return ReportView(out)
