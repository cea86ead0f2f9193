"""``/health``: whether the database answers (any authenticated caller)."""

from __future__ import annotations

from fastapi import APIRouter

from protocols import HealthView

from .. import _store as store
from .deps import AnyCaller, ServiceDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthView)
def health(caller: AnyCaller, service: ServiceDep) -> HealthView:
    """Whether the database answers and an extract is being applied."""
    store.ping(service.sql)
    return HealthView(status="ok", ingesting=service.busy.is_set(), role=caller.role)
