"""The IG witness: cosigns audit-log checkpoints it has checked are append-only.

This module owns the c2sp.org/tlog-witness ``add-checkpoint`` semantics: for
each known log origin it remembers the latest checkpoint it cosigned, accepts a
new checkpoint only with a valid log signature and a consistency proof from
that record, and returns a timestamped cosignature/v1 line. State is one JSON
file, replaced atomically (temp file, fsync, rename) before any cosignature is
returned. ``create_witness_app`` is a thin HTTP shell over ``Witness``.

It must never cosign a checkpoint that forks or rolls back what it cosigned
before, never cosign before its state is durable, and never accept an
unauthenticated HTTP caller.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from audit_log._checkpoint import (
    Checkpoint,
    CosignatureSigner,
    open_checkpoint,
    parse_add_checkpoint,
)
from audit_log._errors import (
    CheckpointError,
    NoteError,
    ProofError,
    WitnessConflict,
    WitnessError,
)
from audit_log._merkle import EMPTY_ROOT, verify_consistency
from audit_log._note import NoteVerifier
from protocols import Caller, TokenTable, token_digest

__all__ = [
    "SIZE_CONTENT_TYPE",
    "Witness",
    "WitnessRecord",
    "create_witness_app",
    "hash_token",
]

SIZE_CONTENT_TYPE = "text/x.tlog.size"
_logger = logging.getLogger(__name__)
_STATE_VERSION = 1


@dataclass(frozen=True)
class WitnessRecord:
    """The latest checkpoint the witness cosigned for one log."""

    size: int
    root_hash: bytes
    checkpoint_note: str


def hash_token(token: str) -> bytes:
    """Return the SHA-256 digest under which a bearer token is configured."""
    return token_digest(token)


class Witness:
    """Checks and cosigns checkpoints for a fixed set of logs, persisting its view."""

    def __init__(
        self,
        state_path: Path,
        signer: CosignatureSigner,
        logs: Mapping[str, NoteVerifier],
        clock: Callable[[], float] = time.time,
    ) -> None:
        for origin, verifier in logs.items():
            if verifier.name != origin:
                raise WitnessError(
                    f"log key for origin {origin!r} is named {verifier.name!r}", status=500
                )
        self._path = Path(state_path)
        self._signer = signer
        self._logs = dict(logs)
        self._clock = clock
        # One lock makes check-then-persist atomic, as the spec requires to
        # stop two concurrent requests rolling the recorded size back.
        self._lock = threading.Lock()
        self._records = self._load()

    @property
    def signer(self) -> CosignatureSigner:
        """The witness's cosigning key."""
        return self._signer

    def record(self, origin: str) -> WitnessRecord | None:
        """Return the latest cosigned checkpoint for ``origin``, if any."""
        with self._lock:
            return self._records.get(origin)

    def add_checkpoint(self, body: str) -> str:
        """Handle an add-checkpoint body; return the cosignature line(s) or raise WitnessError."""
        try:
            request = parse_add_checkpoint(body)
        except CheckpointError as exc:
            raise WitnessError(f"malformed add-checkpoint body: {exc}", status=400) from exc
        origin = request.checkpoint_note.split("\n", 1)[0]
        verifier = self._logs.get(origin)
        if verifier is None:
            raise WitnessError(f"unknown log origin {origin!r}", status=404)
        try:
            cp, _ = open_checkpoint(request.checkpoint_note, verifier)
        except NoteError as exc:
            raise WitnessError(f"checkpoint for {origin!r} not verified: {exc}", 403) from exc
        except CheckpointError as exc:
            raise WitnessError(f"malformed checkpoint for {origin!r}: {exc}", 400) from exc
        if request.old_size > cp.size:
            raise WitnessError(
                f"old size {request.old_size} is larger than checkpoint size {cp.size}", 400
            )
        if cp.size == 0 and cp.root_hash != EMPTY_ROOT:
            raise WitnessError("checkpoint of size 0 does not have the empty-tree root", 422)

        with self._lock:
            current = self._records.get(origin)
            current_size = current.size if current else 0
            current_root = current.root_hash if current else EMPTY_ROOT
            if request.old_size != current_size:
                raise WitnessConflict(
                    f"old size {request.old_size} does not match the witness's size "
                    f"{current_size} for {origin!r}",
                    size=current_size,
                )
            self._check_consistency(
                origin, current_size, current_root, cp, request.consistency_proof
            )
            timestamp = int(self._clock())
            if timestamp <= 0:
                raise WitnessError(f"witness clock reads {timestamp}, refusing to cosign", 500)
            line = self._signer.cosign(cp.to_text(), timestamp)
            records = dict(self._records)
            records[origin] = WitnessRecord(cp.size, cp.root_hash, request.checkpoint_note)
            self._save(records)
            self._records = records
        return line

    def _check_consistency(
        self, origin: str, old_size: int, old_root: bytes, cp: Checkpoint, proof: list[bytes]
    ) -> None:
        """Raise WitnessError(422) unless ``cp`` extends the recorded tree."""
        if old_size == 0:
            if proof:
                raise WitnessError(
                    f"old size is 0 so the consistency proof must be empty, got {len(proof)}", 422
                )
            return
        if old_size == cp.size and old_root != cp.root_hash:
            raise WitnessError(
                f"fork: {origin!r} size {cp.size} has root {cp.root_hash.hex()} but the witness "
                f"cosigned {old_root.hex()}",
                422,
            )
        try:
            verify_consistency(old_size, cp.size, proof, old_root, cp.root_hash)
        except ProofError as exc:
            raise WitnessError(
                f"consistency proof for {origin!r} from {old_size} to {cp.size} failed: {exc}",
                422,
            ) from exc

    def _load(self) -> dict[str, WitnessRecord]:
        """Read the state file; a missing file is an empty state, a bad one is an error."""
        try:
            raw = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise WitnessError(f"cannot read witness state {self._path}: {exc}", 500) from exc
        try:
            data = json.loads(raw)
            if data.get("version") != _STATE_VERSION:
                raise WitnessError(
                    f"witness state {self._path} has version {data.get('version')!r}, "
                    f"expected {_STATE_VERSION}",
                    500,
                )
            records: dict[str, WitnessRecord] = {}
            for origin, rec in data["logs"].items():
                root = base64.b64decode(rec["root"], validate=True)
                cp = Checkpoint(origin, int(rec["size"]), root)
                records[origin] = WitnessRecord(cp.size, cp.root_hash, str(rec["checkpoint"]))
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            binascii.Error,
            CheckpointError,
        ) as exc:
            # Fail closed: a witness that forgot its state could be made to
            # cosign a fork, so a corrupt file stops it rather than resetting.
            raise WitnessError(f"witness state {self._path} is corrupt: {exc}", 500) from exc
        return records

    def _save(self, records: Mapping[str, WitnessRecord]) -> None:
        """Write the state atomically: temp file in the same directory, fsync, rename."""
        data: dict[str, Any] = {
            "version": _STATE_VERSION,
            "logs": {
                origin: {
                    "size": rec.size,
                    "root": base64.b64encode(rec.root_hash).decode("ascii"),
                    "checkpoint": rec.checkpoint_note,
                }
                for origin, rec in sorted(records.items())
            },
        }
        directory = self._path.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self._path.name}.", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, indent=2, sort_keys=True)
                    fh.write("\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self._path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            # The rename is durable only once the directory entry is synced.
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise WitnessError(f"cannot persist witness state {self._path}: {exc}", 500) from exc


def create_witness_app(witness: Witness, token_hashes: Iterable[bytes]) -> FastAPI:
    """Return a FastAPI app serving ``POST /add-checkpoint`` for ``witness``."""
    hashes = tuple(token_hashes)
    if not hashes:
        raise WitnessError("no bearer token hashes configured; refusing to serve", 500)
    for i, h in enumerate(hashes):
        if len(h) != 32:
            raise WitnessError(f"bearer token hash {i} must be 32 bytes, got {len(h)}", 500)

    callers = TokenTable(
        [(h, Caller("witness-client", f"token {i}")) for i, h in enumerate(hashes)]
    )
    app = FastAPI(title="audit-log witness")

    @app.post("/add-checkpoint", response_class=PlainTextResponse)
    async def add_checkpoint(request: Request) -> Response:
        if callers.authenticate(request.headers.get("authorization")) is None:
            _logger.warning("authentication refused", extra={"status": 401})
            return PlainTextResponse(
                "missing or invalid bearer token\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            body = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            return PlainTextResponse("request body is not valid UTF-8\n", status_code=400)
        try:
            # Persisting state fsyncs; keep that off the event loop.
            lines = await run_in_threadpool(witness.add_checkpoint, body)
        except WitnessConflict as exc:
            _logger.warning(
                "checkpoint refused: its old size is not the size last cosigned",
                extra={"status": 409, "size": exc.size},
            )
            # Set the header directly: a media_type would gain "; charset=utf-8",
            # and the spec names the content type exactly.
            return Response(
                f"{exc.size}\n", status_code=409, headers={"content-type": SIZE_CONTENT_TYPE}
            )
        except WitnessError as exc:
            _logger.warning(
                "checkpoint refused", extra={"status": exc.status, "error": type(exc).__name__}
            )
            return PlainTextResponse(f"{exc}\n", status_code=exc.status)
        _logger.info("checkpoint cosigned", extra={"status": 200})
        return PlainTextResponse(lines, status_code=200)

    return app
