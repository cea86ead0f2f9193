"""Plaintext-leak scanning: prove that no identity reaches what we send or store.

:func:`identity_needles` collects every identifying value from an agency's source
CSV (names, dates of birth in the source format and ISO, full postcodes with and
without the space, NHS/NI/UPN numbers). :func:`scan_extract` and
:func:`scan_text` look for them: in clear text as whole words, and inside
decoded base64 fields for values long enough that a chance match is negligible.
Coarse attributes the architecture allows in clear (postcode district, age,
sex) are not needles.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import _normalise as norm
from ._mapping import AgencyMapping

_BASE64_FIELDS = frozenset(
    {"clk", "address_clk", "sealed_identity", "signature", "exact_tokens", "blocking_keys"}
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
    """Every identifying value in an agency CSV, as the needles to scan for."""
    ident = mapping.identity
    out = Needles()
    with csv_path.open(encoding=mapping.csv.encoding, newline="") as fh:
        for row in csv.DictReader(fh, delimiter=mapping.csv.delimiter):
            for col in (*ident.given_names, ident.family_name, ident.former_family_names):
                value = (row.get(col) or "").strip() if col else ""
                for word in re.split(r"[\s\-]+", value):
                    if len(word) >= 3 and word.lower() not in {"mr", "mrs", "miss", "dr", "ms"}:
                        out.names.add(word)
            if ident.date_of_birth and (raw := (row.get(ident.date_of_birth) or "").strip()):
                out.dates.add(raw)
                try:
                    parsed = norm.parse_date(raw, ident.date_format)
                except norm.NormaliseError:
                    parsed = None
                if parsed is not None:
                    out.dates.add(parsed.isoformat())
            if ident.postcode and (raw := (row.get(ident.postcode) or "").strip()):
                try:
                    pc = norm.postcode(raw)
                except norm.NormaliseError:
                    pc = None
                if pc is not None:
                    out.postcodes.update({pc.unit, pc.unit.replace(" ", "")})
            for col in (ident.nhs_number, ident.ni_number, ident.upn, ident.system_id):
                if col and (raw := (row.get(col) or "").strip()) and len(raw) >= 5:
                    out.identifiers.add(raw)
    return out


def _word_pattern(needles: Iterable[str]) -> re.Pattern[str] | None:
    items = sorted({n.lower() for n in needles if n}, key=len, reverse=True)
    if not items:
        return None
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, items)) + r")(?![a-z0-9])")


def scan_text(text: str, needles: Needles) -> set[str]:
    """Needles found in ``text`` as whole words (case-insensitive)."""
    pattern = _word_pattern(needles.all())
    if pattern is None:
        return set()
    return set(pattern.findall(text.lower()))


def scan_extract(path: Path, needles: Needles) -> set[str]:
    """Needles found anywhere in an extract outside the ciphertext and filters.

    Clear fields are searched for whole-word matches; base64 fields are decoded
    and searched for the longer needles, so a plaintext hidden in a filter or a
    token would be caught too. Indicator dates are events, not dates of birth,
    so they are not compared with the date needles.
    """
    found: set[str] = set()
    clear_pattern = _word_pattern(needles.names | needles.postcodes | needles.identifiers)
    date_pattern = _word_pattern(needles.dates)
    binary = [n.encode() for n in needles.all() if len(n) >= MIN_BINARY_NEEDLE]
    with path.open("rb") as fh:
        for raw in fh:
            obj = json.loads(raw)
            clear: list[str] = []
            dated: list[str] = []
            blobs: list[bytes] = []
            _split(obj, clear, dated, blobs, in_base64=False, key="")
            text = " ".join(clear).lower()
            if clear_pattern is not None:
                found |= set(clear_pattern.findall(text))
            if date_pattern is not None:
                found |= set(date_pattern.findall(" ".join([text, *dated]).lower()))
            for blob in blobs:
                found |= {n.decode() for n in binary if n in blob}
    return found


def _split(
    obj: object,
    clear: list[str],
    dated: list[str],
    blobs: list[bytes],
    *,
    in_base64: bool,
    key: str,
) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            clear.append(str(k))
            if k == "indicators":
                for item in v if isinstance(v, list) else []:
                    if isinstance(item, dict):
                        # indicator dates are event dates; their other fields are clear
                        clear.extend(str(x) for kk, x in item.items() if kk != "date")
                continue
            _split(v, clear, dated, blobs, in_base64=in_base64 or k in _BASE64_FIELDS, key=k)
    elif isinstance(obj, list):
        for v in obj:
            _split(v, clear, dated, blobs, in_base64=in_base64, key=key)
    elif isinstance(obj, str) and in_base64:
        try:
            blobs.append(base64.b64decode(obj, validate=True))
        except binascii.Error:
            clear.append(obj)
    elif obj is not None:
        clear.append(str(obj))
