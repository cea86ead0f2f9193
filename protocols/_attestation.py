"""Attestation wire format v1: the linkage service's signed word that a family crossed the
unlock threshold, and the sealed identity blobs the unlock service may then fetch.

The linkage service signs :func:`attestation_message` of an :class:`Attestation`
with its Ed25519 attestation key; the unlock service checks the signature
against the pinned public key, checks freshness against ``assessed_at``, and
records :func:`attestation_sha256` in the audit log. An attestation carries
pseudonymous ids, record refs, numbers and version references only: never a
name, a date of birth or an address.

:class:`FamilyBlobs` is what the linkage service returns to the unlock service
(and to nothing else) for an attested family: exactly the sealed identity blobs
of the attested member records, each with the id of the sealing key, so blobs
sealed before a key rotation still open with the old key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ._canonical import canonical_json
from ._extract import AgencyId, Base64, BlockingKeyName, Hex64, KeyId, RecordRef
from ._schema import ExactIdentifier

ATTESTATION_FORMAT: Final = "family-linkage/attestation/v1"
ATTESTATION_CONTEXT: Final = b"family-linkage attestation signature v1\n"

FamilyId = Annotated[str, StringConstraints(pattern=r"^fam_[0-9a-f]{16,64}$")]
PersonId = Annotated[str, StringConstraints(pattern=r"^per_[0-9a-f]{16,64}$")]
VersionRef = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6}){0,2}$")]
ModelName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,39}$")]


class AttestedMember(BaseModel):
    """One record of one member of the attested family."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    person_id: PersonId
    agency_id: AgencyId
    record_ref: RecordRef


class Attestation(BaseModel):
    """A family crossed the unlock threshold at one assessment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["family-linkage/attestation/v1"] = ATTESTATION_FORMAT
    attestation_id: Annotated[str, StringConstraints(pattern=r"^att_[0-9a-f]{32}$")]
    family_id: FamilyId
    members: tuple[AttestedMember, ...] = Field(min_length=1)
    score: float = Field(allow_inf_nan=False)
    threshold: float = Field(allow_inf_nan=False)
    # The clearance a professional needs to unlock this family (from the model's
    # thresholds: e.g. higher for child-protection cases).
    clearance_required: int = Field(ge=0, le=9)
    ruleset_name: ModelName
    ruleset_version: VersionRef
    ruleset_sha256: Hex64
    model_name: ModelName
    model_version: VersionRef
    model_sha256: Hex64
    cycle_id: int = Field(ge=1)
    assessed_at: dt.datetime
    issued_at: dt.datetime
    key_id: KeyId


class SignedAttestation(BaseModel):
    """An attestation and the linkage service's Ed25519 signature over its message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attestation: Attestation
    signature: Base64


def attestation_message(attestation: Attestation) -> bytes:
    """The exact bytes the linkage service signs (domain-separated canonical JSON)."""
    return ATTESTATION_CONTEXT + canonical_json(attestation.model_dump(mode="json"))


def attestation_sha256(attestation: Attestation) -> str:
    """SHA-256 hex of :func:`attestation_message`: the attestation's name in the audit log."""
    return hashlib.sha256(attestation_message(attestation)).hexdigest()


class SealedBlob(BaseModel):
    """One sealed identity blob, as the agency sealed it, and the key it was sealed to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency_id: AgencyId
    record_ref: RecordRef
    extract_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    seal_key_id: KeyId | None
    sealed_identity: Base64


class FamilyBlobs(BaseModel):
    """The sealed blobs of exactly the records an attestation names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family_id: FamilyId
    attestation_sha256: Hex64
    blobs: tuple[SealedBlob, ...]


class SubjectQuery(BaseModel):
    """One identity encoded by the agency client for a subject access search.

    The same encodings a :class:`~protocols.TokenisedRecord` carries, without a
    record ref, indicators or sealed identity: an IG officer's request to find
    every record and unlock that concerns one person. It holds no plaintext.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["family-linkage/subject-query/v1"] = "family-linkage/subject-query/v1"
    schema_fingerprint: Hex64
    clk: Base64
    exact_tokens: dict[ExactIdentifier, Base64] = Field(default_factory=dict)
    blocking_keys: dict[BlockingKeyName, Base64] = Field(default_factory=dict)
    age: int | None = Field(default=None, ge=0, le=130)
    sex: Literal["M", "F"] | None = None
