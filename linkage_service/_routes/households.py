"""``/households``: pseudonymous households and their persons."""

from __future__ import annotations

from fastapi import APIRouter

from protocols import HouseholdPage, HouseholdView

from .. import _store as store
from .deps import Page, Reader, ServiceDep

__all__ = ["router"]

router = APIRouter(tags=["households"])


@router.get("/households", response_model=HouseholdPage)
def households(
    _caller: Reader, service: ServiceDep, after: str | None = None, limit: Page = 100
) -> HouseholdPage:
    """A page of current households."""
    return HouseholdPage.model_validate(store.list_households(service.sql, after, limit))


@router.get("/households/{household_id}", response_model=HouseholdView)
def household(_caller: Reader, service: ServiceDep, household_id: str) -> HouseholdView:
    """One household with its persons and their records."""
    return HouseholdView.model_validate(store.get_household(service.sql, household_id))
