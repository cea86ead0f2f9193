"""The IG officer's checks over the audit log, as plain functions the pages call.

The audit log is the party being audited, so the pages believe nothing it
says until it is checked with the keys the IG office pinned (the settings'
``audit_log_vkey_file`` and ``witness_vkey_file``): a checkpoint must carry
the log's signature and the witness's cosignature and be proven consistent
with the last checkpoint this web service verified (kept in its database); a
receipt must prove its entry is in a checkpoint signed and cosigned that way.
Every check is the ``audit_log`` package's own (``open_checkpoint``,
``check_cosignatures``, ``check_successor``, ``verify_receipt``): nothing here
touches a signature or a hash itself.

This module also turns entries into plain language for the pages: what
happened, to whom (pseudonymous ids only: entries hold nothing else), when.
A bad checkpoint is a result (``CheckpointStatus`` with the problem), a bad
receipt a ``ReceiptProblem`` naming the form field: either way, what failed is
said in a sentence an IG officer can act on.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from audit_log import (
    AuditLogError,
    Checkpoint,
    CheckpointError,
    EntryError,
    NoteError,
    NoteVerifier,
    ProofError,
    check_cosignatures,
    check_successor,
    leaf_hash,
    open_checkpoint,
    parse_leaf,
    parse_tlog_proof,
    verify_inclusion,
    verify_receipt,
)

from . import _store as store
from ._errors import ConfigError

__all__ = [
    "TYPE_NAMES",
    "CheckpointStatus",
    "EntryView",
    "ReceiptProblem",
    "ReceiptResult",
    "check_checkpoint",
    "check_receipt",
    "verified_entries",
    "describe",
    "plain_code",
    "proof_hashes",
    "read_vkeys",
]

TYPE_NAMES = {
    "unlock_request": "Unlock request",
    "decision": "Decision",
    "approval": "Approval by a second professional",
    "break_glass": "Break-glass (emergency) use",
    "review": "Break-glass review",
    "expiry": "Request or grant ended unused",
    "key_rotation": "Key rotation",
    "config_change": "Configuration change",
    "professional_change": "Professional's account changed",
    "restriction": "Family restriction or opt-out",
    "ig_access": "Information governance access",
}
DECISIONS = {"granted": "Granted", "refused": "Refused"}
OUTCOMES = {"upheld": "Upheld (the use was justified)", "not_upheld": "Not upheld"}


def plain_code(code: str | None) -> str:
    """``CHILD_PROTECTION`` -> ``Child protection``; ``–`` for nothing."""
    if not code:
        return "–"
    text = code.replace("_", " ").strip().lower()
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class EntryView:
    """One audit-log entry as a page shows it."""

    index: int
    type: str
    kind: str
    time: dt.datetime
    logged_at: dt.datetime
    request_id: str | None
    professional_id: str | None
    family_id: str | None
    purpose: str
    decision: str
    reason_code: str | None
    reason: str
    break_glass: bool
    # Further fields that this type has, as (question, answer) pairs.
    details: list[tuple[str, str]] = field(default_factory=list)


def describe(index: int, logged_at: str, entry: dict[str, Any]) -> EntryView:
    """An entry's fields in plain language (``entry`` as the log's JSON gives it)."""
    kind = str(entry.get("type", ""))
    details: list[tuple[str, str]] = []
    for key, question in (
        ("approver_id", "Approver"),
        ("reviewer_id", "Reviewer"),
        ("actor_id", "Done by"),
        ("key_name", "Key"),
        ("config_version", "Configuration version"),
        ("policy_version", "Policy version"),
    ):
        if entry.get(key):
            details.append((question, str(entry[key])))
    if entry.get("outcome"):
        details.append(("Review outcome", OUTCOMES.get(entry["outcome"], entry["outcome"])))
    for key, question in (
        ("justification_sha256", "Justification (SHA-256 of the text)"),
        ("notes_sha256", "Review notes (SHA-256 of the text)"),
        ("attestation_sha256", "Assessment (SHA-256)"),
    ):
        if entry.get(key):
            details.append((question, str(entry[key])))
    decision = entry.get("decision")
    return EntryView(
        index=index,
        type=kind,
        kind=TYPE_NAMES.get(kind, plain_code(kind)),
        time=dt.datetime.fromisoformat(str(entry.get("time"))),
        logged_at=dt.datetime.fromisoformat(logged_at),
        request_id=entry.get("request_id"),
        professional_id=entry.get("professional_id"),
        family_id=entry.get("family_id"),
        purpose=plain_code(entry.get("purpose_code")),
        decision=DECISIONS.get(str(decision), "–") if decision else "–",
        reason_code=entry.get("reason_code"),
        reason=plain_code(entry.get("reason_code")),
        break_glass=entry.get("break_glass") is True or kind == "break_glass",
        details=details,
    )


def read_vkeys(log_file: Path | None, witness_file: Path | None) -> tuple[str, list[str]]:
    """The pinned log vkey and witness vkeys; ConfigError naming the setting if unset
    or unreadable (the pages then say the check cannot be made, never that it passed)."""
    if log_file is None:
        raise ConfigError("audit_log_vkey_file is not set: the log's key has not been pinned")
    if witness_file is None:
        raise ConfigError("witness_vkey_file is not set: the witness's key has not been pinned")
    keys = []
    for path, setting in ((log_file, "audit_log_vkey_file"), (witness_file, "witness_vkey_file")):
        try:
            keys.append(path.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{setting} {path} cannot be read: {exc}") from exc
    return keys[0], [keys[1]]


@dataclass(frozen=True)
class CheckpointStatus:
    """What the checkpoint page says: verified or not, and against what."""

    verified: bool
    problem: str | None
    checkpoint: Checkpoint | None
    note: str
    witnesses: list[str]
    previous_size: int | None
    previous_verified_at: int | None
    consistency: str  # "first", "same", "extends" or "failed" / "not checked"
    checked_at: int

    @property
    def root_hash(self) -> str:
        """The root hash in base64, as the note writes it."""
        return base64.b64encode(self.checkpoint.root_hash).decode() if self.checkpoint else ""


def check_checkpoint(
    engine: Engine,
    note: str,
    log_vkey: str,
    witness_vkeys: Sequence[str],
    consistency: Callable[[int, int], list[bytes]],
    now: Callable[[], float] = time.time,
) -> CheckpointStatus:
    """Verify ``note`` (the log's latest checkpoint) and its consistency with the last
    checkpoint verified here; remember it when every check passed."""
    checked_at = int(now())

    def failed(
        problem: str, cp: Checkpoint | None, seen: store.SeenCheckpoint | None, stage: str
    ) -> CheckpointStatus:
        return CheckpointStatus(
            False,
            problem,
            cp,
            note,
            [],
            seen.size if seen else None,
            seen.verified_at if seen else None,
            stage,
            checked_at,
        )

    try:
        verifier = NoteVerifier.from_vkey(log_vkey)
    except AuditLogError as exc:
        raise ConfigError(f"the pinned audit log key is not a verifier key: {exc}") from exc
    try:
        cp, _ = open_checkpoint(note, verifier)
    except (NoteError, CheckpointError) as exc:
        return failed(
            "The checkpoint is not signed by the audit log's pinned key, or is not a "
            f"checkpoint at all, so nothing it says can be trusted ({exc}).",
            None,
            None,
            "not checked",
        )
    try:
        witnesses = check_cosignatures(note, cp, witness_vkeys)
    except AuditLogError as exc:
        return failed(
            "The checkpoint has no valid cosignature from the IG office's witness, so the "
            f"log could be showing a different history to someone else ({exc}).",
            cp,
            None,
            "not checked",
        )
    with store.session(engine) as db:
        seen = store.get_seen_checkpoint(db, cp.origin)
        old: Checkpoint | None = None
        if seen is not None:
            try:
                old, _ = open_checkpoint(seen.note, verifier)
            except (NoteError, CheckpointError) as exc:
                return failed(
                    "The checkpoint this service saw last no longer verifies with the pinned "
                    f"key (was the key changed?): {exc}",
                    cp,
                    seen,
                    "failed",
                )
            try:
                check_successor(old, cp, consistency)
            except (ProofError, CheckpointError) as exc:
                return failed(
                    f"The log's history does not extend the checkpoint of {old.size} entries "
                    f"this service verified before: entries were changed, removed or a "
                    f"different history is being shown ({exc}).",
                    cp,
                    seen,
                    "failed",
                )
        if old is None or cp.size > old.size:
            store.save_seen_checkpoint(
                db, cp.origin, size=cp.size, note=note, verified_at=checked_at, previous=seen
            )
        stage = "first" if old is None else ("same" if cp.size == old.size else "extends")
        return CheckpointStatus(
            True,
            None,
            cp,
            note,
            witnesses,
            seen.size if seen else None,
            seen.verified_at if seen else None,
            stage,
            checked_at,
        )


def proof_hashes(body: Any) -> list[bytes]:
    """The hashes of a ``/proof/consistency`` answer; ProofError if malformed."""
    hashes = body.get("hashes") if isinstance(body, dict) else None
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise ProofError("the log's consistency proof is not a list of hashes")
    try:
        return [base64.b64decode(h, validate=True) for h in hashes]
    except (binascii.Error, ValueError) as exc:
        raise ProofError(
            f"the log's consistency proof holds a hash that is not base64: {exc}"
        ) from exc


FILTER_FIELDS = ("type", "professional_id", "family_id", "purpose_code", "decision")


def verified_entries(
    items: Sequence[Any],
    checkpoint: Checkpoint,
    filters: dict[str, str],
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[EntryView]:
    """The log's answer to a filtered ``GET /entries?proof_size=``, each entry
    proven to be in ``checkpoint`` (a verified one) and read from its own leaf
    bytes, never from the server's extra JSON. Raises ProofError naming the first
    entry whose proof fails, that is not a leaf, or that does not match
    ``filters`` (a genuine entry that was not asked for is still a wrong answer)."""
    views = []
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        leaf = item.get("leaf") if isinstance(item, dict) else None
        proof = item.get("inclusion_proof") if isinstance(item, dict) else None
        if not isinstance(index, int) or not isinstance(leaf, str):
            raise ProofError("an entry in the log's answer has no index or leaf")
        data = leaf.encode("utf-8")
        try:
            verify_inclusion(
                leaf_hash(data),
                index,
                checkpoint.size,
                proof_hashes({"hashes": proof}),
                checkpoint.root_hash,
            )
        except ProofError as exc:
            raise ProofError(f"entry {index} is not in the signed tree: {exc}") from exc
        try:
            record = parse_leaf(data)
        except EntryError as exc:
            raise ProofError(f"entry {index} is not a log entry: {exc}") from exc
        if record.index != index:
            raise ProofError(f"entry {index} holds the leaf of entry {record.index}")
        entry = record.entry.model_dump(mode="json")
        for name, wanted in filters.items():
            if name in FILTER_FIELDS and wanted and entry.get(name) != wanted:
                raise ProofError(
                    f"entry {index} has {name} {entry.get(name)!r}, but {wanted!r} was asked for"
                )
        moment = record.entry.time
        if (since is not None and moment < since) or (until is not None and moment >= until):
            raise ProofError(f"entry {index} at {moment.isoformat()} is outside the dates asked")
        views.append(describe(index, record.logged_at.isoformat(), entry))
    return views


class ReceiptProblem(Exception):
    """An uploaded receipt that does not verify: which form field, and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ReceiptResult:
    """A receipt that verified."""

    entry: EntryView
    size: int
    origin: str
    root_hash: str
    witnesses: list[str]
    entry_from_log: bool = False


def _text(data: bytes, field_name: str, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReceiptProblem(field_name, f"The {what} must be a text file") from exc


def check_receipt(
    receipt: bytes,
    entry: bytes | None,
    log_vkey: str,
    witness_vkeys: Sequence[str],
    fetch_entry: Callable[[int], bytes] | None = None,
) -> ReceiptResult:
    """Verify an uploaded receipt as ``audit-log verify-receipt`` does.

    ``receipt`` is the tlog-proof text, or a release as the unlock service
    answered it (JSON holding ``receipt`` and ``leaf``), in which case ``entry``
    may be left out. ``entry`` is the exact leaf bytes the receipt is for; when
    it is missing, ``fetch_entry(index)`` asks the log for them (the proof then
    shows the log still holds, unchanged, the entry the receipt was issued for).
    Raises ReceiptProblem naming the field at fault.
    """
    text = _text(receipt, "receipt", "receipt")
    if text.lstrip().startswith("{"):
        try:
            bundle = json.loads(text)
        except ValueError as exc:
            raise ReceiptProblem("receipt", "The receipt file is JSON that cannot be read") from exc
        if not (
            isinstance(bundle, dict)
            and isinstance(bundle.get("receipt"), str)
            and isinstance(bundle.get("leaf"), str)
        ):
            raise ReceiptProblem(
                "receipt",
                "The receipt file is JSON but not a release holding a receipt and its entry",
            )
        text = bundle["receipt"]
        if entry is None:
            entry = bundle["leaf"].encode("utf-8")
    try:
        proof = parse_tlog_proof(text)
    except AuditLogError as exc:
        raise ReceiptProblem(
            "receipt", f"The selected file is not an audit log receipt: {exc}"
        ) from exc
    fetched = False
    if entry is None and fetch_entry is not None:
        entry, fetched = fetch_entry(proof.index), True
    if entry is None:
        raise ReceiptProblem(
            "entry", f"Select the entry file the receipt is for (entry-{proof.index}.json)"
        )
    _text(entry, "entry", "entry file")
    try:
        checked = verify_receipt(text, entry, log_vkey, witness_vkeys)
    except NoteError as exc:
        raise ReceiptProblem(
            "receipt",
            "The receipt's checkpoint is not signed by the audit log's pinned key: the "
            f"receipt is forged or from another log ({exc})",
        ) from exc
    except CheckpointError as exc:
        if "cosignature" in str(exc):
            raise ReceiptProblem(
                "receipt",
                f"The receipt's checkpoint has no valid cosignature from the IG witness ({exc})",
            ) from exc
        raise ReceiptProblem("receipt", f"The receipt's checkpoint is not valid ({exc})") from exc
    except ProofError as exc:
        if fetched:
            raise ReceiptProblem(
                "receipt",
                f"The receipt does not match entry {proof.index} as the audit log holds it: "
                f"the receipt was altered, or the log's entry was changed ({exc})",
            ) from exc
        raise ReceiptProblem(
            "entry",
            f"The receipt does not prove this entry is in the log: the entry file is not "
            f"entry {proof.index}, or the receipt or the entry was altered ({exc})",
        ) from exc
    except EntryError as exc:
        raise ReceiptProblem("entry", f"The entry file is not an audit log entry ({exc})") from exc
    except AuditLogError as exc:
        raise ReceiptProblem("receipt", f"The receipt could not be checked ({exc})") from exc
    record = checked.record
    return ReceiptResult(
        entry=describe(
            record.index, record.logged_at.isoformat(), record.entry.model_dump(mode="json")
        ),
        size=checked.checkpoint.size,
        origin=checked.checkpoint.origin,
        root_hash=base64.b64encode(checked.checkpoint.root_hash).decode(),
        witnesses=checked.witnesses,
        entry_from_log=fetched,
    )
