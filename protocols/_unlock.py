"""Unlock service wire format: what its HTTP routes answer, and the sealed release.

Answers (unlock service -> professional's client or browser):

* a decision on ``POST /unlocks``: :class:`ReleasedAnswer` (200) or
  :class:`PendingAnswer` (202), tagged by ``status``; a refusal is an
  :class:`ErrorAnswer` (403 / 429) carrying the request id and the audit index
  of the logged refusal;
* :class:`RequestView` for one request (``GET /unlocks/{id}``), pages of them
  (:class:`RequestPage`), the requests a professional may approve
  (:class:`ApprovalList` of :class:`PendingApproval`), an approver's answer
  (:class:`ApprovalAnswer`), break-glass reviews and flag changes.

Every answer that carries a ``reason`` code also carries ``reason_text``, the
sentence :func:`protocols.reason_text` gives for it, and every time is an ISO
8601 UTC timestamp. Nothing here is a name, a date of birth or an address.

The release (:data:`SealedRelease`) is the plaintext inside
``ReleasedAnswer.sealed_identities``; it only ever travels sealed to the
professional's key. It is a tagged union on ``format``: v1 carries the opened
identities only; v2 adds, from the signed attestation, each record's
pseudonymous ``person_id`` and the list of people with the agency records that
name each, so a client can show one entry per person with the agencies that
knew them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ._attestation import FamilyId, PersonId
from ._extract import AgencyId, Hex64, IdentityPayload, RecordRef
from ._subject import SealedBase64

RELEASE_FORMAT_V1: Final = "family-linkage/release/v1"
RELEASE_FORMAT_V2: Final = "family-linkage/release/v2"

RequestId = Annotated[str, StringConstraints(pattern=r"^req_[0-9a-f]{16,64}$")]
ProfessionalId = Annotated[str, StringConstraints(pattern=r"^pro_[0-9a-f]{16,64}$")]
ReasonCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,39}$")]
PurposeCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")]
Sentence = Annotated[str, StringConstraints(min_length=1, max_length=400)]
RequestStatus = Literal[
    "evaluating",
    "pending",
    "deciding",
    "granted",
    "releasing",
    "released",
    "refused",
    "expiring",
    "expired",
    "audit_failed",
]

_MODEL = ConfigDict(extra="forbid", frozen=True)


class ErrorAnswer(BaseModel):
    """Any refusal or failure: what was wrong, its reason code and the code's sentence.

    ``request_id`` and ``audit_index`` are set when the refusal was a logged
    decision on a request.
    """

    model_config = _MODEL

    detail: str
    reason: ReasonCode
    reason_text: Sentence
    request_id: RequestId | None = None
    audit_index: int | None = Field(default=None, ge=0)


class ReleasedAnswer(BaseModel):
    """A released family: the identities sealed to the requester, and the decision's receipt."""

    model_config = _MODEL

    status: Literal["released"] = "released"
    request_id: RequestId
    family_id: FamilyId
    # A SealedRelease, sealed to the professional's key (base64).
    sealed_identities: SealedBase64
    release_format: Literal["family-linkage/release/v1", "family-linkage/release/v2"]
    identity_count: int = Field(ge=0)  # agency records released
    person_count: int = Field(ge=0)  # distinct people they belong to
    audit_index: int = Field(ge=0)
    leaf: str
    receipt: str
    reason: ReasonCode
    reason_text: Sentence
    released_at: dt.datetime


class PendingAnswer(BaseModel):
    """A request waiting for a second person's approval."""

    model_config = _MODEL

    status: Literal["awaiting_approval"] = "awaiting_approval"
    request_id: RequestId
    reason: ReasonCode
    reason_text: Sentence
    expires_at: dt.datetime
    audit_index: int = Field(ge=0)


DecisionAnswer = Annotated[ReleasedAnswer | PendingAnswer, Field(discriminator="status")]


class RequestView(BaseModel):
    """One unlock request and where it stands (no attestation body, no justification)."""

    model_config = _MODEL

    request_id: RequestId
    professional_id: ProfessionalId
    family_id: FamilyId
    purpose_code: PurposeCode
    status: RequestStatus
    reason: ReasonCode
    reason_text: Sentence
    break_glass: bool
    clearance_required: int | None = Field(ge=0, le=9)
    attestation_sha256: Hex64
    justification_sha256: Hex64
    created_at: dt.datetime
    decided_at: dt.datetime | None
    expires_at: dt.datetime | None
    released_at: dt.datetime | None
    request_index: int | None = Field(ge=0)
    decision_index: int | None = Field(ge=0)


class RequestPage(BaseModel):
    """Requests, newest first; ``next_before`` names the request to page on from (or None)."""

    model_config = _MODEL

    requests: tuple[RequestView, ...]
    next_before: RequestId | None = None


class PendingApproval(BaseModel):
    """A request awaiting a second person that the caller may approve.

    ``justification`` is the requester's text (free text: it may name people),
    kept by the unlock service only while the request waits for approval;
    None for a request made before it was kept. The audit log holds only
    ``justification_sha256``.
    """

    model_config = _MODEL

    request_id: RequestId
    family_id: FamilyId
    requester_id: ProfessionalId
    requester_role: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
    purpose_code: PurposeCode
    purpose: Annotated[str, StringConstraints(max_length=200)]  # the policy's description
    justification: Annotated[str, StringConstraints(max_length=20_000)] | None
    justification_sha256: Hex64
    clearance_required: int | None = Field(ge=0, le=9)
    approvals: int = Field(ge=0)  # approvals recorded so far
    approvals_required: int = Field(ge=1)
    reason: ReasonCode
    reason_text: Sentence
    created_at: dt.datetime
    expires_at: dt.datetime


class PurposeView(BaseModel):
    """A purpose the caller's role may state, and what it requires."""

    model_config = _MODEL

    code: PurposeCode
    description: Annotated[str, StringConstraints(max_length=200)]
    approval: bool  # always needs a second professional's approval
    break_glass: bool  # may be used as break-glass
    min_justification: int = Field(ge=0)


class PurposeList(BaseModel):
    """The purposes of the unlock policy the caller may state."""

    model_config = _MODEL

    policy: Annotated[str, StringConstraints(max_length=200)]
    purposes: tuple[PurposeView, ...]


class ApprovalList(BaseModel):
    """The pending requests the caller may approve, soonest to expire first."""

    model_config = _MODEL

    approvals: tuple[PendingApproval, ...]


class ApprovalAnswer(BaseModel):
    """The request's state after an approver's answer."""

    model_config = _MODEL

    request_id: RequestId
    status: RequestStatus
    reason: ReasonCode
    reason_text: Sentence


class ReviewView(BaseModel):
    """A break-glass review task."""

    model_config = _MODEL

    request_id: RequestId
    professional_id: ProfessionalId
    family_id: FamilyId
    purpose_code: PurposeCode
    status: Literal["open", "closing", "closed"]
    outcome: Literal["upheld", "not_upheld"] | None
    reviewer_id: ProfessionalId | None
    notes_sha256: Hex64 | None
    audit_index: int | None = Field(ge=0)
    opened_at: dt.datetime
    due_at: dt.datetime
    closed_at: dt.datetime | None


class ReviewList(BaseModel):
    """Break-glass review tasks, by due date."""

    model_config = _MODEL

    reviews: tuple[ReviewView, ...]


class ReviewClosed(BaseModel):
    """A review's outcome, as logged."""

    model_config = _MODEL

    request_id: RequestId
    status: Literal["closed"] = "closed"
    outcome: Literal["upheld", "not_upheld"]
    audit_index: int = Field(ge=0)


class FlagChange(BaseModel):
    """A family's opt-out / restriction flag set or lifted, as logged."""

    model_config = _MODEL

    family_id: FamilyId
    flag: Literal["OPT_OUT", "RESTRICTED"] | None
    reason: ReasonCode
    reason_text: Sentence
    audit_index: int = Field(ge=0)
    linkage_synced: bool


class Health(BaseModel):
    """Liveness."""

    model_config = _MODEL

    status: Literal["ok"] = "ok"


# --- the sealed release --------------------------------------------------------------


class AgencyRecord(BaseModel):
    """One agency's record of a person: which agency knew them, under which record ref."""

    model_config = _MODEL

    agency_id: AgencyId
    record_ref: RecordRef


class ReleasedPerson(BaseModel):
    """One person of the family (pseudonymous id) and every agency record that names them."""

    model_config = _MODEL

    person_id: PersonId
    records: tuple[AgencyRecord, ...] = Field(min_length=1)


class ReleasedRecord(BaseModel):
    """One opened agency record and the person it belongs to."""

    model_config = _MODEL

    person_id: PersonId
    identity: IdentityPayload


class ReleaseV1(BaseModel):
    """Release format v1: the opened identities, ungrouped."""

    model_config = _MODEL

    format: Literal["family-linkage/release/v1"] = RELEASE_FORMAT_V1
    request_id: RequestId
    family_id: FamilyId
    identities: tuple[IdentityPayload, ...]


class ReleaseV2(BaseModel):
    """Release format v2: each record with its person, and the people with their records.

    ``people`` and ``records`` describe the same grouping (checked on parse):
    every record appears under exactly its own person, once.
    """

    model_config = _MODEL

    format: Literal["family-linkage/release/v2"] = RELEASE_FORMAT_V2
    request_id: RequestId
    family_id: FamilyId
    records: tuple[ReleasedRecord, ...]
    people: tuple[ReleasedPerson, ...]

    @model_validator(mode="after")
    def _people_match_records(self) -> ReleaseV2:
        by_record = {
            (r.identity.agency_id, r.identity.record_ref): r.person_id for r in self.records
        }
        if len(by_record) != len(self.records):
            raise ValueError("a record appears twice")
        grouped = {
            (rec.agency_id, rec.record_ref): person.person_id
            for person in self.people
            for rec in person.records
        }
        listed = sum(len(p.records) for p in self.people)
        if grouped != by_record or listed != len(grouped):
            raise ValueError("people do not group exactly the released records")
        if len({p.person_id for p in self.people}) != len(self.people):
            raise ValueError("a person appears twice")
        return self

    @property
    def identities(self) -> tuple[IdentityPayload, ...]:
        """The opened identities, as v1 lists them."""
        return tuple(r.identity for r in self.records)

    def person_identities(self) -> list[tuple[ReleasedPerson, list[IdentityPayload]]]:
        """Each person with the identities of their records (people in listed order)."""
        by_key = {(r.identity.agency_id, r.identity.record_ref): r.identity for r in self.records}
        return [
            (p, [by_key[(rec.agency_id, rec.record_ref)] for rec in p.records]) for p in self.people
        ]


SealedRelease = Annotated[ReleaseV1 | ReleaseV2, Field(discriminator="format")]


def group_people(pairs: list[tuple[str, AgencyRecord]]) -> tuple[ReleasedPerson, ...]:
    """People from (person id, record) pairs: first-seen order of people, records sorted."""
    grouped: dict[str, list[AgencyRecord]] = {}
    for person_id, record in pairs:
        grouped.setdefault(person_id, []).append(record)
    return tuple(
        ReleasedPerson(
            person_id=pid, records=tuple(sorted(recs, key=lambda r: (r.agency_id, r.record_ref)))
        )
        for pid, recs in grouped.items()
    )
