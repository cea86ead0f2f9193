"""``/export/{kind}``: streamed bulk export of persons, households, families, links and review.

NDJSON (``application/x-ndjson``, the default) or Parquet
(``application/vnd.apache.parquet``), chosen by ``?format=`` or else by the
``Accept`` header. Readers only; the rows are pseudonymous (``protocols``'
``Export*`` models). The first page is read before the response starts, so a
missing assessment (404) or an unavailable database (503) is an ordinary
error; the rest streams one keyset page at a time.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from protocols import ExportFormat, ExportKind

from .. import _export as export_
from .deps import Reader, ServiceDep, SettingsDep

__all__ = ["router"]

router = APIRouter(tags=["export"])
_logger = logging.getLogger("linkage_service.api")


def _negotiate(requested: ExportFormat | None, accept: str) -> ExportFormat:
    if requested is not None:
        return requested
    return "parquet" if export_.MEDIA_TYPES["parquet"] in accept.lower() else "ndjson"


@router.get(
    "/export/{kind}",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "one row per line (NDJSON) or a Parquet file",
            "content": {media: {} for media in export_.MEDIA_TYPES.values()},
        }
    },
)
def export(
    caller: Reader,
    service: ServiceDep,
    settings: SettingsDep,
    request: Request,
    kind: ExportKind,
    format_: Annotated[ExportFormat | None, Query(alias="format")] = None,
) -> StreamingResponse:
    """Every current row of ``kind``, streamed: persons, households, families, links, review."""
    fmt = _negotiate(format_, request.headers.get("accept", ""))
    stream = export_.stream(service.sql, kind, fmt, page_size=settings.export_page_size)
    _logger.info(
        "bulk export", extra={"export_kind": kind, "export_format": fmt, "role": caller.role}
    )
    return StreamingResponse(
        iter(stream),
        media_type=stream.media_type,
        headers={
            "content-disposition": f'attachment; filename="{kind}.{fmt}"',
            "vary": "accept",
        },
    )
