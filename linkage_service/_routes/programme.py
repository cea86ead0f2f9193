"""``/programme`` and ``/assessments``: the rules in force, switching them, assessment cycles."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from protocols import CycleList, CycleStats, ProgrammeView, RulesetSwitched

from .._errors import NotFound
from ..programme import _active as active
from ..programme import _assessment as assessment
from ..programme._ruleset import default_ruleset, shipped_rulesets
from .deps import (
    Admin,
    ConfiguredRuleset,
    ModelDep,
    Page,
    Reader,
    ServiceDep,
    SettingsDep,
    SignerDep,
    who,
)

__all__ = ["AssessRequest", "RulesetSwitch", "router"]

router = APIRouter(tags=["programme"])
_logger = logging.getLogger("linkage_service.api")


class AssessRequest(BaseModel):
    """Run an assessment cycle as at a date (today by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_at: dt.date | None = None


class RulesetSwitch(BaseModel):
    """Switch the active ruleset (a shipped name) from the next cycle on, with a reason code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ruleset: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,39}$")
    reason: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")


@router.get("/programme", response_model=ProgrammeView)
def programme(
    _caller: Reader, service: ServiceDep, configured: ConfiguredRuleset, model: ModelDep
) -> ProgrammeView:
    """The ruleset and risk model in force: names, versions, SHA-256 and content."""
    ruleset = active.active_ruleset(service.sql, configured)
    return ProgrammeView(
        ruleset={"sha256": ruleset.sha256(), **ruleset.model_dump(mode="json")},
        model={"sha256": model.sha256(), **model.model_dump(mode="json")},
        switches=active.ruleset_switches(service.sql),
    )


@router.post("/programme/ruleset", response_model=RulesetSwitched)
async def switch_ruleset(
    caller: Admin,
    service: ServiceDep,
    configured: ConfiguredRuleset,
    model: ModelDep,
    body: RulesetSwitch,
) -> RulesetSwitched:
    """Switch the active ruleset (a shipped one) between cycles, without a restart."""
    if body.ruleset not in shipped_rulesets():
        raise NotFound(
            f"no shipped ruleset {body.ruleset!r}; shipped: "
            f"{', '.join(sorted(shipped_rulesets()))} (a council's own file: "
            "linkage-service ruleset use FILE)"
        )
    new = default_ruleset(body.ruleset)

    def run() -> RulesetSwitched:
        return active.switch_ruleset(
            service.sql, new, model, configured, actor=who(caller), reason=body.reason
        )

    out = await run_in_threadpool(service.exclusive, run)
    _logger.info("ruleset switched", extra={"ruleset": new.name, "role": caller.role})
    return out


@router.post("/assessments", response_model=CycleStats)
async def assess(
    caller: Admin,
    service: ServiceDep,
    settings: SettingsDep,
    configured: ConfiguredRuleset,
    model: ModelDep,
    signer: SignerDep,
    body: Annotated[AssessRequest | None, Body()] = None,
) -> CycleStats:
    """Assess every family now (or as at a date): snapshots, statuses, attestations."""
    as_at = (body.as_at if body else None) or dt.date.today()

    def run() -> CycleStats:
        result = assessment.run_cycle(
            service.sql,
            active.active_ruleset(service.sql, configured),
            model,
            as_at,
            actor=who(caller),
            signer=signer,
            restrictions=settings.restrictions,
        )
        return result.stats

    stats = await run_in_threadpool(service.exclusive, run)
    _logger.info("assessment stored", extra={"cycle_id": stats.cycle_id})
    return stats


@router.get("/assessments", response_model=CycleList)
def assessments(_caller: Reader, service: ServiceDep, limit: Page = 100) -> CycleList:
    """Assessment cycles, newest first, with ruleset and model versions and counts."""
    return CycleList(cycles=assessment.list_cycles(service.sql, limit))
