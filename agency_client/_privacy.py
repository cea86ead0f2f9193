"""Plaintext-leak scanning: prove that no identity reaches what we send or store.

:func:`identity_needles` collects every identifying value from an agency's source
CSV (names, dates of birth in the source format and ISO, full postcodes with and
without the space, NHS/NI/UPN numbers and the agency's own identifiers), reading
derived columns as the encoder does. :func:`scan_extract` and
:func:`scan_text` look for them: in clear text as whole words, and inside
decoded base64 fields for values long enough that a chance match is negligible.
Coarse attributes the architecture allows in clear (postcode district, age,
sex) are not needles.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import _normalise as norm
from ._check import CsvRows
from ._mapping import AgencyMapping, resolve_columns

_BASE64_FIELDS = frozenset(
    {
        "clk",
        "address_clk",
        "sealed_identity",
        "signature",
        "exact_tokens",
        "local_tokens",
        "blocking_keys",
    }
)
MIN_BINARY_NEEDLE = 6  # shorter needles match random bytes by chance


@dataclass
class Needles:
    """Identifying values to search for, by kind."""

    names: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    postcodes: set[str] = field(default_factory=set)
    identifiers: set[str] = field(default_factory=set)

    def all(self) -> set[str]:
        """Every needle."""
        return self.names | self.dates | self.postcodes | self.identifiers

    def update(self, other: Needles) -> None:
        """Add another set of needles."""
        self.names |= other.names
        self.dates |= other.dates
        self.postcodes |= other.postcodes
        self.identifiers |= other.identifiers


def identity_needles(csv_path: Path, mapping: AgencyMapping) -> Needles:
    """Every identifying value in an agency CSV, as the needles to scan for.

    Columns are read as the encoder reads them: a mapping's derived columns (a
    surname split out of a whole name, an NHS number taken out of free text) are
    computed first, and dates are tried in each of the mapping's formats.
    """
    ident = mapping.identity
    out = Needles()
    with CsvRows(csv_path, mapping) as rows:
        columns = resolve_columns(mapping, rows.header, str(csv_path))
        width = len(rows.header)
        steps = [(step.compile(), [columns[c] for c in step.sources]) for step in mapping.steps()]

        def get(cells: list[str], col: str | None) -> str:
            index = columns.get(col, -1) if col else -1
            return cells[index].strip() if 0 <= index < len(cells) else ""

        for _, cells in rows:
            if len(cells) == width:
                for run, sources in steps:
                    cells.append(run([cells[i] for i in sources])[0])
            for col in (*ident.given_names, ident.family_name, ident.former_family_names):
                for word in re.split(r"[\s\-]+", get(cells, col)):
                    if len(word) >= 3 and word.lower() not in {"mr", "mrs", "miss", "dr", "ms"}:
                        out.names.add(word)
            if raw := get(cells, ident.date_of_birth):
                out.dates.add(raw)
                for fmt in ident.dob_formats:
                    try:
                        parsed = norm.parse_date(raw, fmt)
                    except norm.NormaliseError:
                        continue
                    if parsed is not None:
                        out.dates.add(parsed.isoformat())
            if raw := get(cells, ident.postcode):
                for parse in (norm.postcode, norm.postcode_any):
                    try:
                        pc = parse(raw)
                    except norm.NormaliseError:
                        continue
                    if pc is not None:
                        out.postcodes.update({pc.unit, pc.unit.replace(" ", "")})
            for col in (ident.nhs_number, ident.ni_number, ident.upn, ident.system_id):
                if len(raw := get(cells, col)) >= 5:
                    out.identifiers.add(raw)
            for col in ident.identifiers.values():
                if len(raw := get(cells, col)) >= 5:
                    out.identifiers.add(raw)
                    if (value := norm.local_identifier(raw)) and len(value) >= 5:
                        out.identifiers.add(value)
    return out


_TOKEN = re.compile(r"[a-z0-9]+")
MAX_NEEDLE_TOKENS = 4


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text.lower()))


def _token_set(needles: Iterable[str]) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for n in needles:
        toks = _tokens(n)
        if toks and len(toks) <= MAX_NEEDLE_TOKENS:
            out[toks] = n
    return out


def _find_tokens(text: str, wanted: dict[tuple[str, ...], str]) -> set[str]:
    toks = _tokens(text)
    found: set[str] = set()
    for size in range(1, MAX_NEEDLE_TOKENS + 1):
        for i in range(len(toks) - size + 1):
            hit = wanted.get(toks[i : i + size])
            if hit is not None:
                found.add(hit)
    return found


class _BinaryNeedles:
    """Finds long needles inside decoded bytes by their first bytes (a set lookup per offset)."""

    def __init__(self, needles: Iterable[str]) -> None:
        self._by_prefix: dict[bytes, list[bytes]] = {}
        for n in needles:
            for form in {n, n.lower(), n.upper()}:
                raw = form.encode()
                if len(raw) >= MIN_BINARY_NEEDLE:
                    self._by_prefix.setdefault(raw[:MIN_BINARY_NEEDLE], []).append(raw)

    def find(self, blob: bytes) -> set[str]:
        found: set[str] = set()
        prefixes = self._by_prefix
        for i in range(len(blob) - MIN_BINARY_NEEDLE + 1):
            candidates = prefixes.get(blob[i : i + MIN_BINARY_NEEDLE])
            if candidates:
                found |= {c.decode() for c in candidates if blob.startswith(c, i)}
        return found


class Scanner:
    """Searches text, JSON values and bytes for a fixed set of needles (built once)."""

    def __init__(self, needles: Needles) -> None:
        self._all = _token_set(needles.all())
        self._no_dates = _token_set(needles.names | needles.postcodes | needles.identifiers)
        self._binary = _BinaryNeedles(needles.all())

    def text(self, text: str) -> set[str]:
        """Needles in ``text`` as whole words or word sequences (case-insensitive)."""
        return _find_tokens(text, self._all)

    def event_date(self, text: str) -> set[str]:
        """Needles in an event date: anything but a date (events can share a birthday)."""
        return _find_tokens(text, self._no_dates)

    def binary(self, blob: bytes) -> set[str]:
        """Needles of six or more characters inside raw bytes."""
        return self._binary.find(blob)

    def json(self, value: object) -> set[str]:
        """Needles anywhere in a JSON value, read as :func:`scan_extract` reads a line.

        Every value is searched, not the protocol's own vocabulary (keys and
        indicator type names); base64 fields are decoded and searched as bytes;
        indicator dates are event dates.
        """
        clear: list[str] = []
        dated: list[str] = []
        blobs: list[bytes] = []
        _split(value, clear, dated, blobs, in_base64=False)
        found = self.text(" | ".join(clear)) | self.event_date(" | ".join(dated))
        for blob in blobs:
            found |= self.binary(blob)
        return found


def scan_text(text: str, needles: Needles) -> set[str]:
    """Needles found in ``text`` as whole words or word sequences (case-insensitive)."""
    return Scanner(needles).text(text)


def scan_extract(path: Path, needles: Needles) -> set[str]:
    """Needles found anywhere in an extract outside the ciphertext and filters.

    Clear values are matched word by word; base64 fields are decoded and
    searched for the longer needles, so a plaintext hidden in a filter, token or
    blob would be caught too.
    """
    scanner = Scanner(needles)
    found: set[str] = set()
    with path.open("rb") as fh:
        for raw in fh:
            found |= scanner.json(json.loads(raw))
    return found


def _split(
    obj: object, clear: list[str], dated: list[str], blobs: list[bytes], *, in_base64: bool
) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "indicators" and isinstance(v, list):
                for item in v:
                    if isinstance(item, dict):
                        # the type is vocabulary; every other field is data
                        for field_name, x in item.items():
                            if field_name == "date":
                                dated.append(str(x))
                            elif field_name != "type":
                                _split(x, clear, dated, blobs, in_base64=in_base64)
                continue
            _split(v, clear, dated, blobs, in_base64=in_base64 or k in _BASE64_FIELDS)
    elif isinstance(obj, list):
        for v in obj:
            _split(v, clear, dated, blobs, in_base64=in_base64)
    elif isinstance(obj, str) and in_base64:
        try:
            blobs.append(base64.b64decode(obj, validate=True))
        except binascii.Error:
            clear.append(obj)
    elif obj is not None:
        clear.append(str(obj))
