"""``POST /extracts``: an agency streams one signed extract in (its own agency only)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from .._config import agency_of
from .._errors import LinkageError, TooLarge
from .deps import AgencyCaller, ServiceDep

__all__ = ["router"]

router = APIRouter(tags=["extracts"])
_logger = logging.getLogger("linkage_service.api")


@router.post("/extracts")
async def push_extract(
    request: Request, caller: AgencyCaller, service: ServiceDep
) -> dict[str, Any]:
    """Stream one signed extract in; apply it atomically; the run summary."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > service.max_body_bytes:
        raise TooLarge(
            f"the upload is {length} bytes, larger than the limit of "
            f"{service.max_body_bytes} bytes (max_upload_bytes)"
        )
    agency_id = agency_of(caller)
    assert agency_id is not None
    receiver = service.receiver(agency_id)
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(receiver.feed, chunk)
        received = await run_in_threadpool(receiver.finish)
        return await run_in_threadpool(service.apply, received)
    except LinkageError as exc:
        header = receiver.header
        _logger.warning(
            "extract refused",
            extra={
                "agency_id": agency_of(caller),
                "extract_id": header.extract_id if header else "",
                "error": type(exc).__name__,
            },
        )
        raise
    finally:
        receiver.close()
