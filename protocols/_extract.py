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

Coarse attributes in clear are sent on a need-to-know basis (format v2, issue
17): ``age`` in whole years at the extract date only under
:data:`EXACT_AGE_BELOW` (every age threshold of the programme's rules and
reports is at or below it, and ages must be rolled forward to later cycle
dates); 25 and over travel as an :data:`AgeBand` only; ``postcode_district``
only on records of a person under :data:`DISTRICT_AGE_BELOW` or an expectant
parent (the records a family's district is read from); ``sex`` as before. The
v1 format, which sent exact ages of adults and every district, is refused with
an error that says so.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ._canonical import canonical_json
from ._indicators import Indicator, IndicatorType
from ._schema import ExactIdentifier, LocalIdentifierName

EXTRACT_FORMAT: Final = "family-linkage/extract/v2"
RETIRED_EXTRACT_FORMATS: Final = frozenset({"family-linkage/extract/v1"})
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

# Need-to-know clear attributes (format v2): the largest age any rule or report
# compares against is 25 (``young_people`` 16-24), so whole years are sent below it
# and bands above it (the bias report's adult bands, evaluation/_modelcard.py).
EXACT_AGE_BELOW: Final = 25
# A family's district is read from its children's (0-18) or an expectant parent's
# records (DOMAIN.md: a family has a dependent child or an expectant parent).
DISTRICT_AGE_BELOW: Final = 19
MAX_AGE: Final = 130
AgeBand = Literal["25-34", "35-49", "50+"]
AGE_BANDS: Final[tuple[tuple[int, int, AgeBand], ...]] = (
    (25, 34, "25-34"),
    (35, 49, "35-49"),
    (50, MAX_AGE, "50+"),
)


def clear_age(age: int) -> tuple[int | None, AgeBand | None]:
    """What a record sends of an age in whole years: ``(age, None)`` or ``(None, band)``."""
    if age < 0 or age > MAX_AGE:
        raise ValueError(f"age {age} is not between 0 and {MAX_AGE}")
    if age < EXACT_AGE_BELOW:
        return age, None
    return None, next(label for lo, hi, label in AGE_BANDS if lo <= age <= hi)


def age_span(age: int | None, band: str | None) -> tuple[int, int] | None:
    """The ages in whole years a record's clear attributes allow (None when unknown)."""
    if age is not None:
        return age, age
    for lo, hi, label in AGE_BANDS:
        if label == band:
            return lo, hi
    if band is not None:
        raise ValueError(f"unknown age band {band!r}")
    return None


def sends_district(age: int | None, expectant: bool) -> bool:
    """Whether a record carries its postcode district (a child's, or an expectant parent's)."""
    return expectant or (age is not None and age < DISTRICT_AGE_BELOW)


class ExtractHeader(BaseModel):
    """First line of an extract: everything known before the first record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["family-linkage/extract/v2"] = EXTRACT_FORMAT
    agency_id: AgencyId
    extract_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    extract_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
    created_at: dt.datetime
    extract_date: dt.date
    schema_fingerprint: Hex64
    signing_key_id: KeyId
    seal_key_id: KeyId

    @model_validator(mode="before")
    @classmethod
    def _retired_format(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("format") in RETIRED_EXTRACT_FORMATS:
            raise ValueError(
                f"extract format {data['format']} is retired: it sent exact ages of adults "
                f"and every postcode district in clear; re-encode with an agency client "
                f"that writes {EXTRACT_FORMAT}"
            )
        return data


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
    # whole years at the extract date, under EXACT_AGE_BELOW only; older: age_band
    age: int | None = Field(default=None, ge=0, lt=EXACT_AGE_BELOW)
    age_band: AgeBand | None = None
    sex: Literal["M", "F"] | None = None
    # only for a person under DISTRICT_AGE_BELOW or an expectant parent (sends_district)
    postcode_district: PostcodeDistrict | None = None
    indicators: tuple[Indicator, ...] = ()
    sealed_identity: Base64

    @model_validator(mode="after")
    def _need_to_know(self) -> TokenisedRecord:
        if self.age is not None and self.age_band is not None:
            raise ValueError("a record sends age or age_band, not both")
        if self.postcode_district is not None and not (
            # a child's first: most districts are, and the indicators need no look
            sends_district(self.age, False) or _expectant(self.indicators)
        ):
            raise ValueError(
                f"postcode_district is sent only for a person under {DISTRICT_AGE_BELOW} "
                f"or an expectant parent (age {self.age}, age_band {self.age_band})"
            )
        return self


_EXPECTANT: Final = IndicatorType.EXPECTANT_PARENT  # an enum member's look-up is not free


def _expectant(indicators: tuple[Indicator, ...]) -> bool:
    return any(i.type is _EXPECTANT for i in indicators)


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
