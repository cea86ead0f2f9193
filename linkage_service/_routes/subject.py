"""``POST /subject-access``: what is held about one person (the unlock service only)."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from protocols import SubjectAccessAnswer, SubjectQuery

from .deps import ServiceDep, UnlockService

__all__ = ["router"]

router = APIRouter(tags=["subject-access"])
_logger = logging.getLogger("linkage_service.api")


@router.post("/subject-access", response_model=SubjectAccessAnswer)
def subject_access(
    caller: UnlockService, service: ServiceDep, query: SubjectQuery
) -> SubjectAccessAnswer:
    """What is held about the person an encoded identity matches (unlock service only).

    Records with their data and indicators, family memberships with every
    assessment's score and reasons, status and claims, and the records'
    sealed identity blobs, still sealed.
    """
    out = service.search(query)
    _logger.info("subject access answered", extra={"count": len(out.blobs), "role": caller.role})
    return out
