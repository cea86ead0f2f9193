"""Subject access wire format v1: what the services hold about one person.

An IG officer answering a subject access request posts a
:class:`~protocols.SubjectQuery` (an encoded identity, no plaintext) to the
unlock service, which forwards it to the linkage service. Both hops use the
models here, so the two services cannot drift apart:

* linkage service -> unlock service: :class:`SubjectAccessAnswer`, everything
  the linkage service holds that the query matches (:class:`SubjectHeld`:
  records with their pseudonymous data and indicators, family memberships,
  each assessment's score with its reasons, claims) plus the matched records'
  sealed identity blobs, still sealed.
* unlock service -> IG officer: :class:`SubjectAccessReport`, the same
  :class:`SubjectHeld`, the unlock history of the subject's families, the
  audit index of the search, and the matched records' identities sealed to
  the officer's own key (the plaintext inside is :class:`SubjectIdentities`).

Nothing here is a name, a date of birth or an address, except inside
:class:`SubjectIdentities`, which only ever travels sealed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ._attestation import FamilyId, PersonId, SealedBlob
from ._extract import AgencyId, Hex64, IdentityPayload, RecordRef
from ._indicators import IndicatorType

SUBJECT_ACCESS_FORMAT: Final = "family-linkage/subject-access/v1"
SUBJECT_IDENTITIES_FORMAT: Final = "family-linkage/subject-identities/v1"

ExtractId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
HouseholdId = Annotated[str, StringConstraints(pattern=r"^hh_[0-9a-f]{16,64}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:.-]{1,80}$")]
Title = Annotated[str, StringConstraints(max_length=200)]
# A sealed box of every matched record's identity: larger than one blob.
SealedBase64 = Annotated[
    str,
    StringConstraints(
        pattern=r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        max_length=16 * 1024 * 1024,
    ),
]

_MODEL = ConfigDict(extra="forbid", frozen=True)


class HeldIndicator(BaseModel):
    """One indicator an agency reported on a record."""

    model_config = _MODEL

    type: IndicatorType
    date: dt.date
    value: float = Field(allow_inf_nan=False)


class HeldRecord(BaseModel):
    """One agency record the query matched, as the linkage service holds it."""

    model_config = _MODEL

    agency_id: AgencyId
    record_ref: RecordRef
    extract_id: ExtractId
    extract_type: Code
    extract_date: dt.date
    received_at: dt.datetime
    # Dice of the record's person filter with the query's (a record whose keyed
    # identifier agreed exactly is held whatever its Dice).
    match: float = Field(ge=0.0, le=1.0)
    age: int | None = Field(default=None, ge=0, le=130)
    age_band: str | None = Field(default=None, max_length=5)  # from 25 (extract v2)
    sex: Literal["M", "F"] | None = None
    postcode_district: str | None = Field(default=None, max_length=4)
    # Names of the keyed identifier tokens held (the tokens are keyed hashes).
    identifiers: tuple[Code, ...] = ()
    indicators: tuple[HeldIndicator, ...] = ()
    # The extract that retired the record (its agency no longer sends it; the service
    # keeps it, inactive, and it is still held); None while the record is live.
    retired_by: ExtractId | None = None


class HeldReason(BaseModel):
    """One term of a family's risk score: its points and the indicators behind it."""

    model_config = _MODEL

    code: Code
    points: int
    title: Title
    because: tuple[Code, ...] = ()


class HeldAssessment(BaseModel):
    """One assessment cycle's view of a family the subject belongs to."""

    model_config = _MODEL

    cycle_id: int = Field(ge=1)
    as_at: dt.date
    ruleset: Title
    eligible: bool
    problems_met: tuple[Code, ...]
    indicators_met: tuple[Code, ...]
    score: int
    step: Code | None = None
    clearance_required: int = Field(ge=0, le=9)
    reasons: tuple[HeldReason, ...]
    # Whether the subject's person was one of the family's members that cycle.
    subject_member: bool


class HeldStatusChange(BaseModel):
    """A change of a family's programme status (identified, attached, ...)."""

    model_config = _MODEL

    from_status: Code | None
    to_status: Code
    at: dt.datetime
    reason: Code


class HeldClaim(BaseModel):
    """A payment-by-results claim made for a family."""

    model_config = _MODEL

    claim_id: int = Field(ge=1)
    kind: Code
    result: Code | None
    window_id: Code
    cycle_id: int = Field(ge=1)
    amount_gbp: int
    created_at: dt.datetime


class HeldFamily(BaseModel):
    """A family the subject belongs to: its assessments, status and claims."""

    model_config = _MODEL

    family_id: FamilyId
    household_id: HouseholdId
    members: int = Field(ge=0)  # persons in the latest assessment (others are not named)
    status: Code | None
    attached_on: dt.date | None
    assessments: tuple[HeldAssessment, ...]
    status_history: tuple[HeldStatusChange, ...]
    claims: tuple[HeldClaim, ...]


class HeldPerson(BaseModel):
    """A linked person the query matched, and their records.

    ``person_id`` is None for matched records not (yet) linked to any person.
    """

    model_config = _MODEL

    person_id: PersonId | None
    household_id: HouseholdId | None
    family_ids: tuple[FamilyId, ...]
    match: float = Field(ge=0.0, le=1.0)
    records: tuple[HeldRecord, ...] = Field(min_length=1)


class SubjectHeld(BaseModel):
    """Everything the linkage service holds that an encoded identity matched."""

    model_config = _MODEL

    format: Literal["family-linkage/subject-access/v1"] = SUBJECT_ACCESS_FORMAT
    searched_at: dt.datetime
    persons: tuple[HeldPerson, ...]
    families: tuple[HeldFamily, ...]

    def record_keys(self) -> set[tuple[str, str]]:
        """(agency id, record ref) of every record held."""
        return {(r.agency_id, r.record_ref) for p in self.persons for r in p.records}


class SubjectAccessAnswer(BaseModel):
    """The linkage service's answer to the unlock service: what is held, and the sealed blobs."""

    model_config = _MODEL

    held: SubjectHeld
    blobs: tuple[SealedBlob, ...]


class HeldUnlock(BaseModel):
    """One unlock request for a family the subject belongs to."""

    model_config = _MODEL

    request_id: Code
    professional_id: Code
    family_id: FamilyId
    purpose_code: Code
    status: Code
    reason: Code
    break_glass: bool
    created_at: dt.datetime
    decided_at: dt.datetime | None
    released_at: dt.datetime | None
    decision_index: int | None = Field(default=None, ge=0)


class SubjectAccessReport(BaseModel):
    """The unlock service's answer to the IG officer."""

    model_config = _MODEL

    format: Literal["family-linkage/subject-access/v1"] = SUBJECT_ACCESS_FORMAT
    query_sha256: Hex64
    audit_index: int = Field(ge=0)
    generated_at: dt.datetime
    held: SubjectHeld
    unlocks: tuple[HeldUnlock, ...]
    # SubjectIdentities sealed to the officer's key (None when nothing matched).
    sealed_identities: SealedBase64 | None


class SubjectIdentities(BaseModel):
    """The plaintext inside ``SubjectAccessReport.sealed_identities``: the records' identities."""

    model_config = _MODEL

    format: Literal["family-linkage/subject-identities/v1"] = SUBJECT_IDENTITIES_FORMAT
    query_sha256: Hex64
    audit_index: int = Field(ge=0)
    identities: tuple[IdentityPayload, ...]
