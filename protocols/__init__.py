"""Shared wire models and formats. Depends only on pydantic and the standard library."""

from ._canonical import canonical_json, sha256_hex
from ._extract import (
    EXTRACT_FORMAT,
    IDENTITY_FORMAT,
    ExtractHeader,
    ExtractTrailer,
    IdentityPayload,
    TokenisedRecord,
    signed_message,
)
from ._indicators import INDICATOR_INFO, Indicator, IndicatorType, ProblemArea
from ._schema import (
    AddressFeature,
    BlockingKeySpec,
    BlockingPart,
    ExactIdentifier,
    FilterField,
    FilterSpec,
    Hardening,
    LinkageSchema,
    PersonFeature,
    Tokenizer,
    default_schema,
)

__all__ = [
    "EXTRACT_FORMAT",
    "IDENTITY_FORMAT",
    "INDICATOR_INFO",
    "AddressFeature",
    "BlockingKeySpec",
    "BlockingPart",
    "ExactIdentifier",
    "ExtractHeader",
    "ExtractTrailer",
    "FilterField",
    "FilterSpec",
    "Hardening",
    "IdentityPayload",
    "Indicator",
    "IndicatorType",
    "LinkageSchema",
    "PersonFeature",
    "ProblemArea",
    "TokenisedRecord",
    "Tokenizer",
    "canonical_json",
    "default_schema",
    "sha256_hex",
    "signed_message",
]
