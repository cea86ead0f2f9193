"""``/claims``: payment-by-results claim batches, the claims made, and their audit export."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from protocols import ClaimBatch, ClaimList
from service_common import MAX_SQL_INT

from ..programme import _claims as claims_
from .deps import WINDOW_ID, Coordinator, Reader, ServiceDep, SettingsDep, WindowId, who

__all__ = ["ClaimRequest", "router"]

router = APIRouter(tags=["claims"])


class ClaimRequest(BaseModel):
    """Make a claim batch for a claim window (all families, or those named)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # checked against the active programme calendar (YYYY-H1, YYYY-Q3 ...)
    window_id: str = Field(pattern=WINDOW_ID)
    family_ids: list[str] | None = Field(default=None, max_length=10_000)


@router.post("/claims", response_model=ClaimBatch)
def make_claims(
    caller: Coordinator, service: ServiceDep, settings: SettingsDep, body: ClaimRequest
) -> ClaimBatch:
    """A claim batch for a window: attachment fees and results with their evidence."""
    return claims_.create_claims(
        service.sql,
        body.window_id,
        actor=who(caller),
        family_ids=body.family_ids,
        restrictions=settings.restrictions,
    )


# exclude_unset: an observation's fall_pct is written only for a percentage-fall condition
@router.get("/claims", response_model=ClaimList, response_model_exclude_unset=True)
def list_claims(_caller: Reader, service: ServiceDep, window_id: WindowId = None) -> ClaimList:
    """Claims (of one window, or all) with their evidence."""
    return ClaimList(claims=claims_.list_claims(service.sql, window_id))


@router.get(
    "/claims/export",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {}, "application/json": {}}}},
)
def export_claims(
    _caller: Reader,
    service: ServiceDep,
    window_id: WindowId = None,
    format: Literal["csv", "json"] = "csv",
    sample_pct: Annotated[float, Query(gt=0, le=100)] = 100.0,
    seed: Annotated[int, Query(ge=0, le=MAX_SQL_INT)] = 0,
) -> PlainTextResponse:
    """Claims for internal audit as a file: CSV, one row per evidence item, or JSON."""
    rows = claims_.list_claims(service.sql, window_id)
    name = f"claims-{window_id or 'all'}"
    if format == "json":
        text = claims_.export_claims_json(rows, sample_pct=sample_pct, seed=seed)
        media = "application/json"
    else:
        text = claims_.export_claims(rows, sample_pct=sample_pct, seed=seed)
        media = "text/csv"
    return PlainTextResponse(
        text,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'},
    )
