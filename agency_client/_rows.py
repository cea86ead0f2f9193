"""One CSV row -> one tokenised record line, per the agency's mapping.

This is where plaintext meets the encoder: identity cells are normalised, encoded
into filters and tokens, and the original values are sealed for the unlock
service. Bad cells become :class:`Problem` values naming line, field and column;
the caller's policy decides whether they fail the run, skip the row or drop the
field (a dropped field is treated as missing and never counts as agreement).

A mapping's ``[[derive]]`` columns are computed first and appended to the row's
cells (one cache per derive, keyed by its source cells), so the identity fields
read a derived column exactly as they read a CSV column; a mapping with no
derives pays nothing for them.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from nacl.public import PublicKey

from protocols import (
    IDENTITY_FORMAT,
    ExactIdentifier,
    IndicatorType,
    LinkageSchema,
    clear_age,
    gc_paused,
    sends_district,
)
from protocols._seal import IdentitySealer

from . import _normalise as norm
from ._encoder import Encoder, b64, keyed_token, yyyymmdd
from ._mapping import AgencyMapping, IndicatorColumn, check_schema
from ._transforms import BLANK, MATCHED, StepFunction

_TRUE = frozenset({"y", "yes", "true", "t", "1", "x"})
_FALSE = frozenset({"", "n", "no", "false", "f", "0"})
# Cells that _indicator_value turns into None, written as agencies write them.
_NOTHING = {
    "flag": frozenset(_FALSE | {v.upper() for v in _FALSE} | {v.title() for v in _FALSE}),
    "count": frozenset({"0", "0.0", "00"}),
}
MIN_BIRTH_YEAR = 1900


class BadRowPolicy(StrEnum):
    """What to do with a bad cell."""

    FAIL = "fail"  # stop at the first problem; nothing is written
    SKIP_ROW = "skip-row"  # leave the whole row out and report it
    DROP_FIELD = "drop-field"  # keep the row without the bad field and report it


@dataclass(slots=True)
class Problem:
    """A bad cell or row: where it is and what is wrong."""

    line: int
    field: str | None
    problem: str
    action: str = "failed"


@dataclass
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
    columns: dict[str, int]  # header name -> index, then each derive's (resolve_columns)
    policy: BadRowPolicy


@dataclass(slots=True)
class ChunkResult:
    """Encoded lines and problems of one block of rows, in input order.

    ``lines`` while encoding; :func:`encode_block_or_stop` then packs them into
    ``data`` (newline-terminated UTF-8) so a worker hands back one bytes object.
    ``refs`` holds the first eight bytes of each encoded record's ref, so the
    caller can find a system id that appears twice in the file (bytes, not a
    list of integers: cheap to hand back from a worker). ``derive_hits[i]``
    counts the rows where derive ``i`` matched and ``derive_missed[i]`` is the
    first line where its source was filled but it did not match (0: none).
    """

    lines: list[str]
    problems: list[Problem]
    skipped: int
    rows: int
    data: bytes = b""
    count: int = 0
    refs: bytearray = field(default_factory=bytearray)
    derive_hits: list[int] = field(default_factory=list)
    derive_missed: list[int] = field(default_factory=list)


class _RowProblem(Exception):
    """Internal: one bad cell, raised to skip the row or fail the run."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def record_ref(key: bytes, agency_id: str, system_id: str) -> str:
    """Pseudonymous, stable reference of a record: keyed by the agency's own ref key."""
    return keyed_token(key, f"{agency_id}\x1f{system_id}", 16).hex()


_K = TypeVar("_K")
_V = TypeVar("_V")


CACHE_LIMIT = 1 << 16  # entries per cache of derived values


def _remember(cache: dict[_K, _V], key: _K, value: _V, limit: int = CACHE_LIMIT) -> _V:
    """Store ``value`` in a cache that empties itself at ``limit`` entries (memory stays flat).

    Plain dicts rather than a dict subclass: compiled code looks them up directly.
    """
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


@dataclass(frozen=True, slots=True)
class _Dob:
    """A good date of birth and what a record line derives from it."""

    date: dt.date
    dob8: str  # yyyymmdd, as the encoder hashes it
    iso: str  # as the sealed identity carries it
    clear: str  # the record line's age member: ',"age":N' (under 25) or ',"age_band":"..."'
    district: bool  # young enough for the record to carry its district (sends_district)


def _cell(cells: list[str], index: int) -> str | None:
    """A cell stripped, or None when it is blank or the column is absent (index -1)."""
    return (cells[index].strip() or None) if index >= 0 else None


def _given_features(raw: str | None) -> tuple[str | None, tuple[str, ...], tuple[str] | None]:
    """(first given name, every given name's canonical form, the middle names joined)."""
    words = norm.given_names(raw)
    return (
        words[0] if words else None,
        tuple([norm.canonical_forename(w) for w in words]),
        (" ".join(words[1:]),) if len(words) > 1 else None,
    )


def _family_features(
    family_raw: str | None, former_raw: str | None
) -> tuple[str | None, tuple[str, ...]]:
    """(the family name, the parts of the current and former family names)."""
    return (
        norm.family_name(family_raw),
        norm.family_name_parts(family_raw) + norm.family_name_parts(former_raw),
    )


def _address_features(cells: tuple[str, ...]) -> tuple[str | None, str | None, str]:
    """(normalised address line, house number, the JSON array of the non-blank lines)."""
    address = norm.address_line(cells) if cells else None
    lines = [c for c in cells if c]
    return (
        address,
        norm.house_number(address),
        ("[" + ",".join(map(_json_str, lines)) + "]") if lines else "",
    )


class RowEncoder:
    """Encodes rows of one CSV under one mapping and schema."""

    def __init__(self, ctx: RowContext) -> None:
        self.ctx = ctx
        self._encoder = Encoder(ctx.schema, ctx.secret)
        self._sealer = IdentitySealer(PublicKey(ctx.seal_public_key), ctx.schema.identity_pad_bytes)
        ident = ctx.mapping.identity
        col = ctx.columns
        self._width = len(col) - len(ctx.mapping.derive)  # cells in a CSV row
        # (step, its source cells' indexes, source text -> (value, status))
        self._derives: list[tuple[StepFunction, list[int], dict[str, tuple[str, int]]]] = [
            (step.compile(), [col[c] for c in step.sources], {}) for step in ctx.mapping.steps()
        ]
        self._dob_formats = ident.dob_formats
        self._any_postcode = ctx.schema.postcode_format == "any"
        check_schema(ctx.mapping, ctx.schema)
        # (type name, column index, value -> (normalised value, token) or ("", ""))
        self._local: list[tuple[str, int, dict[str, tuple[str, str]]]] = [
            (name, col[column], {}) for name, column in ident.identifiers.items()
        ]
        self._system_id = col[ident.system_id]
        self._given = [col[c] for c in ident.given_names]
        self._address = [col[c] for c in ident.address_lines]
        self._opt = {
            key: col[name] for key, name in ident.columns().items() if not key.endswith("]")
        }
        # column index of each optional identity field, -1 when the agency has none
        self._i_family = self._opt.get("family_name", -1)
        self._i_former = self._opt.get("former_family_names", -1)
        self._i_dob = self._opt.get("date_of_birth", -1)
        self._i_sex = self._opt.get("sex", -1)
        self._i_postcode = self._opt.get("postcode", -1)
        # (column, its index, its date column's index or -1, cells -> JSON object and
        # date, the cells that mean "nothing to report" whatever their date)
        self._indicators: list[
            tuple[
                IndicatorColumn,
                int,
                int,
                dict[tuple[str, str], tuple[str, dt.date]],
                frozenset[str],
            ]
        ] = [
            (
                ic,
                col[ic.column],
                col[ic.date_column] if ic.date_column else -1,
                {},
                _NOTHING.get(ic.kind, frozenset()),
            )
            for ic in ctx.mapping.indicators
        ]
        self._sex_cache: dict[str, str | None] = {}  # a handful of codes per agency
        # Derived values of repeated cells (names, dates, a household's address): the
        # same bytes as deriving them afresh, kept per worker and bounded.
        self._given_cache: dict[
            str | None, tuple[str | None, tuple[str, ...], tuple[str] | None]
        ] = {}
        self._family_cache: dict[
            tuple[str | None, str | None], tuple[str | None, tuple[str, ...]]
        ] = {}
        self._dob_cache: dict[str, _Dob] = {}
        self._address_cache: dict[tuple[str, ...], tuple[str | None, str | None, str]] = {}
        # record_ref's keyed hash, keyed once: each row copies it and adds its system id
        self._ref_hash = hashlib.blake2b(
            f"{ctx.agency_id}\x1f".encode(), key=ctx.record_ref_key, digest_size=16
        )
        # IdentityPayload's first keys, constant for the extract (see _encode_row)
        self._identity_head = (
            f'{{"format":{_json_str(IDENTITY_FORMAT)},"agency_id":{_json_str(ctx.agency_id)},'
            f'"extract_id":{_json_str(ctx.extract_id)},"record_ref":'
        )
        self._today = dt.date.today()
        order = self._encoder.exact_order
        # (column key, parser, position in the encoder's exact values or None, column)
        self._identifiers = [
            (kind.value, parse, order.index(kind) if kind in order else None, self._opt[kind.value])
            for kind, parse in (
                (ExactIdentifier.NHS_NUMBER, norm.nhs_number),
                (ExactIdentifier.NI_NUMBER, norm.ni_number),
                (ExactIdentifier.UPN, norm.upn),
            )
            if kind.value in self._opt
        ]

    def encode_block(self, first_line: int, text: str | bytes) -> ChunkResult:
        """Parse and encode a block of whole CSV rows starting at physical line ``first_line``.

        ``text`` is the rows' text, or their bytes in the mapping's encoding.
        """
        out = ChunkResult([], [], 0, 0)
        if isinstance(text, bytes):
            raw, encoding = text, self.ctx.mapping.csv.encoding
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                line = first_line + raw.count(b"\n", 0, exc.start)
                problem = f"not valid {encoding} text: {exc.reason} at byte {exc.start}"
                out.problems.append(Problem(line, None, problem, "failed"))
                raise _StopChunk(out) from exc
        today = dt.date.today()  # for two-digit years: the clock once per block
        if today != self._today:
            # a two-digit year may now pivot differently
            self._dob_cache.clear()
            for _, _, _, cache, _ in self._indicators:
                cache.clear()
            self._today = today
        width = self._width
        derives = self._derives
        if derives:
            out.derive_hits = [0] * len(derives)
            out.derive_missed = [0] * len(derives)
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
            if derives:
                self._derive(line, cells, out)
            try:
                problems: list[Problem] = []
                out.lines.append(self._encode_row(line, cells, problems, out))
                out.problems.extend(problems)
            except _RowProblem as exc:
                self._row_problem(out, line, exc.field, exc.problem)

    def _derive(self, line: int, cells: list[str], out: ChunkResult) -> None:
        """Append each derive's value to ``cells``, counting its matches and first miss."""
        for k, (step, sources, cache) in enumerate(self._derives):
            if len(sources) == 1:
                key = cells[sources[0]]
            else:
                key = "\x1f".join([cells[i] for i in sources])
            found = cache.get(key)
            if found is None:
                found = _remember(cache, key, step([cells[i] for i in sources]))
            value, status = found
            cells.append(value)
            if status == MATCHED:
                out.derive_hits[k] += 1
            elif status != BLANK and not out.derive_missed[k]:
                out.derive_missed[k] = line

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

    def _encode_row(
        self, line: int, cells: list[str], problems: list[Problem], out: ChunkResult
    ) -> str:
        ctx = self.ctx
        ident_map = ctx.mapping.identity
        system_id = cells[self._system_id].strip()
        if not system_id:
            raise _RowProblem(ident_map.system_id, "system id is blank")
        ref_hash = self._ref_hash.copy()
        ref_hash.update(system_id.encode())
        ref_bytes = ref_hash.digest()
        ref = ref_bytes.hex()

        if len(self._given) == 1:
            given_raw = cells[self._given[0]].strip() or None
        else:
            given_raw = " ".join([c for c in [cells[i].strip() for i in self._given] if c]) or None
        given_f = self._given_cache.get(given_raw)
        if given_f is None:
            given_f = _remember(self._given_cache, given_raw, _given_features(given_raw))
        given, canonical, middle = given_f
        family_raw = _cell(cells, self._i_family)
        former_raw = _cell(cells, self._i_former)
        family_f = self._family_cache.get((family_raw, former_raw))
        if family_f is None:
            family_f = _remember(
                self._family_cache,
                (family_raw, former_raw),
                _family_features(family_raw, former_raw),
            )
        family, parts = family_f

        dob_f: _Dob | None = None
        dob_raw = _cell(cells, self._i_dob)
        if dob_raw is not None:
            dob_f = self._dob_cache.get(dob_raw)
            if dob_f is None:
                dob_f = self._parse_dob(line, dob_raw, problems)
        dob = dob_f.date if dob_f is not None else None

        sex: str | None = None
        sex_raw = _cell(cells, self._i_sex)
        if sex_raw is not None:
            try:
                sex = self._sex_cache[sex_raw]
            except KeyError:
                try:
                    sex = norm.sex(sex_raw, ident_map.sex_values)
                    self._sex_cache[sex_raw] = sex
                except norm.NormaliseError as exc:
                    self._bad(problems, line, self._field("sex"), str(exc))

        address_raw = tuple([cells[i].strip() for i in self._address])
        address_f = self._address_cache.get(address_raw)
        if address_f is None:
            address_f = _remember(self._address_cache, address_raw, _address_features(address_raw))
        address, house_no, address_lines = address_f
        postcode: norm.Postcode | None = None
        postcode_raw = _cell(cells, self._i_postcode)
        if postcode_raw is not None:
            try:
                if self._any_postcode:
                    postcode = norm.postcode_any(postcode_raw)
                else:
                    postcode = norm.postcode(postcode_raw)
            except norm.NormaliseError as exc:
                self._bad(problems, line, self._field("postcode"), str(exc))

        exact: list[str | None] = [None] * len(self._encoder.exact_order)
        raw_ids: dict[str, str] = {}
        for key, parse, slot, idx in self._identifiers:
            raw = cells[idx].strip()
            if not raw:
                continue
            try:
                value = parse(raw)
            except norm.NormaliseError as exc:
                self._bad(problems, line, self._field(key), str(exc))
                continue
            if value:
                raw_ids[key] = value
                if slot is not None:
                    exact[slot] = value

        local_ids: list[tuple[str, str, str]] = []  # (type, value, token)
        for name, idx, cache in self._local:
            raw = cells[idx].strip()
            if not raw:
                continue
            local = cache.get(raw)
            if local is None:
                value = norm.local_identifier(raw)
                token = self._encoder.local_token(name, value) if value else ""
                local = _remember(cache, raw, (value or "", token))
            if local[0]:
                local_ids.append((name, local[0], local[1]))

        indicators = self._read_indicators(line, cells, dob, problems) if self._indicators else []

        # The encoder's features (_encoder._FEATURE_ORDER), built here rather than
        # through a NormalisedIdentity: this is the hot loop of an encode.
        features = (
            given,
            canonical,
            middle,
            family,
            parts,
            dob_f.dob8 if dob_f is not None else None,
            sex,
            address,
            house_no,
            (postcode.unit,) if postcode else None,
            (postcode.sector,) if postcode else None,
        )
        district = postcode.outward if postcode is not None and postcode.outward else None
        encoded = self._encoder.record_json(features, district, exact)

        # The compact JSON of IdentityPayload, built by hand: json.dumps made a new
        # encoder per call. Same escaping function and key order as identity_bytes,
        # so the bytes are the same (tests/agency_client/test_rows_properties.py).
        js = [self._identity_head, _json_str(ref), ',"system_id":', _json_str(system_id)]
        for member, value in (
            ("given_names", given_raw),
            ("family_name", family_raw),
            ("former_family_names", former_raw),
            ("date_of_birth", dob_f.iso if dob_f is not None else None),
            ("sex", sex),
            ("postcode", postcode.unit if postcode else postcode_raw),
        ):
            if value is not None:
                js += [',"', member, '":', _json_str(value)]
        if address_lines:
            js += [',"address_lines":', address_lines]
        for member, value in raw_ids.items():
            js += [',"', member, '":', _json_str(value)]
        if local_ids:
            pairs = ",".join([_json_str(n) + ":" + _json_str(v) for n, v, _ in local_ids])
            js += [',"local_identifiers":{', pairs, "}"]
        js.append("}")
        try:
            sealed = self._sealer.seal("".join(js).encode())
        except ValueError as too_big:
            raise _RowProblem("identity", str(too_big)) from too_big

        # Built by hand: every value is base64, hex, a number or a fixed vocabulary
        # word, none needs escaping, and json.dumps was the slowest step of a row.
        # tests/agency_client/test_extract.py validates every line against the model.
        line_out = ['{"record_ref":"', ref, '"', encoded]
        if local_ids:
            pairs = ",".join([f'"{n}":"{t}"' for n, _, t in local_ids])
            line_out += [',"local_tokens":{', pairs, "}"]
        if dob_f is not None:
            line_out.append(dob_f.clear)
        if sex is not None:
            line_out += [',"sex":"', sex, '"']
        # need to know (protocols.sends_district): a child's or an expectant parent's
        if district is not None and (
            (dob_f is not None and dob_f.district)
            or (indicators and any(i.startswith(_EXPECTANT) for i in indicators))
        ):
            line_out += [',"postcode_district":"', district, '"']
        if indicators:
            line_out += [',"indicators":[', ",".join(indicators), "]"]
        line_out += [',"sealed_identity":"', b64(sealed), '"}']
        out.refs += ref_bytes[:8]
        return "".join(line_out)

    def _parse_dob(self, line: int, raw: str, problems: list[Problem]) -> _Dob | None:
        """Parse and check a date of birth; cache it when it is good."""
        ctx = self.ctx
        try:
            dob = parse_date_any(raw, self._dob_formats, self._today)
        except norm.NormaliseError as exc:
            self._bad(problems, line, self._field("date_of_birth"), str(exc))
            return None
        if dob is None:
            return None
        problem = birth_date_problem(dob, ctx.extract_date)
        if problem is not None:
            self._bad(problems, line, self._field("date_of_birth"), problem)
            return None
        age, band = clear_age(_age(dob, ctx.extract_date))
        clear = f',"age":{age}' if band is None else f',"age_band":"{band}"'
        district = sends_district(age, False)
        return _remember(
            self._dob_cache, raw, _Dob(dob, yyyymmdd(dob), dob.isoformat(), clear, district)
        )

    def _field(self, key: str) -> str:
        return f"{key} (column {self.ctx.mapping.identity.columns()[key]!r})"

    def _read_indicators(
        self, line: int, cells: list[str], dob: dt.date | None, problems: list[Problem]
    ) -> list[str]:
        out: list[str] = []
        for ic, idx, date_idx, cache, nothing in self._indicators:
            raw = cells[idx].strip()
            if not raw or raw in nothing:
                continue  # blank, a "no" flag or a zero count: nothing to report
            date_cell = cells[date_idx] if date_idx >= 0 else ""
            found = cache.get((raw, date_cell))
            if found is None:
                try:
                    found = _remember(
                        cache, (raw, date_cell), self._indicator(ic, raw, date_cell), 4096
                    )
                except (ValueError, norm.NormaliseError) as exc:
                    self._bad(problems, line, _indicator_field(ic), str(exc))
                    continue
            text, when = found
            if not text:
                continue  # a "no" flag or a zero count
            if dob is not None and when < dob:
                problem = f"date {when.isoformat()} is before the date of birth"
                self._bad(problems, line, _indicator_field(ic), problem)
                continue
            out.append(text)
        return out

    def _indicator(self, ic: IndicatorColumn, raw: str, date_cell: str) -> tuple[str, dt.date]:
        """An indicator cell and its date cell as a JSON object ("" for none) and its date.

        Depends only on the two cells (and the extract date), so rows share the answer.
        """
        value = _indicator_value(ic, raw)
        if value is None:
            return "", self.ctx.extract_date
        when = indicator_date(ic, date_cell, self.ctx.extract_date, self._today)
        return f'{{"type":"{ic.type.value}","value":{value!r},"date":"{when.isoformat()}"}}', when


def birth_date_problem(dob: dt.date, extract_date: dt.date) -> str | None:
    """What is wrong with a parsed date of birth (encode reports it as bad input), or None."""
    if MIN_BIRTH_YEAR <= dob.year and dob <= extract_date:
        return None
    return (
        f"date of birth {dob.isoformat()} is not between {MIN_BIRTH_YEAR} "
        f"and the extract date {extract_date.isoformat()}"
    )


def indicator_date(
    ic: IndicatorColumn, date_cell: str, extract_date: dt.date, today: dt.date
) -> dt.date:
    """An indicator's date: its date cell's, else the extract date; ValueError (or
    NormaliseError) if the cell does not parse or is after the extract date."""
    when = extract_date
    if date_cell.strip():
        parsed = norm.parse_date(date_cell, ic.date_format, today=today)
        if parsed is not None:
            when = parsed
    if when > extract_date:
        raise ValueError(
            f"date {when.isoformat()} is after the extract date {extract_date.isoformat()}"
        )
    return when


def parse_date_any(
    raw: str, formats: tuple[str, ...], today: dt.date | None = None
) -> dt.date | None:
    """A date under the first of ``formats`` it matches; None for blank or placeholder.

    A date in one of the formats that is no day of the calendar (31/02/2013) is
    said to be so, rather than to match none of them.
    """
    if len(formats) == 1:
        return norm.parse_date(raw, formats[0], today=today)
    no_such_day: norm.NoSuchDay | None = None
    for fmt in formats:
        try:
            return norm.parse_date(raw, fmt, today=today)
        except norm.NoSuchDay as exc:
            no_such_day = no_such_day or exc
        except norm.NormaliseError:
            continue
    if no_such_day is not None:
        raise norm.NoSuchDay(str(no_such_day))
    raise norm.NormaliseError(
        f"date {raw!r} matches none of the expected formats {', '.join(map(repr, formats))}"
    )


def _indicator_field(ic: IndicatorColumn) -> str:
    return f"indicator {ic.type.value} (column {ic.column!r})"


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


# How an expectant-parent indicator starts in a record line (_indicator's JSON).
_EXPECTANT = f'{{"type":"{IndicatorType.EXPECTANT_PARENT.value}"'

# The escaping json.dumps(..., ensure_ascii=False) applies to a str (C-accelerated).
_json_str = json.encoder.encode_basestring


def _age(dob: dt.date, at: dt.date) -> int:
    return at.year - dob.year - ((at.month, at.day) < (dob.month, dob.day))


def encode_block_or_stop(encoder: RowEncoder, first_line: int, text: str | bytes) -> ChunkResult:
    """Encode a block; under the FAIL policy the result ends at the first problem."""
    # The cyclic garbage collector would walk the bounded caches (hundreds of
    # thousands of objects) over and over while a block allocates; rows make no
    # reference cycles, so it waits until the block is done (about 5% of the CPU).
    with gc_paused():
        try:
            result = encoder.encode_block(first_line, text)
        except _StopChunk as stop:
            result = stop.result
    if result.lines:
        result.data = ("\n".join(result.lines) + "\n").encode()
        result.count = len(result.lines)
        result.lines = []
    return result
