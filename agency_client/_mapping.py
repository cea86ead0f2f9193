"""Agency mapping files: an agency's own CSV columns -> identity fields and indicators.

Agencies name their columns differently; a TOML mapping file says which column
holds what, so no code changes per agency. See docs/agency-mapping.md for the
format. This module only parses and validates the file; it never reads data.
"""

from __future__ import annotations

import codecs
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from protocols import IndicatorType, describe_errors

from ._errors import ConfigError

SexCode = Literal["M", "F"]


class AgencySection(BaseModel):
    """Who the agency is and what kind of extract it sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,39}$")
    extract_type: str = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")


class CsvSection(BaseModel):
    """How to read the CSV file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"

    @field_validator("encoding")
    @classmethod
    def _ascii_compatible(cls, name: str) -> str:
        # The encoder cuts files into blocks at newline bytes outside quote bytes
        # before decoding, so no byte below 0x80 may be part of another character:
        # UTF-8 and the single-byte code pages (Windows-1252, Latin-1, ...) qualify;
        # UTF-16, UTF-32 and the stateful East Asian encodings do not.
        try:
            codec = codecs.lookup(name)
        except LookupError:
            raise ValueError(f"unknown encoding {name!r}") from None
        ascii_bytes = bytes(range(128))
        if codec.name not in ("utf-8", "utf-8-sig"):
            try:
                single_byte = len(bytes(range(128, 256)).decode(codec.name, "replace")) == 128
                ok = single_byte and ascii_bytes.decode(codec.name) == ascii_bytes.decode("ascii")
            except (UnicodeDecodeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(
                    f"encoding {name!r} is not supported: use UTF-8 or a single-byte code page "
                    "such as cp1252 or latin-1 (convert the file first, e.g. with iconv)"
                )
        return name


class IdentitySection(BaseModel):
    """Which columns hold identity fields. Only ``system_id`` is required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_id: str
    given_names: tuple[str, ...] = ()  # columns joined with spaces; first word = given name
    family_name: str | None = None
    former_family_names: str | None = None
    date_of_birth: str | None = None
    date_format: str = "%d/%m/%Y"
    sex: str | None = None
    sex_values: dict[str, SexCode] = Field(default_factory=dict)  # extra source codes
    address_lines: tuple[str, ...] = ()
    postcode: str | None = None
    nhs_number: str | None = None
    ni_number: str | None = None
    upn: str | None = None

    @field_validator("given_names", "address_lines", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    def columns(self) -> dict[str, str]:
        """Every identity column named by the mapping, keyed by the mapping key."""
        out: dict[str, str] = {"system_id": self.system_id}
        for i, col in enumerate(self.given_names):
            out[f"given_names[{i}]"] = col
        for i, col in enumerate(self.address_lines):
            out[f"address_lines[{i}]"] = col
        for key in (
            "family_name",
            "former_family_names",
            "date_of_birth",
            "sex",
            "postcode",
            "nhs_number",
            "ni_number",
            "upn",
        ):
            col = getattr(self, key)
            if col is not None:
                out[key] = col
        return out


class IndicatorColumn(BaseModel):
    """One CSV column that reports an indicator.

    ``kind``: ``number`` keeps any value (blank = no indicator), ``count``
    drops zeros, ``flag`` maps truthy cells (Y/yes/true/1/x) to 1 and drops the rest.
    The indicator's date is ``date_column`` when given and filled, else the extract date.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    type: IndicatorType
    kind: Literal["number", "count", "flag"] = "number"
    date_column: str | None = None
    date_format: str = "%d/%m/%Y"


class AgencyMapping(BaseModel):
    """A whole mapping file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency: AgencySection
    csv: CsvSection = CsvSection()
    identity: IdentitySection
    indicators: tuple[IndicatorColumn, ...] = ()


def load_mapping(path: Path) -> AgencyMapping:
    """Read and validate a mapping file; errors name the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read mapping file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return AgencyMapping.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid mapping: {describe_errors(exc)}") from exc
