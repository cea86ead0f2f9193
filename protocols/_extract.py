"""Extract wire format v1: what an agency sends to the linkage service.

An extract is a JSON Lines file:

* line 1 is an :class:`ExtractHeader` (who, when, which schema, which keys);
* every following line but the last is a :class:`TokenisedRecord`;
* the last line is an :class:`ExtractTrailer` with the record count, the
  SHA-256 of the exact bytes of every record line (newlines included), and the
  agency's Ed25519 signature over :func:`signed_message`.

Records never contain a plaintext identifier: names, dates of birth, addresses
and system ids travel only inside ``sealed_identity``, which only the unlock
service can open. The :class:`IdentityPayload` is the plaintext inside that seal.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ._canonical import canonical_json
from ._indicators import Indicator
from ._schema import ExactIdentifier, LocalIdentifierName

EXTRACT_FORMAT: Final = "family-linkage/extract/v1"
IDENTITY_FORMAT: Final = "family-linkage/identity/v1"
SIGNATURE_CONTEXT = b"family-linkage extract signature v1\n"

Base64 = Annotated[
    str,
    StringConstraints(
        # whole 4-character groups only, padding only at the end
        pattern=r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        max_length=16384,
    ),
]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
AgencyId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,39}$")]
RecordRef = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
BlockingKeyName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
# UK outward codes only: a schema with postcode_format "any" sends no district.
PostcodeDistrict = Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")]


class ExtractHeader(BaseModel):
    """First line of an extract: everything known before the first record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["family-linkage/extract/v1"] = EXTRACT_FORMAT
    agency_id: AgencyId
    extract_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    extract_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
    created_at: dt.datetime
    extract_date: dt.date
    schema_fingerprint: Hex64
    signing_key_id: KeyId
    seal_key_id: KeyId


class TokenisedRecord(BaseModel):
    """One person as an agency knows them, with no plaintext identifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_ref: RecordRef
    clk: Base64
    address_clk: Base64 | None = None
    exact_tokens: dict[ExactIdentifier, Base64] = Field(default_factory=dict)
    # keyed tokens of the schema's local_identifiers; absent from the line when empty
    local_tokens: dict[LocalIdentifierName, Base64] = Field(default_factory=dict)
    blocking_keys: dict[BlockingKeyName, Base64] = Field(default_factory=dict)
    age: int | None = Field(default=None, ge=0, le=130)
    sex: Literal["M", "F"] | None = None
    postcode_district: PostcodeDistrict | None = None
    indicators: tuple[Indicator, ...] = ()
    sealed_identity: Base64


class ExtractTrailer(BaseModel):
    """Last line of an extract: counts, digest and the agency's signature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_count: int = Field(ge=0)
    records_sha256: Hex64
    signature: Base64


def signed_message(header: ExtractHeader, record_count: int, records_sha256: str) -> bytes:
    """The exact bytes an agency signs for an extract (domain-separated)."""
    body = {
        "header": header.model_dump(mode="json"),
        "record_count": record_count,
        "records_sha256": records_sha256,
    }
    return SIGNATURE_CONTEXT + canonical_json(body)


class IdentityPayload(BaseModel):
    """The plaintext sealed to the unlock service: only it ever opens this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["family-linkage/identity/v1"] = IDENTITY_FORMAT
    agency_id: str
    extract_id: str
    record_ref: str
    system_id: str
    given_names: str | None = None
    family_name: str | None = None
    former_family_names: str | None = None
    date_of_birth: dt.date | None = None
    sex: str | None = None
    address_lines: tuple[str, ...] = ()
    postcode: str | None = None
    nhs_number: str | None = None
    ni_number: str | None = None
    upn: str | None = None
    # the agency's values of the schema's local_identifiers, normalised
    local_identifiers: dict[str, str] = Field(default_factory=dict)
