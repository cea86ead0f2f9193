"""Resumable uploads: an extract sent in chunks over several requests, then applied once.

:class:`Uploads` keeps the open upload sessions of this process (the service is
one process: its linkage engine is in memory). A session belongs to the agency
that opened it, names the extract's size and SHA-256, and holds an
:class:`~linkage_service._ingest.ExtractReceiver` that checks each chunk's lines
as they arrive (the same checks as a single-request push). Each chunk:

- must start at the session's offset (``ConflictError`` naming the offset to
  resume from otherwise: a replayed or out-of-order chunk changes nothing);
  a client may send the next chunk while the one before it is checked (the
  agency client keeps two on their way), so a chunk that starts ahead of the
  offset waits up to ``ahead_wait`` seconds for the chunks before it to be
  taken, rather than being refused at once (at most ``MAX_WAITING`` chunks of
  a session wait; more are refused at once);
- must match its ``Content-Digest`` (``UploadError`` otherwise: nothing of it is
  taken), so a chunk cut short or altered in transit is never appended;
- is fed whole or the session is refused (a bad record refuses the extract).

Completing checks the whole upload's length and SHA-256, then the trailer and
signature, and applies it through :meth:`LinkageService.apply`; a second
complete (a client that lost the answer) waits for and returns the same
result. Sessions idle longer than ``idle_seconds`` are discarded, and an agency
may hold at most ``max_sessions`` at once. A refused or cancelled session's
staged records are discarded; nothing of it reaches the database. A restart of
the service forgets every session (clients start again: nothing was applied).

State changes of a session happen under its own lock; the session table under
one lock of its own. Logs carry upload ids, agency ids, offsets and counts only.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocols import UploadState, UploadStatus

from ._errors import ConflictError, LinkageError, NotFound, TooLarge, UploadError
from ._ingest import ExtractReceiver

__all__ = [
    "DEFAULT_AHEAD_WAIT",
    "DEFAULT_MAX_CHUNK_BYTES",
    "MAX_WAITING",
    "UploadSession",
    "Uploads",
]

_logger = logging.getLogger("linkage_service.ingest")

DEFAULT_MAX_CHUNK_BYTES = 16 * 1024**2
DEFAULT_MAX_SESSIONS = 4  # per agency
DEFAULT_IDLE_SECONDS = 3600.0
DEFAULT_AHEAD_WAIT = 10.0  # seconds a chunk ahead of the offset waits for its turn
MAX_WAITING = 4  # chunks of one session waiting at once


@dataclass
class UploadSession:
    """One upload: who, how big, how far, and the receiver checking its lines."""

    upload_id: str
    agency_id: str
    size: int
    sha256: str | None  # None until given on completing
    receiver: ExtractReceiver | None
    touched: float
    offset: int = 0
    state: UploadState = "receiving"
    result: dict[str, Any] | None = None
    error: LinkageError | None = None
    verify_seconds: float = 0.0  # time spent checking lines as chunks arrived
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)
    waiting: int = 0  # chunks ahead of the offset waiting for their turn
    turn: threading.Condition = field(init=False)  # notified when the offset or state moves

    def __post_init__(self) -> None:
        self.turn = threading.Condition(self.lock)

    def refuse(self, exc: LinkageError) -> None:
        """Mark refused with ``exc`` and discard the staged records."""
        self.state, self.error = "refused", exc
        self.turn.notify_all()  # called with the lock held
        if self.receiver is not None:
            self.receiver.close()
            self.receiver = None
        self.done.set()


class Uploads:
    """The open upload sessions of one service. Thread-safe."""

    def __init__(
        self,
        receiver: Callable[[str], ExtractReceiver],
        apply: Callable[[Any], dict[str, Any]],
        *,
        max_upload_bytes: int,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        ahead_wait: float = DEFAULT_AHEAD_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._receiver = receiver
        self._apply = apply
        self.max_upload_bytes = max_upload_bytes
        self.max_chunk_bytes = max_chunk_bytes
        self._max_sessions = max_sessions
        self._idle = idle_seconds
        self._ahead_wait = ahead_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, UploadSession] = {}

    def status(self, session: UploadSession) -> UploadStatus:
        """The session as the API answers it."""
        return UploadStatus(
            upload_id=session.upload_id,
            size=session.size,
            offset=session.offset,
            state=session.state,
            max_chunk_bytes=self.max_chunk_bytes,
            error=None if session.error is None else str(session.error),
        )

    def start(self, agency_id: str, size: int, sha256: str | None = None) -> UploadSession:
        """Open a session for an extract of ``size`` bytes with SHA-256 ``sha256`` (or None:
        given on completing)."""
        if size > self.max_upload_bytes:
            raise TooLarge(
                f"the upload is {size} bytes, larger than the limit of "
                f"{self.max_upload_bytes} bytes (max_upload_bytes)"
            )
        with self._lock:
            self._expire()
            open_now = [
                s
                for s in self._sessions.values()
                if s.agency_id == agency_id and s.state in ("receiving", "applying")
            ]
            if len(open_now) >= self._max_sessions:
                raise ConflictError(
                    f"agency {agency_id!r} has {len(open_now)} uploads open, the most allowed: "
                    "complete or cancel one first"
                )
            session = UploadSession(
                upload_id=secrets.token_urlsafe(18),
                agency_id=agency_id,
                size=size,
                sha256=sha256,
                receiver=self._receiver(agency_id),
                touched=self._clock(),
            )
            self._sessions[session.upload_id] = session
        _logger.info(
            "upload opened", extra={"agency_id": agency_id, "upload_id": session.upload_id}
        )
        return session

    def get(self, agency_id: str, upload_id: str) -> UploadSession:
        """The agency's own session ``upload_id`` (another agency's is not found either)."""
        with self._lock:
            self._expire()
            session = self._sessions.get(upload_id)
        if session is None or session.agency_id != agency_id:
            raise NotFound(
                f"no upload {upload_id!r} of agency {agency_id!r} (finished or expired?)"
            )
        return session

    def append(
        self, agency_id: str, upload_id: str, offset: int, data: bytes, sha256: bytes
    ) -> UploadSession:
        """Append ``data`` at ``offset`` if its SHA-256 is ``sha256``; check its lines."""
        session = self.get(agency_id, upload_id)
        if len(data) > self.max_chunk_bytes:
            raise TooLarge(
                f"chunk of {len(data)} bytes, larger than the limit of {self.max_chunk_bytes}"
            )
        if hashlib.sha256(data).digest() != sha256:
            raise UploadError(
                f"chunk at offset {offset} does not match its Content-Digest: it was changed "
                "or cut short in transit; nothing of it was taken",
                field="Content-Digest",
            )
        with session.lock:
            if (
                offset > session.offset
                and session.state == "receiving"
                and session.waiting < MAX_WAITING
            ):
                # sent while the chunks before it are on their way or being checked
                session.waiting += 1
                try:
                    session.turn.wait_for(
                        lambda: session.offset >= offset or session.state != "receiving",
                        self._ahead_wait,
                    )
                finally:
                    session.waiting -= 1
            if session.state == "refused":
                assert session.error is not None
                raise session.error
            if session.state != "receiving":
                raise ConflictError(
                    f"upload {upload_id} is {session.state}: it takes no more bytes"
                )
            if offset != session.offset:
                raise ConflictError(
                    f"chunk at offset {offset}, but upload {upload_id} has {session.offset} "
                    f"bytes: send from offset {session.offset}"
                )
            if offset + len(data) > session.size:
                raise UploadError(
                    f"chunk ends at byte {offset + len(data)}, past the declared size "
                    f"{session.size}",
                    field="Upload-Offset",
                )
            assert session.receiver is not None
            started = time.perf_counter()
            try:
                session.receiver.feed(data)
            except LinkageError as exc:
                session.refuse(exc)
                raise
            session.verify_seconds += time.perf_counter() - started
            session.offset += len(data)
            session.touched = self._clock()
            session.turn.notify_all()
        return session

    def complete(self, agency_id: str, upload_id: str, sha256: str | None = None) -> dict[str, Any]:
        """Check the whole upload and apply it once; the run summary (again on a repeat).

        ``sha256``: the upload's SHA-256 (hex), if it was not given on opening
        (if it was, this must be the same or None).
        """
        session = self.get(agency_id, upload_id)
        with session.lock:
            first = session.state == "receiving"
            if first:
                if session.offset != session.size:
                    raise ConflictError(
                        f"upload {upload_id} has {session.offset} of {session.size} bytes: "
                        f"send from offset {session.offset} before completing"
                    )
                if sha256 is not None and session.sha256 not in (None, sha256):
                    raise UploadError(
                        "the SHA-256 given on completing is not the one given on opening",
                        field="sha256",
                    )
                session.sha256 = session.sha256 or sha256
                if session.sha256 is None:  # the session stays open: complete with it
                    raise UploadError(
                        "no SHA-256 of the upload: give it on completing (or on opening)",
                        field="sha256",
                    )
                session.state = "applying"
        if first:
            return self._finish(session)
        session.done.wait()
        if session.error is not None:
            raise session.error
        assert session.result is not None
        return session.result

    def _finish(self, session: UploadSession) -> dict[str, Any]:
        receiver = session.receiver
        assert receiver is not None
        try:
            # the receiver hashes every byte fed to it (the same bytes, in order)
            if receiver.body_sha256() != session.sha256:
                raise UploadError(
                    f"the {session.size} bytes received do not have the SHA-256 declared for "
                    "the upload",
                    field="sha256",
                )
            started = time.perf_counter()
            received = receiver.finish()
            session.verify_seconds += time.perf_counter() - started
            summary = self._apply(received)
        except LinkageError as exc:
            with session.lock:
                session.refuse(exc)
            raise
        finally:
            receiver.close()
        with session.lock:
            session.receiver = None
            session.result = {**summary, "verify_seconds": round(session.verify_seconds, 3)}
            session.state = "applied"
            session.touched = self._clock()
            session.done.set()
        return session.result

    def cancel(self, agency_id: str, upload_id: str) -> None:
        """Discard a session that is not being applied (its staged records go)."""
        session = self.get(agency_id, upload_id)
        with session.lock:
            if session.state == "applying":
                raise ConflictError(f"upload {upload_id} is being applied: it cannot be cancelled")
            if session.state == "receiving":
                session.refuse(ConflictError(f"upload {upload_id} was cancelled"))
        with self._lock:
            self._sessions.pop(upload_id, None)

    def _expire(self) -> None:
        """Drop sessions idle past the limit (called with the table lock held)."""
        now = self._clock()
        for uid, s in list(self._sessions.items()):
            if s.state != "applying" and now - s.touched > self._idle:
                if s.receiver is not None:
                    s.receiver.close()
                del self._sessions[uid]
                _logger.info("upload expired", extra={"agency_id": s.agency_id, "upload_id": uid})
