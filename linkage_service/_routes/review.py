"""``/review``: the clerical review queue, its summary, and decisions on record pairs."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from protocols import DecisionList, DecisionView, ReviewQueue, ReviewSummary
from service_common import MAX_SQL_INT

from .. import _decisions as decisions_
from .. import _review as review_
from .._decisions import REASON_PATTERN
from .deps import Coordinator, Offset, Page, Reader, RecordId, ServiceDep, who

__all__ = ["DecisionRequest", "router"]

router = APIRouter(tags=["review"])
_logger = logging.getLogger("linkage_service.api")


class DecisionRequest(BaseModel):
    """A reviewer's decision on a record pair, with a reason code; ``change`` replaces one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Literal["match", "non_match"]
    reason: str = Field(pattern=REASON_PATTERN)
    change: bool = False


@router.get("/review", response_model=ReviewQueue)
def review(
    _caller: Reader,
    service: ServiceDep,
    offset: Offset = 0,
    limit: Page = 100,
    impactful_only: bool = False,
) -> ReviewQueue:
    """The review queue: pairs that would change a family first, then the least certain."""
    return review_.review_queue(service.sql, offset, limit, impactful_only=impactful_only)


@router.get("/review/summary", response_model=ReviewSummary)
def review_summary(_caller: Reader, service: ServiceDep) -> ReviewSummary:
    """How many review pairs, how many would change a family, and what the rest are."""
    return review_.review_summary(service.sql)


@router.post("/review/{record_a}/{record_b}/decision", response_model=DecisionView)
def decide(
    caller: Coordinator,
    service: ServiceDep,
    record_a: RecordId,
    record_b: RecordId,
    body: DecisionRequest,
) -> DecisionView:
    """Record match / non-match on a pair (409 if decided, unless an explicit change)."""
    if record_a == record_b:
        raise HTTPException(422, f"record {record_a} cannot be decided against itself")
    # between extracts: a push never reads the decisions while one is being stored
    view = service.exclusive(
        lambda: decisions_.decide(
            service.sql,
            record_a,
            record_b,
            body.decision,
            body.reason,
            actor=who(caller),
            change=body.change,
        )
    )
    _logger.info(
        "review decision",
        extra={"decision_id": view.id, "decision": view.decision, "role": caller.role},
    )
    return view


@router.get("/review/decisions", response_model=DecisionList)
def decisions(
    _caller: Reader,
    service: ServiceDep,
    record_id: Annotated[int | None, Query(ge=1, le=MAX_SQL_INT)] = None,
    current_only: bool = False,
    after: Annotated[int, Query(ge=0, le=MAX_SQL_INT)] = 0,
    limit: Page = 1000,
) -> DecisionList:
    """Clerical decisions, oldest first: who, when, why, and their effect now."""
    return decisions_.list_decisions(
        service.sql, record_id=record_id, current_only=current_only, after=after, limit=limit
    )
