"""``/families``: assessed families, their status and lead professional, outcomes, and
the attestation and sealed blobs the unlock service alone may fetch."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from protocols import (
    FamilyBlobs,
    FamilyOutcomes,
    FamilyPage,
    FamilyView,
    LeadProfessionalView,
    SignedAttestation,
    StatusView,
)
from service_common import MAX_SQL_INT

from ..programme import _assessment as assessment
from ..programme import _attestations as attestations
from ..programme import _claims as claims_
from .deps import Coordinator, CycleId, Offset, Page, Reader, ServiceDep, UnlockService, who

__all__ = ["LeadRequest", "StatusRequest", "router"]

router = APIRouter(tags=["families"])
_logger = logging.getLogger("linkage_service.api")


class StatusRequest(BaseModel):
    """Move a family to a new status, with a reason code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["identified", "attached", "in_progress", "pending_claim", "claimed", "closed"]
    reason: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")
    on: dt.date | None = None


class LeadRequest(BaseModel):
    """A family's lead professional: a professional id or team code (None clears it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str | None = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@router.get("/families", response_model=FamilyPage)
def families(
    _caller: Reader,
    service: ServiceDep,
    cycle_id: CycleId = None,
    eligible: bool | None = None,
    status: str | None = None,
    district: Annotated[str | None, Query(pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")] = None,
    problem: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,47}$")] = None,
    min_score: Annotated[int | None, Query(ge=0, le=MAX_SQL_INT)] = None,
    max_score: Annotated[int | None, Query(ge=0, le=MAX_SQL_INT)] = None,
    offset: Offset = 0,
    limit: Page = 100,
) -> FamilyPage:
    """A page of a cycle's families (the latest by default), highest score first;
    filters: eligibility, status, postcode district, a problem met, a score range."""
    return assessment.list_families(
        service.sql,
        cycle_id=cycle_id,
        eligible=eligible,
        status=status,
        district=district,
        problem=problem,
        min_score=min_score,
        max_score=max_score,
        offset=offset,
        limit=limit,
    )


@router.get("/families/{family_id}", response_model=FamilyView, response_model_exclude_unset=True)
def family(_caller: Reader, service: ServiceDep, family_id: str) -> FamilyView:
    """A family: score with reason codes, problems with evidence, status, progress."""
    return assessment.family_view(service.sql, family_id)


# exclude_unset: an observation's fall_pct is written only for a percentage-fall condition
@router.get(
    "/families/{family_id}/outcomes",
    response_model=FamilyOutcomes,
    response_model_exclude_unset=True,
)
def outcomes(_caller: Reader, service: ServiceDep, family_id: str) -> FamilyOutcomes:
    """The attached family's outcome plan against its snapshots since baseline."""
    return claims_.family_outcomes(service.sql, family_id)


@router.post("/families/{family_id}/status", response_model=StatusView)
def change_status(
    caller: Coordinator, service: ServiceDep, family_id: str, body: StatusRequest
) -> StatusView:
    """Move a family to a new status (attaching fixes its baseline)."""
    return assessment.set_status(
        service.sql, family_id, body.status, actor=who(caller), reason=body.reason, on=body.on
    )


@router.post("/families/{family_id}/lead-professional", response_model=LeadProfessionalView)
def lead_professional(
    caller: Coordinator, service: ServiceDep, family_id: str, body: LeadRequest
) -> LeadProfessionalView:
    """Record (or clear) a family's lead professional: a code, never a name."""
    return assessment.set_lead_professional(service.sql, family_id, body.code, actor=who(caller))


@router.get("/families/{family_id}/attestation", response_model=SignedAttestation)
def attestation(_caller: UnlockService, service: ServiceDep, family_id: str) -> SignedAttestation:
    """The family's signed attestation from the latest assessment (unlock service only)."""
    return attestations.current_attestation(service.sql, family_id)


@router.get("/families/{family_id}/blobs", response_model=FamilyBlobs)
def blobs(
    caller: UnlockService,
    service: ServiceDep,
    family_id: str,
    attestation_sha256: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
) -> FamilyBlobs:
    """The sealed blobs of exactly the records the attestation names (unlock service only)."""
    out = attestations.family_blobs(service.sql, family_id, attestation_sha256)
    _logger.info(
        "sealed blobs released",
        extra={"family_id": family_id, "count": len(out.blobs), "role": caller.role},
    )
    return out
