"""Wire models of a resumable extract upload (``/uploads``).

An agency opens an upload session naming the extract's size (and its SHA-256,
or gives that when completing: a client hashing the chunks as it sends them
reads the file once), appends chunks at the offset the service reports
(``Upload-Offset`` header, as in the IETF draft "Resumable Uploads for HTTP"
and tus; each chunk carries an RFC 9530 ``Content-Digest``), and completes it;
the service checks and applies the extract exactly as a single-request push.
After a dropped connection the client asks for the session's offset and sends
only the bytes after it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ._extract import Hex64

__all__ = [
    "CONTENT_DIGEST_HEADER",
    "UPLOAD_OFFSET_HEADER",
    "UploadComplete",
    "UploadStart",
    "UploadState",
    "UploadStatus",
]

UPLOAD_OFFSET_HEADER = "Upload-Offset"
CONTENT_DIGEST_HEADER = "Content-Digest"  # RFC 9530: ``sha-256=:<base64>:``

UploadState = Literal["receiving", "applying", "applied", "refused"]


class UploadStart(BaseModel):
    """Open an upload: the whole extract's length in bytes and its SHA-256 (hex), which
    may instead be given on completion (:class:`UploadComplete`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=1)
    sha256: Hex64 | None = None


class UploadComplete(BaseModel):
    """Complete an upload (an empty body will do when the SHA-256 was given on opening)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: Hex64 | None = None


class UploadStatus(BaseModel):
    """Where an upload stands: the bytes accepted so far (send from ``offset`` on)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upload_id: str
    size: int
    offset: int
    state: UploadState
    max_chunk_bytes: int
    # why the upload was refused (state "refused"), with the line and field when known
    error: str | None = None
