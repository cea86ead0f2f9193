"""``/uploads``: an agency sends one signed extract in chunks and resumes after a dropped link.

``POST /uploads`` opens a session (size of the extract, and its SHA-256 here or
on completing); ``PATCH
/uploads/{id}`` appends one chunk at ``Upload-Offset`` with its RFC 9530
``Content-Digest``; ``GET /uploads/{id}`` says how many bytes are accepted (send
from there); ``POST /uploads/{id}/complete`` checks and applies the extract
(the run summary, as ``POST /extracts`` answers it); ``DELETE`` cancels. Only
the agency that opened a session sees it (another agency's id is a 404).
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from protocols import UploadComplete, UploadStart, UploadStatus
from service_common import MAX_SQL_INT

from .._config import agency_of
from .._errors import LinkageError, TooLarge, UploadError
from .deps import AgencyCaller, UploadsDep

__all__ = ["router"]

router = APIRouter(tags=["extracts"])
_logger = logging.getLogger("linkage_service.api")

UploadId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
OffsetHeader = Annotated[int, Header(alias="Upload-Offset", ge=0, le=MAX_SQL_INT)]
DigestHeader = Annotated[str, Header(alias="Content-Digest", max_length=512)]


def _agency(caller: Any) -> str:
    agency_id = agency_of(caller)
    assert agency_id is not None  # AgencyCaller admits agency callers only
    return agency_id


def chunk_sha256(header: str) -> bytes:
    """The SHA-256 named by an RFC 9530 ``Content-Digest`` header (``sha-256=:<b64>:``)."""
    for member in header.split(","):
        name, _, value = member.strip().partition("=")
        if name.strip().lower() != "sha-256":
            continue
        value = value.strip()
        if len(value) < 2 or value[0] != ":" or value[-1] != ":":
            break
        try:
            digest = base64.b64decode(value[1:-1], validate=True)
        except binascii.Error:
            break
        if len(digest) == 32:
            return digest
        break
    raise UploadError(
        "expected Content-Digest: sha-256=:<base64 of the chunk's 32-byte SHA-256>:",
        field="Content-Digest",
    )


async def _read_chunk(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge(f"chunk of {length} bytes, larger than the limit of {limit} bytes")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise TooLarge(f"chunk larger than the limit of {limit} bytes")
    return bytes(body)


@router.post("/uploads", status_code=201)
async def open_upload(
    start: UploadStart, caller: AgencyCaller, uploads: UploadsDep, response: Response
) -> UploadStatus:
    """Open a resumable upload of one extract of ``size`` bytes, with SHA-256 ``sha256`` (or
    give that on completing)."""
    session = await run_in_threadpool(uploads.start, _agency(caller), start.size, start.sha256)
    response.headers["Location"] = f"/uploads/{session.upload_id}"
    return uploads.status(session)


@router.get("/uploads/{upload_id}")
def upload_status(upload_id: UploadId, caller: AgencyCaller, uploads: UploadsDep) -> UploadStatus:
    """How many bytes of the upload are accepted: resume from ``offset``."""
    return uploads.status(uploads.get(_agency(caller), upload_id))


@router.patch("/uploads/{upload_id}")
async def append_chunk(
    request: Request,
    upload_id: UploadId,
    caller: AgencyCaller,
    uploads: UploadsDep,
    upload_offset: OffsetHeader,
    content_digest: DigestHeader,
) -> UploadStatus:
    """Append one chunk at ``Upload-Offset``; its lines are checked as it is taken."""
    agency_id = _agency(caller)
    digest = chunk_sha256(content_digest)
    uploads.get(agency_id, upload_id)  # a 404 before reading the body of a stranger's id
    data = await _read_chunk(request, uploads.max_chunk_bytes)
    session = await _logged(
        agency_id, upload_id, uploads.append, agency_id, upload_id, upload_offset, data, digest
    )
    return uploads.status(session)


@router.post("/uploads/{upload_id}/complete")
async def complete_upload(
    upload_id: UploadId,
    caller: AgencyCaller,
    uploads: UploadsDep,
    body: UploadComplete | None = None,
) -> dict[str, Any]:
    """Check the whole upload (size, SHA-256, trailer, signature) and apply it once.

    The body may give the upload's SHA-256, if opening did not."""
    agency_id = _agency(caller)
    sha256 = None if body is None else body.sha256
    result: dict[str, Any] = await _logged(
        agency_id, upload_id, uploads.complete, agency_id, upload_id, sha256
    )
    return result


@router.delete("/uploads/{upload_id}", status_code=204)
def cancel_upload(upload_id: UploadId, caller: AgencyCaller, uploads: UploadsDep) -> None:
    """Discard an upload that is not being applied."""
    uploads.cancel(_agency(caller), upload_id)


async def _logged(agency_id: str, upload_id: str, fn: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args)
    except LinkageError as exc:
        _logger.warning(
            "upload refused",
            extra={"agency_id": agency_id, "upload_id": upload_id, "error": type(exc).__name__},
        )
        raise
