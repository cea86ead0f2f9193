"""The linkage schema: how every agency turns identities into encodings.

All agencies in a scheme use the same schema and the same linkage secret; the
linkage service holds only the schema's fingerprint, never the secret. The
fingerprint is the SHA-256 of the schema's canonical JSON, so any change to a
field, a length or a key label yields a different fingerprint and extracts
encoded under different schemas are never compared.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ._canonical import canonical_json, sha256_hex


class PersonFeature(StrEnum):
    """Identity features that may go into the person Bloom filter."""

    GIVEN_NAME = "given_name"  # first given name, normalised
    GIVEN_NAME_CANONICAL = "given_name_canonical"  # each given name, nicknames resolved
    MIDDLE_NAMES = "middle_names"
    FAMILY_NAME = "family_name"  # whole current family name, parts joined
    FAMILY_NAME_PARTS = "family_name_parts"  # each part of current and former names
    DATE_OF_BIRTH = "date_of_birth"  # yyyymmdd
    SEX = "sex"


class AddressFeature(StrEnum):
    """Address features that may go into the address Bloom filter."""

    STREET_LINE = "street_line"  # house number/name and street, normalised
    HOUSE_NUMBER = "house_number"
    POSTCODE = "postcode"  # full unit postcode
    POSTCODE_SECTOR = "postcode_sector"


class Tokenizer(StrEnum):
    """How a field value becomes the features hashed into a filter."""

    BIGRAMS = "bigrams"  # padded character bigrams of each word
    POSITIONAL_UNIGRAMS = "positional_unigrams"  # each character with its position
    EXACT = "exact"  # each value is one feature
    DATE_PARTS = "date_parts"  # yyyymmdd -> year, month, day, and day/month sorted (swap-proof)


class BlockingPart(StrEnum):
    """Pieces a keyed blocking key is built from (all computed agency-side)."""

    GIVEN_PHONETIC = "given_phonetic"
    FAMILY_PHONETIC = "family_phonetic"
    GIVEN_INITIAL = "given_initial"
    FAMILY_INITIAL = "family_initial"
    DOB = "dob"
    DOB_YEAR = "dob_year"
    DOB_DAY_MONTH_SORTED = "dob_day_month_sorted"  # survives a day/month swap
    SEX = "sex"
    POSTCODE_DISTRICT = "postcode_district"


class ExactIdentifier(StrEnum):
    """Identifiers turned into keyed exact-match tokens when present."""

    NHS_NUMBER = "nhs_number"
    NI_NUMBER = "ni_number"
    UPN = "upn"


# An agency-specific identifier type (a local person id, a social security number):
# declared in the schema so every agency keys it alike; never one of ExactIdentifier's.
LocalIdentifierName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,30}$")]


class Hardening(StrEnum):
    """Bloom-filter hardening applied after encoding (see docs/encoding.md)."""

    NONE = "none"
    BALANCE = "balance"  # append the complement and permute with a keyed permutation
    XOR_FOLD = "xor_fold"  # fold the filter in half with XOR


class FilterField(BaseModel):
    """One feature set hashed into a filter with its own derived key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: PersonFeature | AddressFeature
    tokenizer: Tokenizer
    bits_per_feature: int = Field(ge=1, le=128)


class FilterSpec(BaseModel):
    """A Bloom filter: its length before hardening and what goes in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    length_bits: int = Field(ge=64, le=8192)
    fields: tuple[FilterField, ...] = Field(min_length=1)
    hardening: Hardening = Hardening.NONE
    salt: Literal["none", "dob_year", "sex"] = "none"

    @model_validator(mode="after")
    def _power_of_two(self) -> FilterSpec:
        n = self.length_bits
        if n & (n - 1):
            raise ValueError(f"length_bits must be a power of two, got {n}")
        names = [f.feature for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("each feature may appear once in a filter")
        return self

    @property
    def output_bits(self) -> int:
        """Length of the filter as sent, after hardening."""
        if self.hardening is Hardening.BALANCE:
            return 2 * self.length_bits
        if self.hardening is Hardening.XOR_FOLD:
            return self.length_bits // 2
        return self.length_bits


class BlockingKeySpec(BaseModel):
    """A keyed blocking key: HMAC of the named parts, emitted when all are present."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    parts: tuple[BlockingPart, ...] = Field(min_length=1)


class LinkageSchema(BaseModel):
    """Version 1 of the linkage schema shared by every agency in a scheme."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=100)
    kdf: Literal["hkdf-sha256"] = "hkdf-sha256"
    feature_hash: Literal["blake2b-keyed"] = "blake2b-keyed"
    token_hash: Literal["blake2b-keyed"] = "blake2b-keyed"
    person_filter: FilterSpec
    address_filter: FilterSpec
    exact_identifiers: tuple[ExactIdentifier, ...] = tuple(ExactIdentifier)
    blocking_keys: tuple[BlockingKeySpec, ...] = ()
    identity_pad_bytes: int = Field(default=512, ge=128, le=8192)
    # Keyed exact tokens of agency-specific identifiers (TokenisedRecord.local_tokens).
    local_identifiers: tuple[LocalIdentifierName, ...] = ()
    # "uk": validated UK postcodes, district in clear. "any": any 3-10 letters and
    # digits (FEBRL's Australian postcodes, European codes), no district sent.
    postcode_format: Literal["uk", "any"] = "uk"

    @model_validator(mode="after")
    def _feature_kinds(self) -> LinkageSchema:
        for f in self.person_filter.fields:
            if not isinstance(f.feature, PersonFeature):
                raise ValueError(f"person_filter: {f.feature} is not a person feature")
        for f in self.address_filter.fields:
            if not isinstance(f.feature, AddressFeature):
                raise ValueError(f"address_filter: {f.feature} is not an address feature")
        names = [b.name for b in self.blocking_keys]
        if len(set(names)) != len(names):
            raise ValueError("blocking key names must be unique")
        reserved = {str(kind) for kind in ExactIdentifier}
        for name in self.local_identifiers:
            if name in reserved:
                raise ValueError(
                    f"local_identifiers: {name!r} is a built-in identifier (exact_identifiers)"
                )
        if len(set(self.local_identifiers)) != len(self.local_identifiers):
            raise ValueError("local_identifiers must be unique")
        return self

    def canonical_bytes(self) -> bytes:
        """The canonical JSON the fingerprint is computed over.

        Options added after version 1 shipped are left out while they hold their
        default, so a schema that does not use them keeps its fingerprint.
        """
        body: dict[str, Any] = self.model_dump(mode="json")
        if not self.local_identifiers:
            del body["local_identifiers"]
        if self.postcode_format == "uk":
            del body["postcode_format"]
        return canonical_json(body)

    def fingerprint(self) -> str:
        """SHA-256 hex of the canonical JSON: extracts carry it, services pin it."""
        return sha256_hex(self.canonical_bytes())


def default_schema() -> LinkageSchema:
    """The shipped schema: person filters hardened by XOR folding (docs/agency-client.md).

    v1 (``docs/schemas/person-unhardened-v1.json``) sent the 1,024-bit person
    filter as it was; pattern mining singled out a name or date part of 99% of
    records from it. v2 encodes into 2,048 bits at twice v1's weights and sends
    the XOR of the two halves (1,024 bits), which leaves no whole name
    recognisable (``bench/privacy_attacks.py``) at a cost of 0.0005-0.0035 person
    F1 on the quality matrix (``bench/quality_paired.py``).
    """
    return LinkageSchema(
        name="family-linkage default v2",
        person_filter=FilterSpec(
            length_bits=2048,
            # Relative weights as tuned on the synthetic population
            # (bench/encoding_quality.py): date parts and canonical forenames separate
            # relatives (siblings share a family name and often a birth year); the
            # exact family-name parts weigh more than their bigrams so that a record
            # with no date of birth still scores above strangers who share a forename
            # and a day and month of birth; sex weighs little because whole agencies
            # (DWP) do not record it. Doubled for folding: an atom's bits survive the
            # fold only where the partner bit is clear, so a fill near one half
            # (about 48% before folding) hides whole values (docs/agency-client.md,
            # "Hardening"). Not balanced: balancing makes two missing fields agree on
            # their complement bits, and the harness pairs complements back.
            fields=(
                FilterField(
                    feature=PersonFeature.GIVEN_NAME,
                    tokenizer=Tokenizer.BIGRAMS,
                    bits_per_feature=40,
                ),
                FilterField(
                    feature=PersonFeature.GIVEN_NAME_CANONICAL,
                    tokenizer=Tokenizer.EXACT,
                    bits_per_feature=120,
                ),
                FilterField(
                    feature=PersonFeature.FAMILY_NAME,
                    tokenizer=Tokenizer.BIGRAMS,
                    bits_per_feature=30,
                ),
                FilterField(
                    feature=PersonFeature.FAMILY_NAME_PARTS,
                    tokenizer=Tokenizer.EXACT,
                    bits_per_feature=120,
                ),
                FilterField(
                    feature=PersonFeature.DATE_OF_BIRTH,
                    tokenizer=Tokenizer.DATE_PARTS,
                    # 128 is the most a field takes (bits_per_feature le=128)
                    bits_per_feature=128,
                ),
                FilterField(
                    feature=PersonFeature.SEX,
                    tokenizer=Tokenizer.EXACT,
                    bits_per_feature=20,
                ),
            ),
            hardening=Hardening.XOR_FOLD,
        ),
        address_filter=FilterSpec(
            length_bits=1024,
            fields=(
                FilterField(
                    feature=AddressFeature.STREET_LINE,
                    tokenizer=Tokenizer.BIGRAMS,
                    bits_per_feature=20,
                ),
                FilterField(
                    feature=AddressFeature.HOUSE_NUMBER,
                    tokenizer=Tokenizer.EXACT,
                    bits_per_feature=60,
                ),
                FilterField(
                    feature=AddressFeature.POSTCODE,
                    tokenizer=Tokenizer.EXACT,
                    bits_per_feature=60,
                ),
                FilterField(
                    feature=AddressFeature.POSTCODE_SECTOR,
                    tokenizer=Tokenizer.EXACT,
                    bits_per_feature=30,
                ),
            ),
        ),
        blocking_keys=(
            BlockingKeySpec(
                name="family_dob", parts=(BlockingPart.FAMILY_PHONETIC, BlockingPart.DOB)
            ),
            BlockingKeySpec(
                name="given_dob", parts=(BlockingPart.GIVEN_PHONETIC, BlockingPart.DOB)
            ),
            BlockingKeySpec(
                name="names_year",
                parts=(
                    BlockingPart.GIVEN_PHONETIC,
                    BlockingPart.FAMILY_PHONETIC,
                    BlockingPart.DOB_YEAR,
                ),
            ),
            BlockingKeySpec(
                name="initials_swapdob",
                parts=(
                    BlockingPart.GIVEN_INITIAL,
                    BlockingPart.FAMILY_INITIAL,
                    BlockingPart.DOB_YEAR,
                    BlockingPart.DOB_DAY_MONTH_SORTED,
                ),
            ),
        ),
    )
