"""``/runs`` and ``/stats``: linkage run history and the store's counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from protocols import LinkageStatistics, RunList, RunView
from service_common import MAX_SQL_INT

from .. import _store as store
from .deps import Page, Reader, ServiceDep

__all__ = ["router"]

router = APIRouter(tags=["runs"])


@router.get("/runs", response_model=RunList)
def runs(_caller: Reader, service: ServiceDep, limit: Page = 100) -> RunList:
    """Linkage run history, newest first."""
    return RunList.model_validate({"runs": store.list_runs(service.sql, limit)})


@router.get("/runs/{run_id}", response_model=RunView)
def run(
    _caller: Reader, service: ServiceDep, run_id: Annotated[int, Path(ge=1, le=MAX_SQL_INT)]
) -> RunView:
    """One linkage run."""
    return RunView.model_validate(store.get_run(service.sql, run_id))


@router.get("/stats", response_model=LinkageStatistics)
def stats(_caller: Reader, service: ServiceDep) -> LinkageStatistics:
    """Counts of records, persons, households, links, review candidates and runs."""
    return LinkageStatistics.model_validate(store.statistics(service.sql))
