"""One CSV row -> one tokenised record line, per the agency's mapping.

This is where plaintext meets the encoder: identity cells are normalised, encoded
into filters and tokens, and the original values are sealed for the unlock
service. Bad cells become :class:`Problem` values naming line, field and column;
the caller's policy decides whether they fail the run, skip the row or drop the
field (a dropped field is treated as missing and never counts as agreement).
"""

from __future__ import annotations

import binascii
import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from enum import StrEnum

from nacl.public import PublicKey

from protocols import IDENTITY_FORMAT, ExactIdentifier, LinkageSchema

from . import _normalise as norm
from ._encoder import Encoder, NormalisedIdentity, keyed_token
from ._mapping import AgencyMapping, IndicatorColumn
from ._seal import IdentitySealer

_TRUE = frozenset({"y", "yes", "true", "t", "1", "x"})
_FALSE = frozenset({"", "n", "no", "false", "f", "0"})
MIN_BIRTH_YEAR = 1900


class BadRowPolicy(StrEnum):
    """What to do with a bad cell."""

    FAIL = "fail"  # stop at the first problem; nothing is written
    SKIP_ROW = "skip-row"  # leave the whole row out and report it
    DROP_FIELD = "drop-field"  # keep the row without the bad field and report it


@dataclass(frozen=True, slots=True)
class Problem:
    """A bad cell or row: where it is and what is wrong."""

    line: int
    field: str | None
    problem: str
    action: str = "failed"


@dataclass(frozen=True)
class RowContext:
    """Everything a worker process needs to encode rows (picklable)."""

    mapping: AgencyMapping
    schema: LinkageSchema
    secret: bytes
    record_ref_key: bytes
    seal_public_key: bytes
    agency_id: str
    extract_id: str
    extract_date: dt.date
    columns: dict[str, int]  # header name -> index
    policy: BadRowPolicy


@dataclass(slots=True)
class ChunkResult:
    """Encoded lines and problems of one block of rows, in input order.

    ``lines`` while encoding; :func:`encode_block_or_stop` then packs them into
    ``data`` (newline-terminated UTF-8) so a worker hands back one bytes object.
    """

    lines: list[str]
    problems: list[Problem]
    skipped: int
    rows: int
    data: bytes = b""
    count: int = 0


class _RowProblem(Exception):
    """Internal: one bad cell, raised to skip the row or fail the run."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def record_ref(key: bytes, agency_id: str, system_id: str) -> str:
    """Pseudonymous, stable reference of a record: keyed by the agency's own ref key."""
    return keyed_token(key, f"{agency_id}\x1f{system_id}", 16).hex()


class RowEncoder:
    """Encodes rows of one CSV under one mapping and schema."""

    def __init__(self, ctx: RowContext) -> None:
        self.ctx = ctx
        self._encoder = Encoder(ctx.schema, ctx.secret)
        self._sealer = IdentitySealer(PublicKey(ctx.seal_public_key), ctx.schema.identity_pad_bytes)
        ident = ctx.mapping.identity
        col = ctx.columns
        self._system_id = col[ident.system_id]
        self._given = [col[c] for c in ident.given_names]
        self._address = [col[c] for c in ident.address_lines]
        self._opt = {
            key: col[name] for key, name in ident.columns().items() if not key.endswith("]")
        }
        self._indicators = [
            (ic, col[ic.column], col[ic.date_column] if ic.date_column else None)
            for ic in ctx.mapping.indicators
        ]
        self._sex_cache: dict[str, str | None] = {}  # a handful of codes per agency
        # IdentityPayload's first keys, constant for the extract (see _encode_row)
        self._identity_head = (
            f'{{"format":{_json_str(IDENTITY_FORMAT)},"agency_id":{_json_str(ctx.agency_id)},'
            f'"extract_id":{_json_str(ctx.extract_id)},"record_ref":'
        )
        self._today = dt.date.today()
        self._identifiers = [
            (ExactIdentifier.NHS_NUMBER, "nhs_number", norm.nhs_number),
            (ExactIdentifier.NI_NUMBER, "ni_number", norm.ni_number),
            (ExactIdentifier.UPN, "upn", norm.upn),
        ]

    def encode_block(self, first_line: int, text: str) -> ChunkResult:
        """Parse and encode a block of whole CSV rows starting at physical line ``first_line``."""
        out = ChunkResult([], [], 0, 0)
        self._today = dt.date.today()  # for two-digit years: the clock once per block
        width = len(self.ctx.columns)
        mapping = self.ctx.mapping.csv
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=mapping.delimiter, strict=True)
        consumed = 0
        while True:
            line = first_line + consumed
            try:
                cells = next(reader)
            except StopIteration:
                return out
            except csv.Error as exc:
                # the reader cannot resynchronise after malformed quoting: always fatal
                out.problems.append(Problem(line, None, f"malformed CSV: {exc}", "failed"))
                raise _StopChunk(out) from exc
            consumed = reader.line_num
            if not cells:
                continue
            out.rows += 1
            if len(cells) != width:
                self._row_problem(
                    out, line, None, f"row has {len(cells)} fields, the header has {width}"
                )
                continue
            try:
                problems: list[Problem] = []
                out.lines.append(self._encode_row(line, cells, problems))
                out.problems.extend(problems)
            except _RowProblem as exc:
                self._row_problem(out, line, exc.field, exc.problem)

    def _row_problem(self, out: ChunkResult, line: int, field: str | None, problem: str) -> None:
        if self.ctx.policy is BadRowPolicy.FAIL:
            out.problems.append(Problem(line, field, problem, "failed"))
            raise _StopChunk(out)
        out.problems.append(Problem(line, field, problem, "row skipped"))
        out.skipped += 1

    def _bad(self, problems: list[Problem], line: int, field: str, problem: str) -> None:
        """A bad optional field: fail/skip the row, or drop the field and go on."""
        if self.ctx.policy is BadRowPolicy.DROP_FIELD:
            problems.append(Problem(line, field, problem, "field dropped"))
            return
        raise _RowProblem(field, problem)

    def _cell(self, cells: list[str], key: str) -> str | None:
        idx = self._opt.get(key)
        if idx is None:
            return None
        value = cells[idx].strip()
        return value or None

    def _encode_row(self, line: int, cells: list[str], problems: list[Problem]) -> str:
        ctx = self.ctx
        ident_map = ctx.mapping.identity
        system_id = cells[self._system_id].strip()
        if not system_id:
            raise _RowProblem(ident_map.system_id, "system id is blank")
        ref = record_ref(ctx.record_ref_key, ctx.agency_id, system_id)

        given_raw = " ".join(c for c in (cells[i].strip() for i in self._given) if c) or None
        words = norm.given_names(given_raw)
        given = words[0] if words else None
        family_raw = self._cell(cells, "family_name")
        former_raw = self._cell(cells, "former_family_names")
        family = norm.family_name(family_raw)
        parts = norm.family_name_parts(family_raw) + norm.family_name_parts(former_raw)

        dob: dt.date | None = None
        dob_raw = self._cell(cells, "date_of_birth")
        if dob_raw is not None:
            try:
                dob = norm.parse_date(dob_raw, ident_map.date_format, today=self._today)
            except norm.NormaliseError as exc:
                self._bad(problems, line, self._field("date_of_birth"), str(exc))
            if dob is not None and not (MIN_BIRTH_YEAR <= dob.year and dob <= ctx.extract_date):
                self._bad(
                    problems,
                    line,
                    self._field("date_of_birth"),
                    f"date of birth {dob.isoformat()} is not between {MIN_BIRTH_YEAR} "
                    f"and the extract date {ctx.extract_date.isoformat()}",
                )
                dob = None

        sex: str | None = None
        sex_raw = self._cell(cells, "sex")
        if sex_raw is not None:
            try:
                sex = self._sex_cache[sex_raw]
            except KeyError:
                try:
                    sex = norm.sex(sex_raw, ident_map.sex_values)
                    self._sex_cache[sex_raw] = sex
                except norm.NormaliseError as exc:
                    self._bad(problems, line, self._field("sex"), str(exc))

        address_raw = [cells[i].strip() for i in self._address]
        address = norm.address_line(address_raw) if address_raw else None
        postcode: norm.Postcode | None = None
        try:
            postcode = norm.postcode(self._cell(cells, "postcode"))
        except norm.NormaliseError as exc:
            self._bad(problems, line, self._field("postcode"), str(exc))

        identifiers: dict[ExactIdentifier, str] = {}
        raw_ids: dict[str, str] = {}
        for ident_type, key, parse in self._identifiers:
            raw = self._cell(cells, key)
            if raw is None:
                continue
            try:
                value = parse(raw)
            except norm.NormaliseError as exc:
                self._bad(problems, line, self._field(key), str(exc))
                continue
            if value:
                identifiers[ident_type] = value
                raw_ids[key] = value

        indicators = self._read_indicators(line, cells, dob, problems)

        identity = NormalisedIdentity(
            given=given,
            given_canonical=tuple(norm.canonical_forename(w) for w in words),
            middle=words[1:],
            family=family,
            family_parts=parts,
            dob=dob,
            sex=sex,
            address=address,
            house_number=norm.house_number(address),
            postcode=postcode,
            identifiers=identifiers,
        )
        enc = self._encoder.encode(identity)

        # The compact JSON of IdentityPayload, built by hand: json.dumps made a new
        # encoder per call. Same escaping function and key order as identity_bytes,
        # so the bytes are the same (tests/agency_client/test_rows_properties.py).
        js = [self._identity_head, _json_str(ref), ',"system_id":', _json_str(system_id)]
        for key, value in (
            ("given_names", given_raw),
            ("family_name", family_raw),
            ("former_family_names", former_raw),
            ("date_of_birth", dob.isoformat() if dob else None),
            ("sex", sex),
            ("postcode", postcode.unit if postcode else self._cell(cells, "postcode")),
        ):
            if value is not None:
                js += [',"', key, '":', _json_str(value)]
        lines = [a for a in address_raw if a]
        if lines:
            js += [',"address_lines":[', ",".join(map(_json_str, lines)), "]"]
        for key, value in raw_ids.items():
            js += [',"', key, '":', _json_str(value)]
        js.append("}")
        try:
            sealed = self._sealer.seal("".join(js).encode())
        except ValueError as exc:
            raise _RowProblem("identity", str(exc)) from exc

        # Built by hand: every value is base64, hex, a number or a fixed vocabulary
        # word, none needs escaping, and json.dumps was the slowest step of a row.
        # tests/agency_client/test_extract.py validates every line against the model.
        out = ['{"record_ref":"', ref, '","clk":"', _b64(enc.clk), '"']
        if enc.address_clk is not None:
            out += [',"address_clk":"', _b64(enc.address_clk), '"']
        if enc.exact_tokens:
            out += [',"exact_tokens":{', _pairs(enc.exact_tokens), "}"]
        if enc.blocking_keys:
            out += [',"blocking_keys":{', _pairs(enc.blocking_keys), "}"]
        if dob is not None:
            out += [',"age":', str(_age(dob, ctx.extract_date))]
        if sex is not None:
            out += [',"sex":"', sex, '"']
        if postcode is not None:
            out += [',"postcode_district":"', postcode.outward, '"']
        if indicators:
            out += [',"indicators":[', ",".join(indicators), "]"]
        out += [',"sealed_identity":"', _b64(sealed), '"}']
        return "".join(out)

    def _field(self, key: str) -> str:
        return f"{key} (column {self.ctx.mapping.identity.columns()[key]!r})"

    def _read_indicators(
        self, line: int, cells: list[str], dob: dt.date | None, problems: list[Problem]
    ) -> list[str]:
        out: list[str] = []
        for ic, idx, date_idx in self._indicators:
            raw = cells[idx].strip()
            if not raw:
                continue  # blank is "no" for a flag and nothing for a number
            try:
                value = _indicator_value(ic, raw)
                if value is None:
                    continue
                when = self.ctx.extract_date
                if date_idx is not None and cells[date_idx].strip():
                    parsed = norm.parse_date(cells[date_idx], ic.date_format, today=self._today)
                    if parsed is not None:
                        when = parsed
                if when > self.ctx.extract_date:
                    raise ValueError(
                        f"date {when.isoformat()} is after the extract date "
                        f"{self.ctx.extract_date.isoformat()}"
                    )
                if dob is not None and when < dob:
                    raise ValueError(f"date {when.isoformat()} is before the date of birth")
            except (ValueError, norm.NormaliseError) as exc:
                self._bad(
                    problems, line, f"indicator {ic.type.value} (column {ic.column!r})", str(exc)
                )
                continue
            out.append(
                f'{{"type":"{ic.type.value}","value":{value!r},"date":"{when.isoformat()}"}}'
            )
        return out


class _StopChunk(Exception):
    """Internal: the FAIL policy met a problem; carries the partial result."""

    def __init__(self, result: ChunkResult) -> None:
        super().__init__("stop")
        self.result = result


def _indicator_value(ic: IndicatorColumn, raw: str) -> float | None:
    if ic.kind == "flag":
        low = raw.lower()
        if low in _TRUE:
            return 1.0
        if low in _FALSE:
            return None
        raise ValueError(f"{raw!r} is not a yes/no flag")
    if not raw:
        return None
    cleaned = raw.replace("%", "").replace("£", "").replace(",", "").strip()
    try:
        value = float(cleaned)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise ValueError(f"{raw!r} is not a non-negative number")
    if ic.kind == "count" and value == 0:
        return None
    return value


# The escaping json.dumps(..., ensure_ascii=False) applies to a str (C-accelerated).
_json_str = json.encoder.encode_basestring


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode("ascii")


def _pairs(items: dict[str, str]) -> str:
    return ",".join(f'"{k}":"{v}"' for k, v in items.items())


def _age(dob: dt.date, at: dt.date) -> int:
    return at.year - dob.year - ((at.month, at.day) < (dob.month, dob.day))


def encode_block_or_stop(encoder: RowEncoder, first_line: int, text: str) -> ChunkResult:
    """Encode a block; under the FAIL policy the result ends at the first problem."""
    try:
        result = encoder.encode_block(first_line, text)
    except _StopChunk as stop:
        result = stop.result
    if result.lines:
        result.data = ("\n".join(result.lines) + "\n").encode()
        result.count = len(result.lines)
        result.lines = []
    return result
