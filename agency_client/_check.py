"""``agency-client check``: a dry run of a mapping over a CSV, before anything is encoded.

Reads every row, applies the mapping's derives and the normalisers, and reports
per mapped column (and derive) how many rows are filled and how many parse, and
the shapes that suggest the mapping does not fit the data: a given-name column
holding commas, a family name empty in every row, names written "SURNAME,
Forename" (split them with a derive), mixed address shapes, dates that parse
two ways under the declared formats, derives that do not match, system ids that
repeat, rows of the wrong width, cells that do not parse. Errors are what
``encode`` refuses with the same ``--on-bad`` policy: whatever the policy, a
column missing from the header, a repeated system id, a derive that matches no
row; under ``fail`` (encode's default) also a cell encode reports as bad input,
a row of the wrong width and a blank system id, since encode stops at the first
of them. Under ``skip-row`` or ``drop-field`` those are warnings saying what
encode leaves out. A cell is judged as encode judges it: the same normalisers,
the date of birth between 1900 and the extract date, an indicator's date cell
parsed and not after the extract date.

Nothing is written and nothing is encoded: no key or secret is needed. The
findings quote cell values and line numbers so someone can fix the source, so
the output stays inside the agency, like the problem report.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from protocols import LinkageSchema

from . import _normalise as norm
from ._errors import InputError
from ._mapping import AgencyMapping, IndicatorColumn, check_schema, resolve_columns
from ._rows import (
    BadRowPolicy,
    _indicator_value,
    birth_date_problem,
    indicator_date,
    parse_date_any,
)
from ._transforms import BLANK, MATCHED, address_parts

SAMPLES = 5  # line numbers quoted per finding
LISTED_REPEATS = 20  # repeated system ids listed one by one
SURNAME_COMMA = re.compile(r"\s*[^,\s][^,]*,\s*[^,\s][^,]*")
# A name column looks like "SURNAME, Forename" when at least this share of its
# filled cells has one comma with words on both sides.
SURNAME_COMMA_SHARE = 0.5


@dataclass
class Finding:
    """Something check found: an error (encode refuses it) or a warning."""

    level: Literal["error", "warning"]
    key: str  # the mapping key it concerns: "identity.family_name", "derive[2]"
    message: str
    lines: list[int] = field(default_factory=list)  # sample CSV lines
    # bad input: an error only because encode stops at it under --on-bad fail
    bad_input: bool = False

    def text(self) -> str:
        """One line: level, key, message and sample lines."""
        where = ""
        if self.lines:
            shown = ", ".join(map(str, self.lines[:SAMPLES]))
            where = f" (line{'s' if len(self.lines) > 1 else ''} {shown}"
            where += ", ...)" if len(self.lines) > SAMPLES else ")"
        return f"{self.level}: {self.key}: {self.message}{where}"


@dataclass
class ColumnReport:
    """How one mapped column or derive reads: filled rows and rows that parse."""

    key: str
    column: str
    filled: int = 0
    parsed: int = 0
    bad_lines: list[int] = field(default_factory=list)  # cells encode reports as bad input
    blank_lines: list[int] = field(default_factory=list)  # cells encode reads as blank
    bad_example: str = ""  # what is wrong with the first bad cell

    def rate(self) -> str:
        """Parsed share of the filled rows, as text."""
        return f"{100 * self.parsed / self.filled:.1f}%" if self.filled else "-"


@dataclass
class CheckReport:
    """Everything check found in one CSV under one mapping."""

    csv_path: Path
    mapping_path: str
    policy: BadRowPolicy = BadRowPolicy.FAIL
    rows: int = 0
    columns: list[ColumnReport] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # where encode --on-bad fail stops: (line, "mapping key, column"); None: it does not
    stop: tuple[int, str] | None = None

    @property
    def errors(self) -> list[Finding]:
        """The findings encode would refuse."""
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """The findings worth a look."""
        return [f for f in self.findings if f.level == "warning"]

    @property
    def exit_status(self) -> int:
        """0 clean, 1 warnings only, 2 errors."""
        return 2 if self.errors else 1 if self.findings else 0

    def verdict(self) -> str:
        """The last line: counts, and whether encode with the same --on-bad accepts the file."""
        errors, warnings = self.errors, self.warnings
        if not errors:
            if not warnings:
                return "clean: no errors, no warnings"
            encode = (
                "encode" if self.policy is BadRowPolicy.FAIL else f"encode --on-bad {self.policy}"
            )
            return f"{len(warnings)} warnings, no errors: {encode} would accept this file"
        text = f"{len(errors)} errors, {len(warnings)} warnings: encode would refuse this file"
        if self.stop is not None:
            line, key = self.stop
            text += f": with --on-bad fail it stops at line {line} ({key})"
            if all(f.bad_input for f in errors):
                text += "; --on-bad skip-row or drop-field would go on past bad input"
        return text


class CsvRows:
    """A CSV opened under a mapping: its header, then (line, cells) per row; close when done.

    Lines are physical lines of the file (the header is line 1), as encode reports them.
    """

    def __init__(self, path: Path, mapping: AgencyMapping) -> None:
        self.path = path
        self.encoding = mapping.csv.encoding
        try:
            self._fh = path.open(encoding=mapping.csv.encoding, newline="")
        except OSError as exc:
            raise InputError(str(path), 0, None, f"cannot open: {exc.strerror}") from exc
        self._reader = csv.reader(self._fh, delimiter=mapping.csv.delimiter, strict=True)
        try:
            self.header = self._read_header()
        except InputError:
            self._fh.close()
            raise

    def _read_header(self) -> list[str]:
        try:
            header = [h.strip() for h in next(self._reader, [])]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(str(self.path), 1, None, f"unreadable header: {exc}") from exc
        if not header:
            raise InputError(str(self.path), 1, None, "the file is empty: no header row")
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise InputError(str(self.path), 1, name, "column name appears twice in the header")
            seen.add(name)
        return header

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        consumed = self._reader.line_num
        while True:
            line = consumed + 1
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(str(self.path), line, None, f"malformed CSV: {exc}") from exc
            except UnicodeDecodeError as exc:
                problem = f"not valid {self.encoding} text: {exc.reason}"
                raise InputError(str(self.path), line, None, problem) from exc
            consumed = self._reader.line_num
            if cells:
                yield line, cells


def repeated_ids(path: Path, mapping: AgencyMapping) -> list[tuple[str, list[int]]]:
    """Each system id that appears on more than one row, with those rows' lines."""
    first: dict[str, int] = {}
    repeats: dict[str, list[int]] = {}
    with CsvRows(path, mapping) as rows:
        columns = resolve_columns(mapping, rows.header, str(path))
        index = columns[mapping.identity.system_id]
        width = len(rows.header)
        # the system id may itself be derived: run the derives (a failure path only)
        steps = [(step.compile(), [columns[c] for c in step.sources]) for step in mapping.steps()]
        for line, cells in rows:
            if len(cells) != width:
                continue  # encode reported or skipped it
            for run, sources in steps:
                cells.append(run([cells[i] for i in sources])[0])
            value = cells[index].strip()
            if not value:
                continue
            seen = first.setdefault(value, line)
            if seen != line:
                repeats.setdefault(value, [seen]).append(line)
    return sorted(repeats.items(), key=lambda item: item[1][0])


def describe_repeats(repeats: list[tuple[str, list[int]]]) -> str:
    """Repeated system ids as text: ``'P001' on lines 2 and 9; ...``."""
    shown = []
    for value, lines in repeats[:LISTED_REPEATS]:
        shown.append(f"{value!r} on lines {', '.join(map(str, lines[:-1]))} and {lines[-1]}")
    more = f"; and {len(repeats) - LISTED_REPEATS} more" if len(repeats) > LISTED_REPEATS else ""
    return "; ".join(shown) + more


# How encode reads a cell: "ok", "blank" (a placeholder or no usable text: read as
# missing) or "bad" (reported as bad input), with what is wrong when it is bad.
_Reading = tuple[Literal["ok", "blank", "bad"], str]
_Parser = Callable[[str, str], _Reading]  # (stripped cell, its date cell or "") -> reading


class _Column:
    """One mapped column being checked: its report and how a cell is judged."""

    def __init__(
        self, field: str, key: str, column: str, index: int, parse: _Parser, date_index: int = -1
    ) -> None:
        self.field = field  # "family_name", "given_names[0]", "indicators"
        self.report = ColumnReport(key, column)
        self.index = index
        self.date_index = date_index  # an indicator's date column; -1: none
        self.parse = parse
        self.cache: dict[tuple[str, str], _Reading] = {}
        self.comma_lines: list[int] = []
        self.comma = 0
        self.surname_comma = 0


def check_csv(
    path: Path,
    mapping: AgencyMapping,
    schema: LinkageSchema,
    *,
    policy: BadRowPolicy = BadRowPolicy.FAIL,
    extract_date: dt.date | None = None,
    today: dt.date | None = None,
) -> CheckReport:
    """Dry-run ``mapping`` over the CSV at ``path`` as encode would with ``policy``; no writes.

    ``extract_date`` (default: today, as encode's) bounds dates of birth and
    indicator dates; ``today`` places two-digit years.
    """
    today = today or dt.date.today()
    report = CheckReport(path, mapping.path, policy)
    check_schema(mapping, schema)
    with CsvRows(path, mapping) as rows:
        try:
            columns = resolve_columns(mapping, rows.header, str(path))
        except InputError as exc:
            report.findings.append(Finding("error", "(columns)", exc.problem, [1]))
            return report
        _scan(report, mapping, schema, extract_date or today, today, rows, columns)
    return report


def _scan(
    report: CheckReport,
    mapping: AgencyMapping,
    schema: LinkageSchema,
    extract_date: dt.date,
    today: dt.date,
    rows: CsvRows,
    columns: dict[str, int],
) -> None:
    header = rows.header
    ident = mapping.identity
    width = len(header)
    steps = [(step, step.compile(), [columns[s] for s in step.sources]) for step in mapping.steps()]
    step_cache: list[dict[str, tuple[str, int]]] = [{} for _ in steps]
    step_reports = [ColumnReport(step.key, step.name) for step, _, _ in steps]
    step_missed: list[list[int]] = [[] for _ in steps]
    # split_address derives: rows with one part, rows with a town part
    shapes: list[tuple[list[int], list[int]]] = [([], []) for _ in steps]

    checked = [
        _Column(
            key,
            f"identity.{key}",
            col,
            columns[col],
            _parser(key, mapping, schema, extract_date, today),
        )
        for key, col in ident.columns().items()
        if key != "system_id"
    ]
    for ic in mapping.indicators:
        checked.append(
            _Column(
                "indicators",
                f"indicators.{ic.type.value}",
                ic.column,
                columns[ic.column],
                _indicator_parser(ic, extract_date, today),
                columns[ic.date_column] if ic.date_column else -1,
            )
        )
    dob_key = "date_of_birth"
    ambiguous: dict[str, str] = {}  # raw date -> how it reads two ways
    ambiguous_lines: list[int] = []
    system = columns[ident.system_id]
    first_seen: dict[str, int] = {}
    repeats: dict[str, list[int]] = {}
    blank_ids: list[int] = []
    short_rows: list[int] = []

    for line, cells in rows:
        report.rows += 1
        if len(cells) != width:
            short_rows.append(line)
            continue
        for k, (step, run, sources) in enumerate(steps):
            key = "\x1f".join([cells[i] for i in sources])
            found = step_cache[k].get(key)
            if found is None:
                found = run([cells[i] for i in sources])
                if len(step_cache[k]) < 1 << 16:
                    step_cache[k][key] = found
            value, status = found
            cells.append(value)
            if status != BLANK:
                step_reports[k].filled += 1
            if status == MATCHED:
                step_reports[k].parsed += 1
            elif status != BLANK:
                step_missed[k].append(line)
            if step.op == "split_address" and status != BLANK:
                n = len(address_parts(cells[sources[0]], step.separator))
                (shapes[k][1] if n > 1 else shapes[k][0]).append(line)
        system_id = cells[system].strip()
        if not system_id:
            blank_ids.append(line)
        else:
            seen = first_seen.setdefault(system_id, line)
            if seen != line:
                repeats.setdefault(system_id, [seen]).append(line)
        for col in checked:
            raw = cells[col.index].strip()
            if not raw:
                continue
            col.report.filled += 1
            date_cell = cells[col.date_index] if col.date_index >= 0 else ""
            judged = col.cache.get((raw, date_cell))
            if judged is None:
                judged = col.parse(raw, date_cell)
                if len(col.cache) < 1 << 16:
                    col.cache[raw, date_cell] = judged
            verdict, problem = judged
            if verdict == "ok":
                col.report.parsed += 1
            elif verdict == "blank":
                col.report.blank_lines.append(line)
            else:
                if not col.report.bad_lines:
                    col.report.bad_example = problem
                col.report.bad_lines.append(line)
            if "," in raw:
                col.comma += 1
                col.comma_lines.append(line)
                if SURNAME_COMMA.fullmatch(raw):
                    col.surname_comma += 1
            if col.field == dob_key and len(ident.dob_formats) > 1:
                reading = ambiguous.get(raw)
                if reading is None:
                    reading = ambiguous[raw] = _two_ways(raw, ident.dob_formats, today)
                if reading:
                    ambiguous_lines.append(line)

    _findings(report, mapping, checked, step_reports, step_missed, shapes)
    if short_rows:
        report.findings.append(
            _bad_input(
                report.policy,
                "(rows)",
                f"{len(short_rows)} rows do not have the header's {width} fields",
                "leaves these rows out",
                short_rows,
            )
        )
    if repeats:
        listed = sorted(repeats.items(), key=lambda item: item[1][0])
        report.findings.append(
            Finding(
                "error",
                "identity.system_id",
                f"{len(listed)} system ids appear on more than one row (column "
                f"{ident.system_id!r}): {describe_repeats(listed)}",
            )
        )
    if blank_ids:
        report.findings.append(
            _bad_input(
                report.policy,
                "identity.system_id",
                f"{len(blank_ids)} rows have a blank system id",
                "leaves these rows out",
                blank_ids,
            )
        )
    if ambiguous_lines:
        sample = next(v for v in ambiguous.values() if v)
        report.findings.append(
            Finding(
                "warning",
                "identity.date_formats",
                f"{len(ambiguous_lines)} dates of birth parse two ways under the declared "
                f"formats ({sample}); encode uses the first format that parses",
                ambiguous_lines,
            )
        )
    report.columns = step_reports + [c.report for c in checked]
    # where encode --on-bad fail stops: the first bad row, and in it the first field
    # encode reads (the row's width, the system id, then the columns in mapping order)
    stops = [(short_rows, "(rows)"), (blank_ids, "identity.system_id")]
    stops += [(c.report.bad_lines, f"{c.report.key}, column {c.report.column!r}") for c in checked]
    firsts = [(lines[0], order, key) for order, (lines, key) in enumerate(stops) if lines]
    if firsts:
        line, _, key = min(firsts)
        report.stop = (line, key)


def _bad_input(
    policy: BadRowPolicy, key: str, what: str, lenient: str, lines: list[int]
) -> Finding:
    """Bad input as encode with ``policy`` treats it: an error under fail, else a warning."""
    if policy is BadRowPolicy.FAIL:
        message = f"{what}: encode --on-bad fail stops at the first"
        return Finding("error", key, message, lines, bad_input=True)
    return Finding("warning", key, f"{what}: encode --on-bad {policy} {lenient}", lines)


def _findings(
    report: CheckReport,
    mapping: AgencyMapping,
    checked: list[_Column],
    step_reports: list[ColumnReport],
    step_missed: list[list[int]],
    shapes: list[tuple[list[int], list[int]]],
) -> None:
    add = report.findings.append
    for step, (done, missed, (one, several)) in zip(
        mapping.steps(), zip(step_reports, step_missed, shapes, strict=True), strict=True
    ):
        if not report.rows:
            break
        if done.parsed == 0:
            why = (
                "its source is blank in every row"
                if done.filled == 0
                else f"none of the {done.filled} filled rows has the declared shape"
            )
            add(Finding("error", step.key, f"{step.describe()} matches no row: {why}", missed))
        elif missed:
            add(
                Finding(
                    "warning",
                    step.key,
                    f"{step.describe()} does not match {len(missed)} of "
                    f"the {done.filled} filled rows",
                    missed,
                )
            )
        if one and several:
            add(
                Finding(
                    "warning",
                    step.key,
                    f"mixed address shapes: {len(several)} rows have a "
                    f"town part (two or more parts) and {len(one)} rows have one part",
                    one,
                )
            )
    for col in checked:
        r, key, name = col.report, col.report.key, col.field
        name_column = name.startswith(("given_names", "family_name", "former_family_names"))
        if name.startswith("given_names") and col.comma:
            add(
                Finding(
                    "warning",
                    key,
                    f"given-name column {r.column!r} holds commas in {col.comma} rows",
                    col.comma_lines,
                )
            )
        if name_column and r.filled and col.surname_comma >= SURNAME_COMMA_SHARE * r.filled:
            add(
                Finding(
                    "warning",
                    key,
                    f"column {r.column!r} looks like 'SURNAME, Forename' in "
                    f"{col.surname_comma} of {r.filled} rows: split it with a [[derive]] "
                    'using split_name = "family_comma_given"',
                    col.comma_lines,
                )
            )
        if name == "family_name" and r.filled == 0 and report.rows:
            add(Finding("warning", key, f"family name column {r.column!r} is empty in every row"))
        if name.startswith("address_lines") and len(mapping.identity.address_lines) == 1:
            if col.comma and col.comma < r.filled:
                add(
                    Finding(
                        "warning",
                        key,
                        f"mixed address shapes in {r.column!r}: {col.comma} "
                        f"rows have comma-separated parts and {r.filled - col.comma} do not"
                        "; consider a split_address derive",
                        col.comma_lines,
                    )
                )
        if r.bad_lines:
            lenient = (
                "leaves these rows out"
                if report.policy is BadRowPolicy.SKIP_ROW
                else "keeps these rows without the cell"
            )
            add(
                _bad_input(
                    report.policy,
                    key,
                    f"{len(r.bad_lines)} of {r.filled} filled cells of {r.column!r} are bad "
                    f"input (first: {r.bad_example})",
                    lenient,
                    r.bad_lines,
                )
            )
        if r.blank_lines:
            add(
                Finding(
                    "warning",
                    key,
                    f"{len(r.blank_lines)} of {r.filled} filled cells of {r.column!r} hold no "
                    "usable value (a placeholder such as 'unknown'); encode reads them as blank",
                    r.blank_lines,
                )
            )


def _two_ways(raw: str, formats: tuple[str, ...], today: dt.date) -> str:
    """How ``raw`` reads as two different dates under ``formats``, or "" when it does not."""
    readings: dict[dt.date, str] = {}
    for fmt in formats:
        try:
            day = norm.parse_date(raw, fmt, today=today)
        except norm.NormaliseError:
            continue
        if day is not None:
            readings.setdefault(day, fmt)
    if len(readings) < 2:
        return ""
    (a, fa), (b, fb) = list(readings.items())[:2]
    return f"{raw!r} is {a.isoformat()} under {fa!r} and {b.isoformat()} under {fb!r}"


def _ok(fn: Callable[[str], object]) -> _Parser:
    def parse(raw: str, _date_cell: str) -> _Reading:
        try:
            value = fn(raw)
        except (norm.NormaliseError, ValueError) as exc:
            return "bad", str(exc)
        return ("blank", "") if value in (None, (), "") else ("ok", "")

    return parse


def _parser(
    key: str, mapping: AgencyMapping, schema: LinkageSchema, extract_date: dt.date, today: dt.date
) -> _Parser:
    ident = mapping.identity
    if key.startswith("given_names"):
        return _ok(norm.given_names)
    if key in ("family_name", "former_family_names"):
        return _ok(norm.family_name)
    if key == "date_of_birth":

        def dob(raw: str, _date_cell: str) -> _Reading:
            # as encode's RowEncoder._parse_dob
            try:
                day = parse_date_any(raw, ident.dob_formats, today)
            except norm.NormaliseError as exc:
                return "bad", str(exc)
            if day is None:
                return "blank", ""
            problem = birth_date_problem(day, extract_date)
            return ("ok", "") if problem is None else ("bad", problem)

        return dob
    if key == "sex":
        return _ok(lambda raw: norm.sex(raw, ident.sex_values) or "?")
    if key == "postcode":
        return _ok(norm.postcode_any if schema.postcode_format == "any" else norm.postcode)
    if key == "nhs_number":
        return _ok(norm.nhs_number)
    if key == "ni_number":
        return _ok(norm.ni_number)
    if key == "upn":
        return _ok(norm.upn)
    if key.startswith("identifiers."):
        return _ok(norm.local_identifier)
    return _ok(lambda raw: raw)  # address lines: any text


def _indicator_parser(ic: IndicatorColumn, extract_date: dt.date, today: dt.date) -> _Parser:
    def parse(raw: str, date_cell: str) -> _Reading:
        # as encode's RowEncoder._indicator: a "no" or a zero is fine and needs no date
        try:
            value = _indicator_value(ic, raw)
        except (norm.NormaliseError, ValueError) as exc:
            return "bad", str(exc)
        if value is not None:
            try:
                indicator_date(ic, date_cell, extract_date, today)
            except (norm.NormaliseError, ValueError) as exc:
                return "bad", f"{exc} (column {ic.date_column!r})"
        return "ok", ""

    return parse
