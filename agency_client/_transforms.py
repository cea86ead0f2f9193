"""Declared column transforms: a mapping file's ``[[derive]]`` steps, applied to cells.

Agencies' CSVs hold one person's name in one column ("SMITH, Benjamin John"), a
whole address in one cell, an NHS number inside a free-text identifiers column,
their own sex codes. A mapping file declares how to make the columns the
identity fields need; this module owns the five operations (split a name, split
an address, join columns, take a regular expression's match, map values) and
runs them on raw cell text. It never normalises (the normalisers do that
afterwards, exactly as for a column read directly), never reads files and never
keeps a value beyond what its caller caches.

Each step returns ``(value, status)``: status :data:`MATCHED` when the step
found what it was declared to find, :data:`BLANK` when its source was blank,
:data:`MISSED` when the source was filled but did not have the declared shape
(the value is then blank, or for ``map`` the unmapped value or the default).
``encode`` refuses a step that matches no row; ``check`` reports the misses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

MATCHED: Final = 1
BLANK: Final = 0
MISSED: Final = -1

NameShape = Literal["family_comma_given", "given_family", "family_given"]
NamePart = Literal["family", "given"]
AddressPart = Literal["street", "town", "line1", "line2", "line3", "last"]
Op = Literal["split_name", "split_address", "concat", "regex", "map"]

# Compared folded: lower case, dots removed ("Mr." is "mr").
TITLES: Final = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "master",
        "mstr",
        "rev",
        "revd",
        "prof",
        "sir",
        "dame",
        "lady",
        "lord",
        "fr",
        "cllr",
        "capt",
    }
)
SUFFIXES: Final = frozenset({"jr", "jnr", "junior", "sr", "snr", "senior", "ii", "iii", "iv"})
# Lower-case words that belong to the family name that follows them ("Ludwig van
# Beethoven"): a given-then-family name keeps them with the family name.
PARTICLES: Final = frozenset(
    {"van", "von", "de", "der", "den", "da", "di", "du", "del", "della", "le", "la", "ter", "ten"}
)


def _key(word: str) -> str:
    return word.replace(".", "").lower()


def _strip_titles(words: list[str]) -> list[str]:
    start = 0
    while start < len(words) and _key(words[start]) in TITLES:
        start += 1
    return words[start:]


def _strip_suffixes(words: list[str]) -> list[str]:
    end = len(words)
    while end > 1 and _key(words[end - 1].rstrip(",")) in SUFFIXES:
        end -= 1
    return words[:end]


def _is_upper(word: str) -> bool:
    return word.isupper()


def split_name(raw: str, shape: NameShape) -> tuple[str, str] | None:
    """(family, given) of a whole name written in ``shape``; None when it has another shape.

    Titles before either part and generational suffixes after either part are
    dropped. ``family_comma_given``: "SMITH, Benjamin John" (one comma).
    ``given_family``: "Benjamin John SMITH", the family name being the trailing run
    of upper-case words when the name mixes cases (else the last word) with any
    particles before it. ``family_given``: "SMITH Benjamin John", the family name
    being the leading run of upper-case words when the name mixes cases (else the
    first word). Given names are the remaining words, space-joined.
    """
    if shape == "family_comma_given":
        if raw.count(",") != 1:
            return None
        left, right = raw.split(",")
        family = _strip_suffixes(_strip_titles(left.split()))
        given = _strip_suffixes(_strip_titles(right.split()))
        if not family or not given:
            return None
        return " ".join(family), " ".join(given)
    if "," in raw:
        return None
    words = _strip_suffixes(_strip_titles(raw.split()))
    if len(words) < 2:
        return None
    mixed = any(map(_is_upper, words)) and not all(map(_is_upper, words))
    if shape == "given_family":
        cut = len(words) - 1
        if mixed and _is_upper(words[-1]):
            while cut > 1 and _is_upper(words[cut - 1]):
                cut -= 1
        while cut > 1 and words[cut - 1] in PARTICLES:
            cut -= 1
        return " ".join(words[cut:]), " ".join(words[:cut])
    cut = 1
    if mixed and _is_upper(words[0]):
        while cut < len(words) - 1 and _is_upper(words[cut]):
            cut += 1
    else:
        while cut < len(words) - 1 and words[cut - 1] in PARTICLES:
            cut += 1
    return " ".join(words[:cut]), " ".join(words[cut:])


def address_parts(raw: str, separator: str) -> list[str]:
    """The non-blank parts of a one-cell address, stripped."""
    return [p for p in (part.strip() for part in raw.split(separator)) if p]


def address_part(parts: Sequence[str], part: AddressPart) -> str | None:
    """One part of a split address; None when the address has no such part.

    ``street``: every part but a trailing town when there are two or more parts
    (joined with ", "), the only part otherwise; ``town``: the last part when
    there are two or more; ``line1``-``line3``: that part; ``last``: the last part.
    """
    if not parts:
        return None
    if part == "street":
        return ", ".join(parts[:-1] if len(parts) > 1 else parts)
    if part == "town":
        return parts[-1] if len(parts) > 1 else None
    if part == "last":
        return parts[-1]
    n = int(part[4:])
    return parts[n - 1] if len(parts) >= n else None


@dataclass(frozen=True, slots=True)
class Step:
    """One ``[[derive]]``: a new virtual column computed from its source cells.

    ``sources`` are column names (CSV headers or earlier derives). Picklable, so
    worker processes get their own copy.
    """

    name: str
    key: str  # "derive[2]": where the mapping declared it
    op: Op
    sources: tuple[str, ...]
    name_shape: NameShape = "family_comma_given"
    name_part: NamePart = "family"
    address: AddressPart = "street"
    separator: str = ","
    pattern: str = ""
    values: tuple[tuple[str, str], ...] = ()
    default: str | None = None

    def describe(self) -> str:
        """What the step does, for messages: ``derive[2] 'nhs' (regex on 'Identifiers')``."""
        on = " + ".join(repr(s) for s in self.sources)
        return f"{self.key} {self.name!r} ({self.op} on {on})"

    def compile(self) -> StepFunction:
        """The step as a function of its source cells (raw text) -> (value, status)."""
        return StepFunction(self)


class StepFunction:
    """A :class:`Step` ready to run: its regex compiled, its value map a dict."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self._regex = re.compile(step.pattern) if step.op == "regex" else None
        self._map = dict(step.values)

    def __call__(self, cells: Sequence[str]) -> tuple[str, int]:
        step = self.step
        if step.op == "concat":
            filled = [c.strip() for c in cells if c.strip()]
            return (step.separator.join(filled), MATCHED) if filled else ("", BLANK)
        raw = cells[0].strip()
        if step.op == "map":
            if not raw and raw not in self._map:
                return "", BLANK
            if raw in self._map:
                return self._map[raw], MATCHED
            return (raw if step.default is None else step.default), MISSED
        if not raw:
            return "", BLANK
        if step.op == "regex":
            assert self._regex is not None
            found = self._regex.search(raw)
            if found is None:
                return "", MISSED
            value = (found.group(1) if self._regex.groups else found.group(0)) or ""
            return (value.strip(), MATCHED) if value.strip() else ("", MISSED)
        if step.op == "split_name":
            split = split_name(raw, step.name_shape)
            if split is None:
                return "", MISSED
            return split[0 if step.name_part == "family" else 1], MATCHED
        value = address_part(address_parts(raw, step.separator), step.address)
        return (value, MATCHED) if value else ("", MISSED)
