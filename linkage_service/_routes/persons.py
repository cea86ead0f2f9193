"""``/persons`` and a record's links: pseudonymous persons and the evidence linking records."""

from __future__ import annotations

from fastapi import APIRouter

from protocols import PersonPage, PersonView, RecordLinks

from .. import _store as store
from .deps import Page, Reader, ServiceDep

__all__ = ["router"]

router = APIRouter(tags=["persons"])


@router.get("/persons", response_model=PersonPage)
def persons(
    _caller: Reader, service: ServiceDep, after: str | None = None, limit: Page = 100
) -> PersonPage:
    """A page of current persons (ids, household, record count)."""
    return PersonPage.model_validate(store.list_persons(service.sql, after, limit))


@router.get("/persons/{person_id}", response_model=PersonView, response_model_exclude_unset=True)
def person(_caller: Reader, service: ServiceDep, person_id: str) -> PersonView:
    """One person with household and linked records (coarse attributes, indicators)."""
    return PersonView.model_validate(store.get_person(service.sql, person_id))


@router.get("/records/{agency_id}/{record_ref}/links", response_model=RecordLinks)
def links(_caller: Reader, service: ServiceDep, agency_id: str, record_ref: str) -> RecordLinks:
    """Link evidence and review candidates of one active record."""
    return RecordLinks.model_validate(store.record_links(service.sql, agency_id, record_ref))
