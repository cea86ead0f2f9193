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


def scan_text(text: str, needles: Needles) -> set[str]:
    """Needles found in ``text`` as whole words or word sequences (case-insensitive)."""
    return _find_tokens(text, _token_set(needles.all()))


def scan_extract(path: Path, needles: Needles) -> set[str]:
    """Needles found anywhere in an extract outside the ciphertext and filters.

    Every value is searched, not the protocol's own vocabulary (JSON keys and
    indicator type names). Clear values are matched word by word; base64 fields
    are decoded and searched for the longer needles, so a plaintext hidden in a
    filter, token or blob would be caught too. Indicator dates are event dates,
    so they are not compared with dates of birth.
    """
    found: set[str] = set()
    clear_wanted = _token_set(needles.names | needles.postcodes | needles.identifiers)
    all_wanted = _token_set(needles.all())
    binary = _BinaryNeedles(needles.all())
    with path.open("rb") as fh:
        for raw in fh:
            clear: list[str] = []
            dated: list[str] = []
            blobs: list[bytes] = []
            _split(json.loads(raw), clear, dated, blobs, in_base64=False)
            found |= _find_tokens(" | ".join(clear), all_wanted)
            found |= _find_tokens(" | ".join(dated), clear_wanted)
            for blob in blobs:
                found |= binary.find(blob)
    return found


def _split(
    obj: object, clear: list[str], dated: list[str], blobs: list[bytes], *, in_base64: bool
) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "indicators" and isinstance(v, list):
                for item in v:
                    if isinstance(item, dict):
                        dated.append(str(item.get("date")))
                        clear.append(str(item.get("value")))
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
