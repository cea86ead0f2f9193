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
from ._secrets import (
    Caller,
    SecretFileError,
    TokenTable,
    check_private_file,
    load_token_file,
    new_token,
    token_digest,
    write_private_file,
)
from ._validation import describe_errors, field_path

__all__ = [
    "EXTRACT_FORMAT",
    "IDENTITY_FORMAT",
    "INDICATOR_INFO",
    "AddressFeature",
    "BlockingKeySpec",
    "BlockingPart",
    "Caller",
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
    "SecretFileError",
    "TokenTable",
    "TokenisedRecord",
    "Tokenizer",
    "canonical_json",
    "check_private_file",
    "default_schema",
    "describe_errors",
    "field_path",
    "load_token_file",
    "new_token",
    "sha256_hex",
    "signed_message",
    "token_digest",
    "write_private_file",
]
