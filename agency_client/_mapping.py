"""Agency mapping files: an agency's own CSV columns -> identity fields and indicators.

Agencies name their columns differently; a TOML mapping file says which column
holds what, so no code changes per agency, and declares the transforms
(``[[derive]]``) that make the columns an identity field needs out of the ones
the agency has. See docs/agency-client.md for the format. This module only
parses and validates the file and resolves its column names against a CSV
header; it never reads data. Errors name the mapping file, the key
(``derive[2].regex``) and what was expected.
"""

from __future__ import annotations

import codecs
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from protocols import ExactIdentifier, IndicatorType, LinkageSchema

from ._errors import ConfigError, InputError
from ._transforms import AddressPart, NamePart, NameShape, Op, Step

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
    date_formats: tuple[str, ...] = ()  # several accepted formats, tried in order
    sex: str | None = None
    sex_values: dict[str, SexCode] = Field(default_factory=dict)  # extra source codes
    address_lines: tuple[str, ...] = ()
    postcode: str | None = None
    nhs_number: str | None = None
    ni_number: str | None = None
    upn: str | None = None
    # agency-specific identifiers: type name (in the schema's local_identifiers) -> column
    identifiers: dict[str, str] = Field(default_factory=dict)

    @field_validator("given_names", "address_lines", "date_formats", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _checked(self) -> IdentitySection:
        if self.date_formats and "date_format" in self.model_fields_set:
            raise KeyedError("date_formats", "give date_format or date_formats, not both")
        for fmt in self.date_formats:
            if "%" not in fmt:
                raise KeyedError("date_formats", f"{fmt!r} is not a strptime format (no % code)")
        reserved = {str(kind) for kind in ExactIdentifier}
        for name in self.identifiers:
            if name in reserved:
                raise KeyedError(
                    f"identifiers.{name}",
                    f"{name} is a built-in identifier: map it with identity.{name} instead",
                )
            if not _LOCAL_ID.fullmatch(name):
                raise KeyedError(
                    f"identifiers.{name}",
                    "an identifier type name is a lower-case letter then 2-31 lower-case "
                    "letters, digits or underscores",
                )
        return self

    @property
    def dob_formats(self) -> tuple[str, ...]:
        """The accepted date-of-birth formats, in the order they are tried."""
        return self.date_formats or (self.date_format,)

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
        for name, col in self.identifiers.items():
            out[f"identifiers.{name}"] = col
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


_LOCAL_ID = re.compile(r"[a-z][a-z0-9_]{1,30}")


class KeyedError(ValueError):
    """A validation failure of one key below the model being validated (``derive[2].regex``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


_OPS: tuple[Op, ...] = ("split_name", "split_address", "concat", "regex", "map")
_DERIVE_KEYS = ("name", "from", *_OPS, "part", "separator", "default")


class Derive(BaseModel):
    """One ``[[derive]]`` table: a virtual column made by exactly one transform."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=100)
    from_: str | None = Field(default=None, alias="from", min_length=1)
    split_name: NameShape | None = None
    part: NamePart | None = None
    split_address: AddressPart | None = None
    separator: str | None = Field(default=None, min_length=1)
    concat: tuple[str, ...] | None = Field(default=None, min_length=2)
    regex: str | None = None
    map: dict[str, str] | None = None
    default: str | None = None

    @model_validator(mode="after")
    def _one_op(self) -> Derive:
        if self.name != self.name.strip():
            raise KeyedError("name", "no leading or trailing spaces")
        ops = [op for op in _OPS if getattr(self, op) is not None]
        if not ops:
            raise KeyedError(
                "", "no transform: give one of split_name, split_address, concat, regex or map"
            )
        if len(ops) > 1:
            raise KeyedError(
                ops[1],
                f"a derive does one transform and this one has {' and '.join(ops)}: "
                "chain two derives instead (the second's `from` names the first)",
            )
        op = ops[0]
        if op == "concat":
            if self.from_ is not None:
                raise KeyedError("from", "concat takes its columns from `concat`, not `from`")
        elif self.from_ is None:
            raise KeyedError("from", f"{op} needs `from`: the source column (or an earlier derive)")
        if op == "split_name" and self.part is None:
            raise KeyedError("part", 'split_name needs part = "family" or "given"')
        if op != "split_name" and self.part is not None:
            raise KeyedError("part", "only split_name takes a part")
        if op not in ("split_address", "concat") and self.separator is not None:
            raise KeyedError("separator", "only split_address and concat take a separator")
        if op != "map" and self.default is not None:
            raise KeyedError("default", "only map takes a default")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise KeyedError("regex", f"invalid regular expression: {exc}") from None
        return self

    def step(self, index: int) -> Step:
        """This derive as a transform step."""
        op: Op = next(op for op in _OPS if getattr(self, op) is not None)
        sources = self.concat if self.concat is not None else (self.from_ or "",)
        return Step(
            name=self.name,
            key=f"derive[{index}]",
            op=op,
            sources=tuple(sources),
            name_shape=self.split_name or "family_comma_given",
            name_part=self.part or "family",
            address=self.split_address or "street",
            separator=self.separator or ("," if op == "split_address" else " "),
            pattern=self.regex or "",
            values=tuple((self.map or {}).items()),
            default=self.default,
        )


class AgencyMapping(BaseModel):
    """A whole mapping file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agency: AgencySection
    csv: CsvSection = CsvSection()
    identity: IdentitySection
    derive: tuple[Derive, ...] = ()
    indicators: tuple[IndicatorColumn, ...] = ()
    _path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _derive_order(self) -> AgencyMapping:
        index = {d.name: i for i, d in reversed(list(enumerate(self.derive)))}
        for i, d in enumerate(self.derive):
            if index[d.name] != i:
                raise KeyedError(
                    f"derive[{i}].name",
                    f"{d.name!r} is already the name of derive[{index[d.name]}]",
                )
            for j, source in enumerate(d.step(i).sources):
                where = f"derive[{i}].from" if d.concat is None else f"derive[{i}].concat[{j}]"
                if index.get(source, -1) >= i:
                    raise KeyedError(
                        where,
                        f"names derive {source!r} (derive[{index[source]}]), which is not "
                        "earlier: a derive may use only CSV columns and earlier derives",
                    )
        return self

    @property
    def path(self) -> str:
        """The file this mapping was read from, for messages ("the mapping" if none)."""
        return str(self._path) if self._path is not None else "the mapping"

    def steps(self) -> list[Step]:
        """The derives as transform steps, in order."""
        return [d.step(i) for i, d in enumerate(self.derive)]

    def wanted_columns(self) -> dict[str, str]:
        """Every column the mapping reads, keyed by the mapping key that names it."""
        wanted: dict[str, str] = {}
        for step in self.steps():
            if step.op == "concat":
                for j, col in enumerate(step.sources):
                    wanted[f"{step.key}.concat[{j}]"] = col
            else:
                wanted[f"{step.key}.from"] = step.sources[0]
        wanted.update({f"identity.{k}": col for k, col in self.identity.columns().items()})
        for ic in self.indicators:
            wanted[f"indicators.{ic.type.value}"] = ic.column
            if ic.date_column:
                wanted[f"indicators.{ic.type.value}.date_column"] = ic.date_column
        return wanted


def resolve_columns(mapping: AgencyMapping, header: Sequence[str], csv_path: str) -> dict[str, int]:
    """Column name -> cell index: the header's columns, then each derive's (appended).

    ``header`` has no repeated names. Raises :class:`InputError` (line 1 of
    ``csv_path``) naming the mapping file and key when a column the mapping names
    is missing or a derive's name is already a header column.
    """
    columns = {name: i for i, name in enumerate(header)}
    steps = mapping.steps()
    for step in steps:
        if step.name in columns:
            raise InputError(
                csv_path,
                1,
                step.name,
                f"{mapping.path}: {step.key}.name: {step.name!r} is already a column of the "
                "CSV header: give the derived column another name",
            )
        columns[step.name] = len(columns)
    derived = [step.name for step in steps]
    for key, col in mapping.wanted_columns().items():
        if col not in columns:
            known = ", ".join(header) + (f"; derives: {', '.join(derived)}" if derived else "")
            raise InputError(
                csv_path,
                1,
                col,
                f"{mapping.path}: {key} names column {col!r}, which is not in the header "
                f"(columns: {known})",
            )
    return columns


def check_schema(mapping: AgencyMapping, schema: LinkageSchema) -> None:
    """Refuse identifiers the linkage schema does not declare (every agency keys them alike)."""
    declared = set(schema.local_identifiers)
    for name in mapping.identity.identifiers:
        if name not in declared:
            raise ConfigError(
                f"{mapping.path}: identity.identifiers.{name}: the linkage schema declares no "
                f"local identifier {name!r} (it declares: "
                f"{', '.join(schema.local_identifiers) or 'none'}); declare it in the "
                "scheme's schema (local_identifiers), give that schema with --schema, and have "
                "the linkage service accept it: docs/agency-client.md, "
                '"Agencies\' own identifiers"'
            )


def load_mapping(path: Path) -> AgencyMapping:
    """Read and validate a mapping file; errors name the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read mapping file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        mapping = AgencyMapping.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid mapping: {_describe(exc)}") from exc
    mapping._path = path
    return mapping


def _describe(exc: ValidationError) -> str:
    """Each error as ``key: what was expected``, keys as written in the file (``derive[2].x``)."""
    out: list[str] = []
    for err in exc.errors():
        key = ""
        for part in err["loc"]:
            key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
        message = err["msg"]
        cause: Any = (err.get("ctx") or {}).get("error")
        if isinstance(cause, KeyedError):
            key = f"{key}.{cause.key}" if key and cause.key else (key or cause.key)
            message = cause.message
        elif err["type"] == "extra_forbidden" and key.startswith("derive["):
            message = f"unknown key; a derive takes {', '.join(_DERIVE_KEYS)}"
        elif err["type"] == "extra_forbidden":
            message = "unknown key"
        out.append(f"{key or '(file)'}: {message}")
    return "; ".join(out)
