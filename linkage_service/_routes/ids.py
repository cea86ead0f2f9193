"""``/ids/{id}``: where a person, household or family id ever issued lives now."""

from __future__ import annotations

from fastapi import APIRouter

from protocols import IdResolution

from .. import _store as store
from .deps import Resolver, ServiceDep

__all__ = ["router"]

router = APIRouter(tags=["ids"])


@router.get("/ids/{any_id}", response_model=IdResolution)
def resolve(_caller: Resolver, service: ServiceDep, any_id: str) -> IdResolution:
    """Where a person, household or family id ever issued lives now (its successors)."""
    return IdResolution.model_validate(store.resolve_id(service.sql, any_id))
