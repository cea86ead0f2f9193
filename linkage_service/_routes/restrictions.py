"""``/restrictions``: opt-out / restriction flags, set and lifted by the unlock service."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from protocols import RestrictionLifted, RestrictionList, RestrictionRuleView, RestrictionSet

from ..programme import _restrictions as restrictions_
from .deps import FamilyId, RestrictionReader, ServiceDep, SettingsDep, UnlockService, who

__all__ = ["RestrictionRequest", "router"]

router = APIRouter(tags=["restrictions"])


class RestrictionRequest(BaseModel):
    """A family's opt-out / restriction flag, as the unlock service records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")


@router.put("/restrictions/{family_id}", response_model=RestrictionSet)
def put_restriction(
    caller: UnlockService,
    service: ServiceDep,
    settings: SettingsDep,
    family_id: FamilyId,
    body: RestrictionRequest,
) -> RestrictionSet:
    """Set a family's opt-out / restriction flag (forwarded by the unlock service)."""
    return restrictions_.set_restriction(
        service.sql, family_id, body.kind, settings.restrictions, actor=who(caller)
    )


@router.delete("/restrictions/{family_id}", response_model=RestrictionLifted)
def lift_restriction(
    _caller: UnlockService, service: ServiceDep, family_id: FamilyId
) -> RestrictionLifted:
    """Lift a family's flag (forwarded by the unlock service)."""
    return restrictions_.lift_restriction(service.sql, family_id)


@router.get("/restrictions", response_model=RestrictionList)
def restrictions(
    _caller: RestrictionReader, service: ServiceDep, settings: SettingsDep
) -> RestrictionList:
    """Flags in force and what each kind stops under the configured rules."""
    return RestrictionList(
        rules={
            k: RestrictionRuleView(profiling=v.profiling, claims=v.claims, release=v.release)
            for k, v in sorted(settings.restrictions.items())
        },
        restrictions=restrictions_.list_restrictions(service.sql, settings.restrictions),
    )
