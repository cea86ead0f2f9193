"""Typed audit entries and the exact bytes that become Merkle leaves.

This module owns the vocabulary of the audit log: unlock requests, decisions,
approvals, break-glass uses, reviews, key rotations, configuration changes,
changes to professionals' records, family restrictions (opt-outs) and IG
officers' reads of the review and subject-access APIs.
Every field is a pseudonymous id, a SHA-256 hash, a short code from a closed
pattern, a version reference, an enum or a UTC timestamp. There is no
free-text field anywhere, so a name, date of birth or address cannot be put in
an entry: justifications and notes are stored only as hashes. Ids are a fixed
prefix and lower-case hex, a shape no personal detail fits by accident.

The leaf stored in the tree is ``canonical_json({"v", "index", "logged_at",
"entry"})``: binding the index into the leaf lets a verifier name the exact
row that was reordered or renumbered. This module must never do I/O.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from protocols import canonical_json, field_path

from ._storage_errors import EntryError

__all__ = [
    "LEAF_VERSION",
    "Approval",
    "BreakGlass",
    "ConfigChange",
    "Decision",
    "Entry",
    "IgAccess",
    "KeyRotation",
    "LeafRecord",
    "ProfessionalChange",
    "Restriction",
    "Review",
    "UnlockRequest",
    "entry_columns",
    "leaf_bytes",
    "leaf_in_file",
    "parse_entry",
    "parse_leaf",
]

LEAF_VERSION = 1


def _utc(value: datetime) -> datetime:
    # One spelling per instant, so canonical bytes do not depend on the offset
    # the writer happened to use.
    if value.utcoffset() != UTC.utcoffset(None):
        raise ValueError("timestamps must be in UTC (offset +00:00 / Z)")
    return value.astimezone(UTC)


UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]


ProfessionalId = Annotated[str, Field(pattern=r"^pro_[0-9a-f]{16,64}$")]
FamilyId = Annotated[str, Field(pattern=r"^fam_[0-9a-f]{16,64}$")]
RequestId = Annotated[str, Field(pattern=r"^req_[0-9a-f]{16,64}$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# Upper-case codes from a closed vocabulary owned by the policy; the pattern
# keeps them short and code-like so they cannot carry prose.
Code = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")]
Version = Annotated[str, Field(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6}){0,2}$")]
KeyName = Annotated[str, Field(pattern=r"^[a-z0-9.-]{1,64}(/[a-z0-9._-]{1,64}){0,3}$")]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    version: Literal[1] = 1
    time: UtcTime


class UnlockRequest(_Base):
    """A professional asked for a family's identity for a stated purpose."""

    type: Literal["unlock_request"] = "unlock_request"
    request_id: RequestId
    professional_id: ProfessionalId
    family_id: FamilyId
    purpose_code: Code
    attestation_sha256: Sha256Hex
    justification_sha256: Sha256Hex


class Decision(_Base):
    """The policy engine's answer to an unlock request."""

    type: Literal["decision"] = "decision"
    request_id: RequestId
    professional_id: ProfessionalId
    family_id: FamilyId
    purpose_code: Code
    decision: Literal["granted", "refused"]
    reason_code: Code
    policy_sha256: Sha256Hex
    policy_version: Version
    break_glass: bool = False


class Approval(_Base):
    """A second approver's answer to an unlock request that needs one."""

    type: Literal["approval"] = "approval"
    request_id: RequestId
    professional_id: ProfessionalId
    approver_id: ProfessionalId
    family_id: FamilyId
    decision: Literal["granted", "refused"]
    reason_code: Code


class BreakGlass(_Base):
    """An emergency unlock that bypassed approval and must be reviewed later."""

    type: Literal["break_glass"] = "break_glass"
    request_id: RequestId
    professional_id: ProfessionalId
    family_id: FamilyId
    purpose_code: Code
    justification_sha256: Sha256Hex


class Review(_Base):
    """An IG officer's retrospective review of a break-glass unlock."""

    type: Literal["review"] = "review"
    request_id: RequestId
    professional_id: ProfessionalId
    reviewer_id: ProfessionalId
    outcome: Literal["upheld", "not_upheld"]
    notes_sha256: Sha256Hex


class Expiry(_Base):
    """A request or grant ended without a release, so a reviewer never has to guess.

    ``reason_code`` says why: ``REQUEST_EXPIRED`` (no approval in time),
    ``GRANT_EXPIRED`` (not redeemed in time), ``GRANT_ABANDONED`` /
    ``REQUEST_ABANDONED`` (the service stopped mid-transition and recovery
    closed it), or the flag that withdrew a grant (``FAMILY_OPTED_OUT``,
    ``FAMILY_RESTRICTED``). It is not a decision: a request still has at
    most one ``decision`` entry.
    """

    type: Literal["expiry"] = "expiry"
    request_id: RequestId
    professional_id: ProfessionalId
    family_id: FamilyId
    reason_code: Code


class KeyRotation(_Base):
    """A signing or sealing key was replaced."""

    type: Literal["key_rotation"] = "key_rotation"
    actor_id: ProfessionalId
    key_name: KeyName
    old_key_sha256: Sha256Hex
    new_key_sha256: Sha256Hex


class ConfigChange(_Base):
    """The policy or service configuration changed."""

    type: Literal["config_change"] = "config_change"
    actor_id: ProfessionalId
    config_sha256: Sha256Hex
    config_version: Version


# The three types below reuse field names the CSV export already has columns
# for (audit_log._review.CSV_COLUMNS), so every entry still exports as one row.


class ProfessionalChange(_Base):
    """An administrator registered a professional or changed their record.

    ``reason_code`` names the action (``REGISTERED``, ``KEY_ROTATED``,
    ``CLEARANCE_SET``, ``DEACTIVATED``, ...); ``config_sha256`` is the SHA-256
    of the professional's canonical record after the change (id, role, team,
    clearance, key thumbprint) and ``config_version`` its revision number, so a
    reviewer can check any later copy of the record against the log.
    """

    type: Literal["professional_change"] = "professional_change"
    actor_id: ProfessionalId
    professional_id: ProfessionalId
    reason_code: Code
    config_sha256: Sha256Hex
    config_version: Version
    old_key_sha256: Sha256Hex | None = None
    new_key_sha256: Sha256Hex | None = None


class Restriction(_Base):
    """An IG officer set or lifted an opt-out or restriction flag on a family."""

    type: Literal["restriction"] = "restriction"
    actor_id: ProfessionalId
    family_id: FamilyId
    reason_code: Code
    notes_sha256: Sha256Hex


class IgAccess(_Base):
    """An IG officer read the review or subject-access API (reads are audited too).

    ``reason_code`` names the read (``REVIEWS_LISTED``, ``UNLOCKS_LISTED``,
    ``SUBJECT_ACCESS``, ...); ``professional_id`` / ``family_id`` /
    ``request_id`` say whose records were read when the read was about one;
    ``notes_sha256`` is the SHA-256 of the query (for subject access, of the
    encoded query, which itself holds no plaintext).
    """

    type: Literal["ig_access"] = "ig_access"
    actor_id: ProfessionalId
    reason_code: Code
    professional_id: ProfessionalId | None = None
    family_id: FamilyId | None = None
    request_id: RequestId | None = None
    notes_sha256: Sha256Hex | None = None


Entry = Annotated[
    UnlockRequest
    | Decision
    | Approval
    | BreakGlass
    | Review
    | KeyRotation
    | ConfigChange
    | ProfessionalChange
    | Restriction
    | IgAccess
    | Expiry,
    Field(discriminator="type"),
]


class LeafRecord(BaseModel):
    """What one Merkle leaf holds: the entry plus where and when it was logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    index: int = Field(ge=0)
    logged_at: UtcTime
    entry: Entry


_ENTRY = TypeAdapter(Entry)
_LEAF = TypeAdapter(LeafRecord)
_TIME = TypeAdapter(UtcTime)


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = field_path(first["loc"], "(root)")
    return f"{where}: {first['msg']} ({exc.error_count()} error(s))"


def parse_entry(data: bytes | str | dict[str, Any]) -> Entry:
    """Validate one entry from JSON text or a dict; raise EntryError naming the field."""
    try:
        if isinstance(data, dict):
            return _ENTRY.validate_python(data)
        return _ENTRY.validate_json(data)
    except ValidationError as exc:
        raise EntryError(f"invalid audit entry: {_describe(exc)}") from exc


def leaf_bytes(index: int, logged_at: datetime, entry: Entry) -> bytes:
    """The canonical leaf data for ``entry`` logged at ``index``."""
    record = {
        "v": LEAF_VERSION,
        "index": index,
        "logged_at": _TIME.dump_python(_utc(logged_at), mode="json"),
        "entry": entry.model_dump(mode="json"),
    }
    return canonical_json(record)


def leaf_in_file(data: bytes) -> bytes:
    """The leaf held by a file of one entry: ``data`` less one final line ending.

    ``audit-log entries`` and ``export`` write each leaf as a line (the leaf,
    then "\\n"); a leaf saved from a release or ``GET /leaves/{i}`` has no line
    ending. Both hold the same leaf. A leaf is canonical JSON, which never
    holds a raw CR or LF byte (strings escape them, and there is no whitespace
    between tokens), so one final "\\n" or "\\r\\n" cannot be part of any leaf
    and dropping it cannot turn one leaf into another. Anything else is left
    as it is, for the hash to judge; a file that still holds a line break (two
    entries, or a blank line) raises EntryError saying so.
    """
    if data.endswith(b"\r\n"):
        leaf = data[:-2]
    elif data.endswith(b"\n"):
        leaf = data[:-1]
    else:
        leaf = data
    if b"\n" in leaf or b"\r" in leaf:
        lines = len(data.splitlines())
        held = f"{lines} lines" if lines > 1 else "a stray line break"
        raise EntryError(
            f"the entry file holds {held}, but an entry is one line of JSON ended by at most "
            "one line break: give a file holding only the entry the receipt is for"
        )
    return leaf


def parse_leaf(data: bytes) -> LeafRecord:
    """Parse leaf data and check it is in canonical form; raise EntryError if not."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EntryError(f"leaf data is not JSON: {exc}") from exc
    try:
        record = _LEAF.validate_python(raw)
    except ValidationError as exc:
        raise EntryError(f"invalid leaf record: {_describe(exc)}") from exc
    if leaf_bytes(record.index, record.logged_at, record.entry) != data:
        raise EntryError("leaf data is not in canonical form")
    return record


def entry_columns(entry: Entry) -> dict[str, Any]:
    """The indexed filter columns of ``entry`` (who, which family, why, what)."""
    professional = getattr(entry, "professional_id", None) or getattr(entry, "actor_id", None)
    return {
        "type": entry.type,
        "professional_id": professional,
        "family_id": getattr(entry, "family_id", None),
        "purpose_code": getattr(entry, "purpose_code", None),
        "decision": getattr(entry, "decision", None),
        "request_id": getattr(entry, "request_id", None),
        "event_time": _micros(entry.time),
    }


def _micros(value: datetime) -> int:
    # Integer arithmetic: a float of microseconds since 1970 loses the last digit.
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def micros(value: datetime) -> int:
    """Microseconds since the Unix epoch for an aware datetime (the stored time form)."""
    return _micros(value)
