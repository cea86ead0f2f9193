"""Deterministic synthetic demo population: plaintext agency extracts plus ground truth.

This module owns the fake data used for demos and for measuring linkage quality:
households at plausible English addresses, their members, the Troubled Families
problems each family has, and one CSV per partner agency (school, children's
social care, early help, police, DWP, housing, health) in that agency's own
column names and date format, with a mapping file for each and realistic
recording errors. The truth directory says which rows are the same person, which
people share a household and which problems each household really has.

Every household is generated from its own ``random.Random`` seeded from
``(seed, household index)``, and system ids are derived from the household index,
so chunks of households can be made in parallel processes and the output is
byte-identical for a given configuration whatever the number of workers. Rows are
written as they are made (shuffled within small buffers), so memory stays flat.
All files are written to temporary names and renamed only when everything has
succeeded; a failure leaves any earlier output untouched.

Truth files (``truth/``): ``records.csv`` maps each agency row to its person and
household and lists the recording errors applied to it; ``persons.csv`` and
``households.csv`` hold the true identities, family status and problems.

The output is plaintext identity data by design. It must never be used for, or
mixed with, real people's data, and nothing here may read real data.
"""

from __future__ import annotations

import bisect
import csv
import datetime
import functools
import itertools
import json
import math
import multiprocessing
import operator
import os
import random
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from protocols import IndicatorType, ProblemArea, open_private, private_dir

from . import _synthetic_names as names
from ._errors import AgencyClientError
from ._synthetic_names import SURNAME_SOURCES

__all__ = [
    "AGENCIES",
    "BASE_ERROR_RATES",
    "TF_PROBLEMS",
    "GeneratedPopulation",
    "PopulationConfig",
    "generate_population",
    "mapping_toml",
    "nhs_check_digit",
    "upn_check_letter",
]

AGENCIES: tuple[str, ...] = ("school", "csc", "early_help", "police", "dwp", "housing", "health")

# The six headline problems of Troubled Families Phase 2, in reporting order.
TF_PROBLEMS: tuple[ProblemArea, ...] = (
    ProblemArea.CRIME,
    ProblemArea.EDUCATION,
    ProblemArea.CHILDREN_NEED_HELP,
    ProblemArea.WORK_FINANCE,
    ProblemArea.DOMESTIC_ABUSE,
    ProblemArea.HEALTH,
)

_T = TypeVar("_T")


class I:  # noqa: E742
    """IndicatorType members as plain class attributes: enum attribute access is slow."""

    YOUTH_OFFENDING = IndicatorType.YOUTH_OFFENDING
    ADULT_OFFENDING = IndicatorType.ADULT_OFFENDING
    PRISON_LEAVER = IndicatorType.PRISON_LEAVER
    ASB_FURTHER_ACTION = IndicatorType.ASB_FURTHER_ACTION
    ASB_NO_FURTHER_ACTION = IndicatorType.ASB_NO_FURTHER_ACTION
    ATTENDANCE_PCT = IndicatorType.ATTENDANCE_PCT
    FIXED_TERM_EXCLUSIONS = IndicatorType.FIXED_TERM_EXCLUSIONS
    PERMANENT_EXCLUSION = IndicatorType.PERMANENT_EXCLUSION
    NOT_ON_ROLL = IndicatorType.NOT_ON_ROLL
    ALTERNATIVE_PROVISION = IndicatorType.ALTERNATIVE_PROVISION
    MONTHS_MISSING_FROM_SCHOOL = IndicatorType.MONTHS_MISSING_FROM_SCHOOL
    CHILD_IN_NEED = IndicatorType.CHILD_IN_NEED
    CHILD_PROTECTION_PLAN = IndicatorType.CHILD_PROTECTION_PLAN
    EARLY_HELP_ASSESSMENT = IndicatorType.EARLY_HELP_ASSESSMENT
    EXPLOITATION_RISK = IndicatorType.EXPLOITATION_RISK
    YOUNG_CARER = IndicatorType.YOUNG_CARER
    OUT_OF_WORK_BENEFITS = IndicatorType.OUT_OF_WORK_BENEFITS
    MONTHS_NEET = IndicatorType.MONTHS_NEET
    RENT_ARREARS_GBP = IndicatorType.RENT_ARREARS_GBP
    PROBLEM_DEBT = IndicatorType.PROBLEM_DEBT
    CONTINUOUS_EMPLOYMENT = IndicatorType.CONTINUOUS_EMPLOYMENT
    DV_INCIDENTS = IndicatorType.DV_INCIDENTS
    POLICE_CALLOUTS = IndicatorType.POLICE_CALLOUTS
    MARAC_REFERRAL = IndicatorType.MARAC_REFERRAL
    MONTHS_MENTAL_HEALTH = IndicatorType.MONTHS_MENTAL_HEALTH
    MONTHS_ALCOHOL_MISUSE = IndicatorType.MONTHS_ALCOHOL_MISUSE
    MONTHS_DRUG_MISUSE = IndicatorType.MONTHS_DRUG_MISUSE
    PHYSICAL_HEALTH = IndicatorType.PHYSICAL_HEALTH
    EVICTIONS = IndicatorType.EVICTIONS
    HOMELESSNESS_APPLICATIONS = IndicatorType.HOMELESSNESS_APPLICATIONS
    WEEKS_TEMPORARY_ACCOMMODATION = IndicatorType.WEEKS_TEMPORARY_ACCOMMODATION
    EXPECTANT_PARENT = IndicatorType.EXPECTANT_PARENT
    IN_EDUCATION_OR_TRAINING = IndicatorType.IN_EDUCATION_OR_TRAINING


class _P:
    """ProblemArea members as plain class attributes, for the hot paths."""

    CRIME = ProblemArea.CRIME
    EDUCATION = ProblemArea.EDUCATION
    CHILDREN_NEED_HELP = ProblemArea.CHILDREN_NEED_HELP
    WORK_FINANCE = ProblemArea.WORK_FINANCE
    DOMESTIC_ABUSE = ProblemArea.DOMESTIC_ABUSE
    HEALTH = ProblemArea.HEALTH
    HOUSING = ProblemArea.HOUSING
    CONTEXT = ProblemArea.CONTEXT


@dataclass(frozen=True)
class PopulationConfig:
    """What to generate: size, seed, extract date and how dirty the copies are."""

    households: int = 2000
    seed: int = 20261121
    extract_date: datetime.date = datetime.date(2026, 11, 1)
    error_rate: float = 1.0  # scales all corruption probabilities; 0 = clean copies
    # "lists": every surname from the fixed lists in _synthetic_names.py (a few
    # hundred a background), as the tests and the demo use. "long-tail": British
    # and Caribbean surnames follow published British surname frequencies down to
    # about rank 44,000, past the list with made-up names, so a bigger population
    # meets more distinct surnames, as a real one does (see _long_tail_surnames).
    surnames: str = "lists"


@dataclass(frozen=True)
class GeneratedPopulation:
    """Where the generated files are and how much was generated."""

    out_dir: Path
    agencies: tuple[str, ...]
    csv_paths: dict[str, Path]
    mapping_paths: dict[str, Path]
    truth_dir: Path
    record_count: int
    person_count: int
    household_count: int
    family_count: int


# --------------------------------------------------------------------------- rates
# Base probabilities per record copy at error_rate 1.0. Sources: published
# linkage studies of English administrative data (name typos a few per cent,
# nicknames ~3%, DOB transpositions ~1%, postcode errors 2-3%, movers ~3%).
BASE_ERROR_RATES: dict[str, float] = {
    "nickname": 0.03,  # of records whose given name has a nickname
    "middle_as_first": 0.02,  # of records of people with a middle name
    "surname_change": 0.03,  # of records of adult women
    "typo_given": 0.02,
    "typo_family": 0.02,
    "punctuation": 0.30,  # of names with accents, apostrophes or hyphens
    "case_space": 0.02,
    "middle_missing": 0.10,  # of records of people with a middle name
    "dob_missing": 0.01,
    "dob_swap": 0.01,  # of records with day <= 12 and day != month
    "dob_typo": 0.01,
    "sex_missing": 0.005,
    "sex_wrong": 0.003,
    "old_address": 0.375,  # of records of households that moved (8% of households)
    "postcode": 0.025,
    "postcode_missing": 0.01,
    "street_abbrev": 0.05,
    "address_line_missing": 0.01,
    "id_missing": 0.02,  # of records that would carry an identifier
    "id_typo": 0.003,
    "duplicate": 0.01,  # second copy of the same person in the same agency
}
MOVED_HOUSEHOLD_RATE = 0.08


# ------------------------------------------------------------------ small helpers
_MASK64 = (1 << 64) - 1
_PERMUTE_MULTIPLIER = 2_654_435_761  # prime, so coprime with every modulus used below


def _mix(*parts: int) -> int:
    """Deterministic 64-bit hash of integers (splitmix64 finaliser per part)."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = ((h ^ (part & _MASK64)) * 0xBF58476D1CE4E5B9) & _MASK64
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 29
    return h


@functools.lru_cache(maxsize=256)
def _offset(seed: int, tag: int) -> int:
    return _mix(seed, tag)


def _permute(value: int, seed: int, tag: int, modulus: int) -> int:
    """A seed-dependent bijection on ``range(modulus)``."""
    return (value * _PERMUTE_MULTIPLIER + _offset(seed, tag)) % modulus


_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def nhs_check_digit(first9: str) -> int | None:
    """NHS number modulus-11 check digit for nine digits; None if the body is unusable."""
    total = sum(map(operator.mul, map(int, first9), _NHS_WEIGHTS))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


_UPN_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
_UPN_WEIGHTS = tuple(range(2, 14))


def upn_check_letter(last12: str) -> str:
    """DfE UPN check letter for characters 2-13 (weights 2..13, modulus 23)."""
    total = sum(map(operator.mul, map(int, last12), _UPN_WEIGHTS))
    return _UPN_LETTERS[total % 23]


_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


_FORMATTERS: dict[str, Callable[[int, int, int], str]] = {
    "%d/%m/%Y": lambda y, m, d: f"{d:02d}/{m:02d}/{y:04d}",
    "%d.%m.%Y": lambda y, m, d: f"{d:02d}.{m:02d}.{y:04d}",
    "%d-%m-%Y": lambda y, m, d: f"{d:02d}-{m:02d}-{y:04d}",
    "%Y-%m-%d": lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
    "%d-%b-%Y": lambda y, m, d: f"{d:02d}-{_MONTHS[m]}-{y:04d}",
    "%d/%m/%Y %H:%M": lambda y, m, d: f"{d:02d}/{m:02d}/{y:04d} 00:00",
    "%Y%m%d": lambda y, m, d: f"{y:04d}{m:02d}{d:02d}",
}


def _fmt_ymd(fmt: str, y: int, m: int, d: int) -> str:
    """Format a (possibly corrupted) date by an agency's strptime pattern."""
    return _FORMATTERS[fmt](y, m, d)


def _fmt_date(fmt: str, value: datetime.date | None) -> str:
    return "" if value is None else _fmt_ymd(fmt, value.year, value.month, value.day)


# ----------------------------------------------------------------------- tables
@dataclass(frozen=True)
class _Pool:
    items: tuple[str, ...]
    cum: tuple[float, ...]

    def pick(self, rng: random.Random) -> str:
        i = bisect.bisect_right(self.cum, rng.random())
        return self.items[min(i, len(self.items) - 1)]

    def pick_u(self, u: float) -> str:
        i = bisect.bisect_right(self.cum, u)
        return self.items[min(i, len(self.items) - 1)]


def _zipf_pool(items: Sequence[str], exponent: float, offset: float = 0.0) -> _Pool:
    """Rank-frequency weights 1 / (rank + offset) ** exponent (Zipf-Mandelbrot)."""
    unique = tuple(dict.fromkeys(items))
    return _weighted_pool([(s, 1.0 / (r + 1 + offset) ** exponent) for r, s in enumerate(unique)])


def _weighted_pool(pairs: Sequence[tuple[str, float]]) -> _Pool:
    total = sum(w for _, w in pairs)
    running = 0.0
    cum = []
    for _, w in pairs:
        running += w / total
        cum.append(running)
    return _Pool(tuple(p for p, _ in pairs), tuple(cum))


@dataclass(frozen=True)
class _District:
    outward: str
    town: str
    locality: str
    la_code: int


@dataclass(frozen=True)
class _Tables:
    forenames: dict[tuple[str, str, str], _Pool]  # (culture, sex, generation)
    surnames: dict[str, _Pool]
    districts: tuple[_District, ...]
    streets: _Pool
    suffixes: _Pool
    nino_prefixes: tuple[str, ...]
    cultures: _Pool


CULTURES = (
    ("british", 70.0),
    ("south_asian", 15.0),
    ("polish", 5.0),
    ("african", 5.0),
    ("caribbean", 5.0),
)


@functools.cache
def _tables() -> _Tables:
    """Build the weighted pools once, on first use."""
    n = names
    fore: dict[tuple[str, str, str], _Pool] = {}
    spec: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
        ("british", "M"): (n.BRITISH_M_OLD, n.BRITISH_M_YOUNG),
        ("british", "F"): (n.BRITISH_F_OLD, n.BRITISH_F_YOUNG),
        ("south_asian", "M"): (n.SOUTH_ASIAN_M, n.SOUTH_ASIAN_M),
        ("south_asian", "F"): (n.SOUTH_ASIAN_F, n.SOUTH_ASIAN_F),
        ("polish", "M"): (n.POLISH_M, n.POLISH_M + n.BRITISH_M_YOUNG[:20]),
        ("polish", "F"): (n.POLISH_F, n.POLISH_F + n.BRITISH_F_YOUNG[:20]),
        ("african", "M"): (n.AFRICAN_M, n.AFRICAN_M + n.BRITISH_M_YOUNG[:15]),
        ("african", "F"): (n.AFRICAN_F, n.AFRICAN_F + n.BRITISH_F_YOUNG[:15]),
        ("caribbean", "M"): (
            n.CARIBBEAN_M + n.BRITISH_M_OLD[:20],
            n.CARIBBEAN_M + n.BRITISH_M_YOUNG[:25],
        ),
        ("caribbean", "F"): (
            n.CARIBBEAN_F + n.BRITISH_F_OLD[:20],
            n.CARIBBEAN_F + n.BRITISH_F_YOUNG[:25],
        ),
    }
    for (culture, sex), (old, young) in spec.items():
        fore[(culture, sex, "old")] = _zipf_pool(old, 0.7, 5)
        fore[(culture, sex, "young")] = _zipf_pool(young, 0.7, 5)
    surnames = {
        # A 400-name list stands in for tens of thousands of real surnames, so the
        # head is damped: Smith comes out near its real share of about 1.3%.
        "british": _zipf_pool(n.BRITISH_SURNAMES, 0.7, 10),
        "caribbean": _zipf_pool(n.BRITISH_SURNAMES[:150], 0.6, 5),
        "south_asian": _zipf_pool(
            [s for s in n.SOUTH_ASIAN_SURNAMES if s not in ("Begum", "Bibi", "Bi", "Kaur")], 0.8, 3
        ),
        "polish": _zipf_pool([s for s in n.POLISH_SURNAMES if not s.endswith("ska")], 0.6, 3),
        "african": _zipf_pool(n.AFRICAN_SURNAMES, 0.6, 3),
    }
    districts = tuple(
        _District(outward, town, locality, la_code)
        for _, la_code, ds in n.COUNCILS
        for outward, town, locality in ds
    )
    bad_first, bad_second = set("DFIQUV"), set("DFIOQUV")
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    prefixes = tuple(
        a + b
        for a in letters
        for b in letters
        if a not in bad_first
        and b not in bad_second
        and a + b not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
    )
    return _Tables(
        forenames=fore,
        surnames=surnames,
        districts=districts,
        streets=_zipf_pool(n.STREET_STEMS, 0.3),
        suffixes=_weighted_pool(n.STREET_SUFFIXES),
        nino_prefixes=prefixes,
        cultures=_weighted_pool(CULTURES),
    )


# ----------------------------------------------------------------------- model
@dataclass(frozen=True, slots=True)
class _Address:
    flat: str  # "" or "Flat 2"
    number: str  # "10", "12A"
    street: str
    locality: str
    town: str
    postcode: str

    def first_line(self) -> str:
        house = f"{self.number} {self.street}"
        return f"{self.flat}, {house}" if self.flat else house


@dataclass(slots=True)
class _Person:
    person_id: str
    serial: int
    sex: str
    culture: str
    given: str
    middle: tuple[str, ...]
    family: str
    former: str
    dob: datetime.date
    age: int
    role: str
    dependent: bool
    in_education: bool
    title: str
    nhs: str = ""
    nino: str = ""
    upn: str = ""
    indicators: dict[IndicatorType, tuple[float, datetime.date]] = field(default_factory=dict)
    forced: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Household:
    household_id: str
    index: int
    kind: str
    culture: str
    address: _Address
    old_address: _Address | None
    la_code: int
    tenant: bool
    members: list[_Person]
    problems: list[ProblemArea]
    expectant: bool

    @property
    def is_family(self) -> bool:
        return self.expectant or any(p.dependent for p in self.members)


@dataclass(slots=True)
class _Copy:
    """One agency's view of a person, after recording errors."""

    given: str
    middle: str
    family: str
    former: str
    dob: tuple[int, int, int] | None
    sex: str
    address: _Address
    postcode: str
    line_missing: bool
    abbreviate: bool
    nhs: str
    nino: str
    upn: str
    errors: list[str]


# ------------------------------------------------------------------- addresses
# Households are laid out in blocks; each block is cut into streets of varying
# length (6 to 60 households, mostly 10-25), so street and postcode density vary.
_STREET_BLOCK = 1000
MAX_HOUSEHOLDS_PER_STREET = 60


@functools.lru_cache(maxsize=8)
def _block_street_starts(seed: int, block: int) -> tuple[int, ...]:
    """Offsets within ``block`` at which each of its streets starts."""
    rng = random.Random(_mix(seed, 0xB10C5, block))
    starts = []
    total = 0
    while total < _STREET_BLOCK:
        starts.append(total)
        total += int(rng.triangular(6, MAX_HOUSEHOLDS_PER_STREET + 1, 12))
    return tuple(starts)


def _street_and_slot(seed: int, index: int) -> tuple[int, int]:
    """Street id and position on the street of household ``index`` (unique pairs)."""
    block, offset = divmod(index, _STREET_BLOCK)
    starts = _block_street_starts(seed, block)
    k = bisect.bisect_right(starts, offset) - 1
    return block * _STREET_BLOCK + k, offset - starts[k]


@functools.lru_cache(maxsize=64)
def _street_attrs(seed: int, street_id: int) -> tuple[int, _District, str, bool, int, int, str]:
    """Fixed attributes of synthetic street ``street_id``: hash, district, name, flats, ..."""
    t = _tables()
    h = _mix(seed, 0x5713E7, street_id)
    district = t.districts[h % len(t.districts)]
    h2 = _mix(h, 1)
    stem = t.streets.pick_u((h2 & 0xFFFFFF) / 0x1000000)
    suffix = t.suffixes.pick_u(((h2 >> 24) & 0xFFFFFF) / 0x1000000)
    flats = (h2 >> 48) % 100 < 12
    start = 1 + (h2 >> 56) % 40
    sector = (h >> 32) % 10
    locality = district.locality if (h >> 40) % 10 < 6 else ""
    return h, district, f"{stem} {suffix}", flats, start, sector, locality


def _address(seed: int, street_id: int, slot: int) -> tuple[_Address, int]:
    """The address at ``slot`` of synthetic street ``street_id``, and its LA code."""
    h, district, street, flats, start, sector, locality = _street_attrs(seed, street_id)
    if flats:
        flat = f"Flat {slot % 8 + 1}"
        number = str(start + 2 * (slot // 8))
        block = slot // 24
    else:
        flat = ""
        hn = start + slot
        number = f"{hn}A" if _mix(h, slot) % 100 < 3 else str(hn)
        block = slot // 15
    u = _mix(h, 0xB10C, block)
    letters = names.INWARD_LETTERS
    inward = f"{sector}{letters[u % 20]}{letters[(u // 20) % 20]}"
    return (
        _Address(
            flat=flat,
            number=number,
            street=street,
            locality=locality,
            town=district.town,
            postcode=f"{district.outward} {inward}",
        ),
        district.la_code,
    )


# --------------------------------------------------------------------- people
def _dob_for_age(rng: random.Random, extract: datetime.date, age: int) -> datetime.date:
    days = int(age * 365.25) + rng.randrange(365)
    return extract - datetime.timedelta(days=days)


def _age(extract: datetime.date, dob: datetime.date) -> int:
    return extract.year - dob.year - ((extract.month, extract.day) < (dob.month, dob.day))


def _feminine(surname: str, culture: str) -> str:
    if culture == "polish" and surname.endswith(("ski", "cki", "dzki")):
        return surname[:-1] + "a"
    return surname


def _forename(rng: random.Random, culture: str, sex: str, age: int, avoid: set[str]) -> str:
    pool = _tables().forenames[(culture, sex, "young" if age < 30 else "old")]
    name = pool.pick(rng)
    for _ in range(8):
        if name not in avoid:
            break
        name = pool.pick(rng)
    return name


_LONG_TAIL_CULTURES = frozenset({"british", "caribbean"})


@functools.cache
def _long_tail_surnames() -> _Pool:
    """British surnames by published frequency, the list's names then made-up ones.

    Rank r's weight is interpolated on log-log axes between the points of
    ``BRITISH_SURNAME_FREQUENCY`` (past the last, its last slope goes on). Ranks
    1 to ``len(BRITISH_SURNAMES)`` are the list's names in its order; later ranks
    are made-up names from ``SURNAME_*_PARTS``, in a fixed shuffled order so
    that how common a made-up name is has nothing to do with how it is spelt.
    """
    n = names
    listed = tuple(dict.fromkeys(n.BRITISH_SURNAMES))
    seen = set(listed)
    made: list[str] = []
    for first in n.SURNAME_FIRST_PARTS:
        for middle in ("", *n.SURNAME_MIDDLE_PARTS):
            for last in n.SURNAME_LAST_PARTS:
                name = first + middle + last
                if name not in seen:
                    seen.add(name)
                    made.append(name)
    random.Random(20261207).shuffle(made)
    items = listed + tuple(made)
    points = n.BRITISH_SURNAME_FREQUENCY
    weights = []
    segment = 0
    for rank in range(1, len(items) + 1):
        while segment < len(points) - 2 and rank > points[segment + 1][0]:
            segment += 1
        (r0, f0), (r1, f1) = points[segment], points[segment + 1]
        slope = math.log(f1 / f0) / math.log(r1 / r0)
        weights.append(f0 * (rank / r0) ** slope)
    return _weighted_pool(list(zip(items, weights, strict=True)))


def _surname(rng: random.Random, culture: str, long_tail: bool = False) -> str:
    if long_tail and culture in _LONG_TAIL_CULTURES:
        return _long_tail_surnames().pick(rng)
    return _tables().surnames[culture].pick(rng)


def _nhs_number(seed: int, serial: int, rng: random.Random) -> str:
    first8 = str(40_000_000 + _permute(serial, seed, 1, 40_000_000))
    partial = sum(map(operator.mul, map(int, first8), _NHS_WEIGHTS))
    d9 = rng.randrange(10)
    check = (11 - (partial + 2 * d9) % 11) % 11
    if check == 10:  # only one ninth digit gives the unusable remainder; take the next
        d9 = (d9 + 1) % 10
        check = (11 - (partial + 2 * d9) % 11) % 11
    return f"{first8}{d9}{check}"


def _ni_number(seed: int, serial: int, rng: random.Random) -> str:
    prefixes = _tables().nino_prefixes
    n = _permute(serial, seed, 2, len(prefixes) * 1_000_000)
    return f"{prefixes[n // 1_000_000]}{n % 1_000_000:06d}{'ABCD'[rng.randrange(4)]}"


def _upn(seed: int, serial: int, la_code: int, dob: datetime.date) -> str:
    n = _permute(serial, seed, 3, 6_000_000)
    year = (dob.year + 5) % 100
    body = f"{la_code:03d}{2000 + n // 1000:04d}{year:02d}{n % 1000:03d}"
    return upn_check_letter(body) + body


def _title(person: _Person, married: bool, rng: random.Random) -> str:
    if rng.random() < 0.01:
        return "Dr"
    if person.sex == "M":
        return "Mr"
    if married:
        return "Mrs"
    return "Miss" if person.age < 30 else "Ms"


def _middle_names(
    rng: random.Random, culture: str, sex: str, age: int, given: str
) -> tuple[str, ...]:
    r = rng.random()
    count = 2 if r < 0.04 else 1 if r < 0.38 else 0
    out: list[str] = []
    for _ in range(count):
        out.append(_forename(rng, culture, sex, age, {given, *out}))
    return tuple(out)


def _new_person(
    rng: random.Random,
    hh_id: str,
    serial: int,
    k: int,
    culture: str,
    sex: str,
    age: int,
    extract: datetime.date,
    family: str,
    role: str,
    avoid: set[str],
    dob: datetime.date | None = None,
) -> _Person:
    dob = dob if dob is not None else _dob_for_age(rng, extract, age)
    real_age = _age(extract, dob)
    given = _forename(rng, culture, sex, real_age, avoid)
    return _Person(
        person_id=f"{hh_id}-{k:02d}",
        serial=serial * 16 + k,
        sex=sex,
        culture=culture,
        given=given,
        middle=_middle_names(rng, culture, sex, real_age, given),
        family=family,
        former="",
        dob=dob,
        age=real_age,
        role=role,
        dependent=False,
        in_education=False,
        title="",
    )


class _Random(random.Random):
    """random.Random with cheaper integer draws (tiny bias is irrelevant for fake data)."""

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if step != 1:  # the fast path below knows no step
            return super().randrange(start, stop, step)
        if stop is None:
            return int(self.random() * start)
        return start + int(self.random() * (stop - start))

    def choice(self, seq: Sequence[_T]) -> _T:  # type: ignore[override]
        return seq[int(self.random() * len(seq))]


def _make_household(config: PopulationConfig, index: int, rng: random.Random) -> _Household:
    """Generate household ``index`` from its own seeded random stream ``rng``."""
    seed = config.seed
    extract = config.extract_date
    t = _tables()
    hh_id = f"H{index + 1:07d}"
    culture = t.cultures.pick(rng)
    draw_surname = functools.partial(_surname, rng, culture, config.surnames == "long-tail")
    # Neighbouring households share a street. Slots past the longest street are
    # never occupied now, so a previous address never collides with a current one.
    address, la_code = _address(seed, *_street_and_slot(seed, index))
    old_address: _Address | None = None
    if rng.random() < MOVED_HOUSEHOLD_RATE:
        street, _ = _street_and_slot(seed, rng.randrange(config.households))
        slot = MAX_HOUSEHOLDS_PER_STREET + rng.randrange(100)
        old_address, _ = _address(seed, street, slot)

    members: list[_Person] = []
    used: set[str] = set()
    expectant = False

    def add(
        sex: str, age: int, family: str, role: str, dob: datetime.date | None = None
    ) -> _Person:
        p = _new_person(
            rng, hh_id, index, len(members) + 1, culture, sex, age, extract, family, role, used, dob
        )
        used.add(p.given)
        members.append(p)
        return p

    surname = draw_surname()
    u = rng.random()
    married = False
    if u < 0.56:
        kind = "family"
        n_children = 1 + bisect.bisect_right((0.38, 0.75, 0.91, 0.97), rng.random())
        gaps = [rng.choice((1, 2, 2, 3, 3, 4, 5)) for _ in range(n_children - 1)]
        while sum(gaps) > 16:
            gaps.pop()
        n_children = len(gaps) + 1
        oldest = rng.randint(sum(gaps), 18)  # roughly uniform child ages 0-18
        ages = [oldest]
        for gap in gaps:
            ages.append(ages[-1] - gap)
        single = rng.random() < 0.30
        mother_age = oldest + rng.randint(18, 38)
        if single:
            lone_sex = "F" if rng.random() < 0.9 else "M"
            parent = add(
                lone_sex,
                mother_age,
                _feminine(surname, culture) if lone_sex == "F" else surname,
                "parent",
            )
            if lone_sex == "F" and rng.random() < 0.3:
                parent.former = _feminine(draw_surname(), culture)  # kept ex's name
            parent.title = _title(parent, bool(parent.former), rng)
            fathers_name = surname if rng.random() < 0.55 else draw_surname()
        else:
            father = add("M", max(18, mother_age + rng.randint(-3, 8)), surname, "parent")
            father.title = _title(father, True, rng)
            married = rng.random() < 0.65
            maiden = _feminine(draw_surname(), culture)
            if married and maiden != _feminine(surname, culture):
                mother = add("F", mother_age, _feminine(surname, culture), "parent")
                mother.former = maiden
            else:
                mother = add("F", mother_age, maiden, "parent")
            if culture == "south_asian" and rng.random() < 0.3:
                mother.former, mother.family = "", "Kaur" if surname == "Singh" else "Begum"
            mother.title = _title(mother, married, rng)
            fathers_name = surname
        child_name = fathers_name
        r = rng.random()
        if not single and not married and r < 0.15:
            child_name = members[1].family
        elif r > 0.96 and "-" not in child_name:
            other = draw_surname()
            if other != child_name:
                child_name = f"{other}-{child_name}"
        twins_at = rng.randrange(1, n_children) if n_children >= 2 and rng.random() < 0.04 else -1
        for ci, age in enumerate(ages):
            sex = "M" if rng.random() < 0.512 else "F"
            fam = child_name
            if single and ci > 0 and rng.random() < 0.15:
                fam = draw_surname()  # half-sibling with another father's name
            if sex == "F":
                fam = _feminine(fam, culture)
                if fam == "Singh":
                    fam = "Kaur"
            twin_dob = members[-1].dob if ci == twins_at else None
            child = add(sex, age, fam, "child", twin_dob)
            child.in_education = 16 <= child.age <= 18 and rng.random() < 0.8
            child.dependent = child.age <= 15 or child.in_education
        if mother_age >= 38 and rng.random() < 0.15:
            sex = "M" if rng.random() < 0.5 else "F"
            age = rng.randint(19, min(24, mother_age - 18))
            adult_child = add(
                sex, age, _feminine(child_name, culture) if sex == "F" else child_name, "adult"
            )
            adult_child.title = _title(adult_child, False, rng)
        expectant = rng.random() < 0.04 and any(
            m.sex == "F" and m.role == "parent" and m.age < 45 for m in members
        )
    elif u < 0.59:
        kind = "expectant"
        expectant = True
        mother_age = rng.randint(17, 38)
        if rng.random() < 0.6:
            father = add("M", mother_age + rng.randint(-2, 6), surname, "parent")
            father.title = _title(father, False, rng)
        mother = add("F", mother_age, _feminine(draw_surname(), culture), "parent")
        mother.title = _title(mother, False, rng)
    elif u < 0.85:
        kind = "adults"
        n_adults = 1 + bisect.bisect_right((0.45, 0.88), rng.random())
        base_age = rng.randint(19, 64)
        for ai in range(n_adults):
            sex = "M" if rng.random() < 0.5 else "F"
            fam = surname if ai == 0 or rng.random() < 0.5 else draw_surname()
            p = add(
                sex,
                max(19, min(80, base_age + rng.randint(-6, 6))),
                _feminine(fam, culture) if sex == "F" else fam,
                "adult",
            )
            p.title = _title(p, n_adults == 2 and fam == surname and ai == 1, rng)
    else:
        kind = "pensioners"
        n_adults = 1 if rng.random() < 0.5 else 2
        base_age = rng.randint(66, 92)
        for ai in range(n_adults):
            sex = (
                ("F" if rng.random() < 0.6 else "M") if n_adults == 1 else ("M" if ai == 0 else "F")
            )
            p = add(
                sex,
                max(66, base_age + rng.randint(-4, 4)),
                _feminine(surname, culture) if sex == "F" else surname,
                "adult",
            )
            if sex == "F" and n_adults == 2:
                p.former = _feminine(draw_surname(), culture)
            p.title = _title(p, bool(p.former), rng)
    for m in members:
        if m.former == m.family:
            m.former = ""
        if rng.random() < 0.97:
            m.nhs = _nhs_number(seed, m.serial, rng)
        if m.age >= 16 and rng.random() < 0.95:
            m.nino = _ni_number(seed, m.serial, rng)
        if 4 <= m.age <= 18:
            m.upn = _upn(seed, m.serial, la_code, m.dob)

    household = _Household(
        household_id=hh_id,
        index=index,
        kind=kind,
        culture=culture,
        address=address,
        old_address=old_address,
        la_code=la_code,
        tenant=False,
        members=members,
        problems=[],
        expectant=expectant,
    )
    _assign_problems(rng, household, extract)
    return household


# ------------------------------------------------------------------- problems
# Latent need level -> probability of each problem; weights shape prevalence so
# that roughly a quarter of families have two or more of the six problems.
_LEVELS = (0.58, 0.80, 0.93)  # cumulative: level 0, 1, 2, else 3
_LEVEL_P = (0.035, 0.20, 0.45, 0.70)
_AREA_WEIGHT = {
    _P.CRIME: 0.8,
    _P.EDUCATION: 1.1,
    _P.CHILDREN_NEED_HELP: 0.9,
    _P.WORK_FINANCE: 1.4,
    _P.DOMESTIC_ABUSE: 0.7,
    _P.HEALTH: 1.2,
}


def _since(
    rng: random.Random, extract: datetime.date, dob: datetime.date, max_days: int = 364
) -> datetime.date:
    """A date in the ``max_days`` before the extract date, never before the date of birth."""
    available = (extract - dob).days
    if available < 1:
        return extract
    return extract - datetime.timedelta(days=rng.randint(1, min(max_days, available)))


def _assign_problems(rng: random.Random, hh: _Household, extract: datetime.date) -> None:
    """Choose the household's problems and put consistent indicators on its members."""
    members = hh.members
    adults = [m for m in members if m.age >= 18]
    parents = [m for m in members if m.role == "parent"] or adults
    children = [m for m in members if m.role == "child"]
    school_age = [m for m in children if 5 <= m.age <= 15]
    level = bisect.bisect_right(_LEVELS, rng.random())
    if not hh.is_family:
        level = min(level, 1)
    chosen: list[ProblemArea] = []
    for area in TF_PROBLEMS:
        if rng.random() < min(0.95, _LEVEL_P[level] * _AREA_WEIGHT[area]):
            chosen.append(area)
    if not school_age and _P.EDUCATION in chosen:
        chosen.remove(_P.EDUCATION)
    if not children and _P.CHILDREN_NEED_HELP in chosen:
        chosen.remove(_P.CHILDREN_NEED_HELP)
    hh.problems = chosen
    hh.tenant = rng.random() < (0.8 if _P.WORK_FINANCE in chosen else 0.45 if chosen else 0.22)

    def put(p: _Person, kind: IndicatorType, value: float, agency: str) -> None:
        p.indicators[kind] = (value, _since(rng, extract, p.dob))
        p.forced.add(agency)

    lead = parents[0] if parents else members[0]
    if _P.CRIME in chosen:
        teens = [c for c in children if 10 <= c.age <= 17]
        if teens and rng.random() < 0.5:
            p = rng.choice(teens)
            if rng.random() < 0.6:
                put(p, I.YOUTH_OFFENDING, rng.randint(1, 4), "police")
            if I.YOUTH_OFFENDING not in p.indicators or rng.random() < 0.5:
                put(p, I.ASB_FURTHER_ACTION, rng.randint(1, 3), "police")
        else:
            p = rng.choice(adults or members)
            if rng.random() < 0.5:
                put(p, I.ADULT_OFFENDING, rng.randint(1, 3), "police")
            if I.ADULT_OFFENDING not in p.indicators or rng.random() < 0.4:
                put(p, I.ASB_FURTHER_ACTION, rng.randint(1, 4), "police")
            if rng.random() < 0.1:
                put(p, I.PRISON_LEAVER, 1, "police")
        if rng.random() < 0.3:
            put(p, I.ASB_NO_FURTHER_ACTION, rng.randint(1, 5), "police")
    if _P.EDUCATION in chosen:
        carriers = rng.sample(school_age, min(len(school_age), 2 if rng.random() < 0.3 else 1))
        for p in carriers:
            if rng.random() < 0.05:
                put(p, I.NOT_ON_ROLL, 1, "school")
                put(p, I.MONTHS_MISSING_FROM_SCHOOL, rng.randint(1, 12), "school")
                continue
            absent = rng.random() < 0.7
            if absent:
                put(p, I.ATTENDANCE_PCT, round(rng.uniform(45.0, 89.9), 1), "school")
                if rng.random() < 0.15:
                    put(p, I.MONTHS_MISSING_FROM_SCHOOL, rng.randint(1, 6), "school")
            if not absent or rng.random() < 0.35:
                put(p, I.FIXED_TERM_EXCLUSIONS, rng.randint(1, 6), "school")
            if rng.random() < 0.05:
                put(p, I.PERMANENT_EXCLUSION, 1, "school")
            if rng.random() < 0.08:
                put(p, I.ALTERNATIVE_PROVISION, 1, "school")
    if _P.CHILDREN_NEED_HELP in chosen:
        r = rng.random()
        carriers = children if rng.random() < 0.5 else [rng.choice(children)]
        for p in carriers:
            if r < 0.25:
                put(p, I.CHILD_PROTECTION_PLAN, 1, "csc")
            elif r < 0.6:
                put(p, I.CHILD_IN_NEED, 1, "csc")
            else:
                put(p, I.EARLY_HELP_ASSESSMENT, 1, "early_help")
            if p.age >= 11 and rng.random() < 0.15:
                put(p, I.EXPLOITATION_RISK, 1, "csc")
            if p.age >= 8 and rng.random() < 0.08:
                put(p, I.YOUNG_CARER, 1, "early_help")
    if _P.WORK_FINANCE in chosen:
        young = [
            m for m in members if 16 <= m.age <= 24 and not m.in_education and m.role != "parent"
        ]
        done = False
        if young and rng.random() < 0.5:
            put(rng.choice(young), I.MONTHS_NEET, rng.randint(1, 12), "dwp")
            done = True
        if hh.tenant and rng.random() < 0.45:
            put(lead, I.RENT_ARREARS_GBP, rng.randint(150, 3800), "housing")
            done = True
            if rng.random() < 0.3:
                put(lead, I.PROBLEM_DEBT, 1, "housing")
        if not done or rng.random() < 0.6:
            claimant = lead if lead.age >= 18 else rng.choice(adults or members)
            put(claimant, I.OUT_OF_WORK_BENEFITS, 1, "dwp")
    if _P.DOMESTIC_ABUSE in chosen:
        women = [m for m in adults if m.sex == "F"]
        victim = rng.choice(women or adults or members)
        put(victim, I.DV_INCIDENTS, rng.randint(1, 5), "police")
        if rng.random() < 0.6:
            put(victim, I.POLICE_CALLOUTS, rng.randint(1, 6), "police")
        if rng.random() < 0.25:
            put(victim, I.MARAC_REFERRAL, 1, "police")
        others = [m for m in adults if m is not victim]
        if others and rng.random() < 0.5:
            put(rng.choice(others), I.POLICE_CALLOUTS, rng.randint(1, 4), "police")
    if _P.HEALTH in chosen:
        pool = adults or members
        carriers = [rng.choice(pool)]
        if len(members) > 1 and rng.random() < 0.3:
            carriers.append(rng.choice(members))
        for p in carriers:
            done = False
            if rng.random() < 0.6 or p.age < 14:
                put(p, I.MONTHS_MENTAL_HEALTH, rng.randint(1, 12), "health")
                done = True
            if p.age >= 16 and rng.random() < 0.25:
                put(p, I.MONTHS_ALCOHOL_MISUSE, rng.randint(1, 12), "health")
                done = True
            if p.age >= 14 and rng.random() < 0.2:
                put(p, I.MONTHS_DRUG_MISUSE, rng.randint(1, 12), "health")
                done = True
            if not done or rng.random() < 0.2:
                put(p, I.PHYSICAL_HEALTH, 1, "health")
    # Housing events (context, outside the six) and positive context indicators.
    if hh.tenant and rng.random() < (0.25 if _P.WORK_FINANCE in chosen else 0.03):
        which = rng.random()
        if which < 0.3:
            put(lead, I.EVICTIONS, 1, "housing")
        elif which < 0.7:
            put(lead, I.HOMELESSNESS_APPLICATIONS, rng.randint(1, 2), "housing")
        else:
            put(lead, I.WEEKS_TEMPORARY_ACCOMMODATION, rng.randint(1, 30), "housing")
    if hh.expectant:
        mothers = [m for m in parents if m.sex == "F"] or parents
        put(mothers[-1], I.EXPECTANT_PARENT, 1, "health")
    for m in members:
        if m.in_education:
            m.indicators[I.IN_EDUCATION_OR_TRAINING] = (1, _since(rng, extract, m.dob))
        if 18 <= m.age < 66 and I.OUT_OF_WORK_BENEFITS not in m.indicators and rng.random() < 0.5:
            m.indicators[I.CONTINUOUS_EMPLOYMENT] = (1, _since(rng, extract, m.dob))


# ------------------------------------------------------------------- coverage
def _coverage(rng: random.Random, hh: _Household) -> list[tuple[str, _Person]]:
    """Which agencies hold a record of which member, in a fixed order."""
    problems = set(hh.problems)
    cnh = _P.CHILDREN_NEED_HELP in problems
    dv = _P.DOMESTIC_ABUSE in problems
    whole_tenancy = hh.tenant and rng.random() < 0.3
    out: list[tuple[str, _Person]] = []
    lead_tenant_done = False
    for p in hh.members:
        child = p.role == "child"
        parent = p.role == "parent"
        ind = p.indicators
        for agency in AGENCIES:
            if agency in p.forced:
                out.append((agency, p))
                continue
            if agency == "school":
                prob = 0.97 if 4 <= p.age <= 15 else 0.6 if p.in_education else 0.0
            elif agency == "csc":
                if child:
                    prob = 0.6 if cnh else 0.3 if dv else 0.015
                else:
                    prob = 0.5 if cnh and parent else 0.003
            elif agency == "early_help":
                if child:
                    prob = 0.5 if cnh else 0.1 if problems else 0.01
                else:
                    prob = 0.45 if cnh and parent else 0.15 if hh.expectant and parent else 0.002
            elif agency == "police":
                prob = (0.6 if dv and p.age >= 18 else 0.03) if p.age >= 10 else 0.0
            elif agency == "dwp":
                if p.age >= 66:
                    prob = 0.6
                elif p.age >= 18:
                    prob = 0.5 if I.CONTINUOUS_EMPLOYMENT in ind else 0.35
                else:
                    prob = 0.0
            elif agency == "housing":
                if not hh.tenant:
                    prob = 0.0
                elif p.age >= 18 and not lead_tenant_done:
                    prob = 1.0
                    lead_tenant_done = True
                else:
                    prob = 1.0 if whole_tenancy else 0.35 if p.age >= 18 else 0.0
            else:  # health
                prob = 0.6
            if prob > 0 and rng.random() < prob:
                out.append((agency, p))
    return out


# --------------------------------------------------------------------- errors
@dataclass(frozen=True)
class _Rates:
    p: dict[str, float]

    @staticmethod
    def scaled(error_rate: float) -> _Rates:
        return _Rates({k: min(1.0, v * error_rate) for k, v in BASE_ERROR_RATES.items()})


_KEYBOARD_NEAR = "qwertyuiopasdfghjklzxcvbnm"


def _typo(rng: random.Random, s: str) -> str:
    """One character inserted, deleted, substituted or transposed; never a no-op."""
    for _ in range(8):
        out = _typo_once(rng, s)
        if out != s:
            return out
    return s + "x"


def _typo_once(rng: random.Random, s: str) -> str:
    if len(s) < 2:
        return s + rng.choice(_KEYBOARD_NEAR)
    op = rng.randrange(4)
    i = rng.randrange(1, len(s))  # keep the first letter: most typos are not initial
    if op == 0:
        return s[:i] + rng.choice(_KEYBOARD_NEAR) + s[i:]
    if op == 1 and len(s) > 3:
        return s[:i] + s[i + 1 :]
    if op == 2:
        c = rng.choice(_KEYBOARD_NEAR)
        return s[:i] + (c.upper() if s[i].isupper() else c) + s[i + 1 :]
    j = i if i < len(s) - 1 else i - 1
    return s[:j] + s[j + 1] + s[j] + s[j + 2 :]


def _plain(s: str, rng: random.Random) -> str:
    """Drop accents and apostrophes the way some systems store names."""
    out = s.translate(names.ACCENT_FOLD)
    if "'" in out:
        out = out.replace("'", "" if rng.random() < 0.6 else " ")
    if out == s and "-" in s:
        out = s.replace("-", " ")
    return out


def _valid_ymd(y: int, m: int, d: int) -> bool:
    try:
        datetime.date(y, m, d)
    except ValueError:
        return False
    return True


def _dob_typo(
    rng: random.Random, dob: datetime.date, extract: datetime.date
) -> tuple[int, int, int] | None:
    digits = f"{dob.day:02d}{dob.month:02d}{dob.year:04d}"
    for _ in range(12):
        pos = rng.choice((0, 1, 2, 3, 6, 7, 7, 1, 3))
        new = str((int(digits[pos]) + rng.choice((1, -1, 2, 9))) % 10)
        s = digits[:pos] + new + digits[pos + 1 :]
        d, m, y = int(s[:2]), int(s[2:4]), int(s[4:])
        if (
            (d, m, y) != (dob.day, dob.month, dob.year)
            and _valid_ymd(y, m, d)
            and datetime.date(y, m, d) <= extract
        ):
            return (y, m, d)
    return None


def _corrupt_postcode(rng: random.Random, pc: str) -> str:
    mode = rng.randrange(3)
    if mode == 0:
        return pc.replace(" ", "")
    if mode == 1:
        return pc.lower()
    # one character wrong, keeping letter/digit classes so the format stays plausible
    outward, inward = pc.split(" ")
    if rng.random() < 0.5:
        i = rng.randrange(1, 3)
        letters = names.INWARD_LETTERS
        c = rng.choice(letters.replace(inward[i], ""))
        inward = inward[:i] + c + inward[i + 1 :]
    else:
        d = str((int(inward[0]) + rng.randint(1, 9)) % 10)
        inward = d + inward[1:]
    return f"{outward} {inward}"


def _make_copy(
    rng: random.Random,
    rates: _Rates,
    person: _Person,
    hh: _Household,
    extract: datetime.date,
    duplicate: bool = False,
) -> _Copy:
    """Apply recording errors to one agency's copy of ``person``."""
    p = rates.p
    errors: list[str] = ["duplicate"] if duplicate else []
    given = person.given
    middle = list(person.middle)
    family = person.family
    former = person.former if rng.random() < 0.5 else ""

    nick = names.NICKNAMES.get(given)
    if nick and rng.random() < p["nickname"]:
        given = rng.choice(nick)
        errors.append("nickname")
    elif middle and rng.random() < p["middle_as_first"]:
        given = middle.pop(0)
        errors.append("middle_as_first")
    if middle and rng.random() < p["middle_missing"]:
        middle = []
        errors.append("middle_missing")
    if person.sex == "F" and person.age >= 18 and rng.random() < p["surname_change"]:
        if person.former:
            family, former = person.former, ""
        else:
            new = _feminine(_surname(rng, person.culture), person.culture)
            if new != family:
                family, former = new, (family if rng.random() < 0.4 else "")
        errors.append("surname_change")
    if rng.random() < p["typo_given"]:
        given = _typo(rng, given)
        errors.append("typo_given")
    if rng.random() < p["typo_family"]:
        family = _typo(rng, family)
        errors.append("typo_family")
    if rng.random() < p["punctuation"]:
        g2, f2 = _plain(given, rng), _plain(family, rng)
        if (g2, f2) != (given, family):
            given, family = g2, f2
            errors.append("punctuation")
    if rng.random() < p["case_space"]:
        mode = rng.randrange(4)
        if mode == 0:
            family = family.upper()
        elif mode == 1:
            given = given.lower()
        elif mode == 2:
            given = f" {given}"
        else:
            family = f"{family}  "
        errors.append("case_space")

    dob: tuple[int, int, int] | None = (person.dob.year, person.dob.month, person.dob.day)
    if rng.random() < p["dob_missing"]:
        dob = None
        errors.append("dob_missing")
    elif (
        person.dob.day <= 12
        and person.dob.day != person.dob.month
        and datetime.date(person.dob.year, person.dob.day, person.dob.month) <= extract
        and rng.random() < p["dob_swap"]
    ):
        dob = (person.dob.year, person.dob.day, person.dob.month)
        errors.append("dob_swap")
    elif rng.random() < p["dob_typo"]:
        typo = _dob_typo(rng, person.dob, extract)
        if typo is not None:
            dob = typo
            errors.append("dob_typo")

    sex = person.sex
    if rng.random() < p["sex_missing"]:
        sex = ""
        errors.append("sex_missing")
    elif rng.random() < p["sex_wrong"]:
        sex = "F" if sex == "M" else "M"
        errors.append("sex_wrong")

    address = hh.address
    if hh.old_address is not None and rng.random() < p["old_address"]:
        address = hh.old_address
        errors.append("old_address")
    postcode = address.postcode
    if rng.random() < p["postcode_missing"]:
        postcode = ""
        errors.append("postcode_missing")
    elif rng.random() < p["postcode"]:
        postcode = _corrupt_postcode(rng, postcode)
        errors.append("postcode")
    abbreviate = rng.random() < p["street_abbrev"]
    if abbreviate:
        errors.append("street_abbrev")
    line_missing = rng.random() < p["address_line_missing"]
    if line_missing:
        errors.append("address_line_missing")

    ids = {"nhs": person.nhs, "nino": person.nino, "upn": person.upn}
    for key, value in ids.items():
        if not value:
            continue
        if rng.random() < p["id_missing"]:
            ids[key] = ""
            errors.append(f"{key}_missing")
        elif rng.random() < p["id_typo"]:
            i = rng.randrange(len(value) - 2) + 1
            if value[i] != value[i + 1]:
                ids[key] = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
                errors.append(f"{key}_typo")
    return _Copy(
        given=given,
        middle=" ".join(middle),
        family=family,
        former=former,
        dob=dob,
        sex=sex,
        address=address,
        postcode=postcode,
        line_missing=line_missing,
        abbreviate=abbreviate,
        nhs=ids["nhs"],
        nino=ids["nino"],
        upn=ids["upn"],
        errors=errors,
    )


# --------------------------------------------------------------- agency formats
@dataclass(frozen=True)
class _IndicatorSpec:
    column: str
    type: IndicatorType
    kind: str
    date_column: str


@dataclass(frozen=True)
class _AgencySpec:
    agency: str
    extract_type: str
    delimiter: str
    encoding: str
    date_format: str
    header: tuple[str, ...]
    identity: dict[str, Any]
    indicators: tuple[_IndicatorSpec, ...]
    id_prefix: str
    id_tag: int


def _ind(column: str, kind_type: IndicatorType, kind: str, date_column: str) -> _IndicatorSpec:
    return _IndicatorSpec(column, kind_type, kind, date_column)


SPECS: dict[str, _AgencySpec] = {
    "school": _AgencySpec(
        agency="school",
        extract_type="education",
        delimiter=",",
        encoding="utf-8-sig",
        date_format="%d/%m/%Y",
        header=(
            "PupilID",
            "UPN",
            "Surname",
            "Forename",
            "MiddleNames",
            "DOB",
            "Gender",
            "Address1",
            "Address2",
            "Town",
            "Postcode",
            "AttendancePct",
            "AttendanceDate",
            "FixedTermExclusions",
            "PermanentExclusion",
            "ExclusionDate",
            "AlternativeProvision",
            "NotOnRoll",
            "MonthsMissing",
            "Post16Education",
            "StatusDate",
        ),
        identity={
            "system_id": "PupilID",
            "given_names": ["Forename", "MiddleNames"],
            "family_name": "Surname",
            "date_of_birth": "DOB",
            "date_format": "%d/%m/%Y",
            "sex": "Gender",
            "address_lines": ["Address1", "Address2", "Town"],
            "postcode": "Postcode",
            "upn": "UPN",
        },
        indicators=(
            _ind("AttendancePct", I.ATTENDANCE_PCT, "number", "AttendanceDate"),
            _ind("FixedTermExclusions", I.FIXED_TERM_EXCLUSIONS, "count", "ExclusionDate"),
            _ind("PermanentExclusion", I.PERMANENT_EXCLUSION, "flag", "ExclusionDate"),
            _ind("AlternativeProvision", I.ALTERNATIVE_PROVISION, "flag", "StatusDate"),
            _ind("NotOnRoll", I.NOT_ON_ROLL, "flag", "StatusDate"),
            _ind("MonthsMissing", I.MONTHS_MISSING_FROM_SCHOOL, "count", "StatusDate"),
            _ind("Post16Education", I.IN_EDUCATION_OR_TRAINING, "flag", "StatusDate"),
        ),
        id_prefix="PUP",
        id_tag=11,
    ),
    "csc": _AgencySpec(
        agency="csc",
        extract_type="social_care",
        delimiter=",",
        encoding="utf-8",
        date_format="%d.%m.%Y",
        header=(
            "Person ID",
            "Forename(s)",
            "Surname",
            "Former Surname",
            "Date of Birth",
            "Gender",
            "NHS Number",
            "Address",
            "Postcode",
            "CIN Status",
            "CP Plan",
            "Exploitation Risk",
            "Referral Date",
        ),
        identity={
            "system_id": "Person ID",
            "given_names": "Forename(s)",
            "family_name": "Surname",
            "former_family_names": "Former Surname",
            "date_of_birth": "Date of Birth",
            "date_format": "%d.%m.%Y",
            "sex": "Gender",
            "sex_values": {"Male": "M", "Female": "F"},
            "address_lines": "Address",
            "postcode": "Postcode",
            "nhs_number": "NHS Number",
        },
        indicators=(
            _ind("CIN Status", I.CHILD_IN_NEED, "flag", "Referral Date"),
            _ind("CP Plan", I.CHILD_PROTECTION_PLAN, "flag", "Referral Date"),
            _ind("Exploitation Risk", I.EXPLOITATION_RISK, "flag", "Referral Date"),
        ),
        id_prefix="",
        id_tag=12,
    ),
    "early_help": _AgencySpec(
        agency="early_help",
        extract_type="early_help",
        delimiter=";",
        encoding="utf-8",
        date_format="%d-%m-%Y",
        header=(
            "eh_id",
            "first_name",
            "middle_name",
            "surname",
            "dob",
            "gender",
            "house_no",
            "street",
            "town",
            "postcode",
            "eh_assessment",
            "young_carer",
            "antenatal",
            "date_recorded",
        ),
        identity={
            "system_id": "eh_id",
            "given_names": ["first_name", "middle_name"],
            "family_name": "surname",
            "date_of_birth": "dob",
            "date_format": "%d-%m-%Y",
            "sex": "gender",
            "sex_values": {"m": "M", "f": "F"},
            "address_lines": ["house_no", "street", "town"],
            "postcode": "postcode",
        },
        indicators=(
            _ind("eh_assessment", I.EARLY_HELP_ASSESSMENT, "flag", "date_recorded"),
            _ind("young_carer", I.YOUNG_CARER, "flag", "date_recorded"),
            _ind("antenatal", I.EXPECTANT_PARENT, "flag", "date_recorded"),
        ),
        id_prefix="EH-",
        id_tag=13,
    ),
    "police": _AgencySpec(
        agency="police",
        extract_type="police_incidents",
        delimiter=",",
        encoding="utf-8",
        date_format="%Y-%m-%d",
        header=(
            "NominalRef",
            "LAST_NAME",
            "FIRST_NAME",
            "D.O.B",
            "SEX",
            "ADDRESS",
            "POSTCODE",
            "NINO",
            "YOUTH_OFFENCES",
            "ADULT_OFFENCES",
            "PRISON_RELEASE",
            "ASB_FA",
            "ASB_NFA",
            "DV_INCIDENTS",
            "DOMESTIC_CALLOUTS",
            "MARAC",
            "LAST_INCIDENT",
        ),
        identity={
            "system_id": "NominalRef",
            "given_names": "FIRST_NAME",
            "family_name": "LAST_NAME",
            "date_of_birth": "D.O.B",
            "date_format": "%Y-%m-%d",
            "sex": "SEX",
            "sex_values": {"1": "M", "2": "F"},
            "address_lines": "ADDRESS",
            "postcode": "POSTCODE",
            "ni_number": "NINO",
        },
        indicators=(
            _ind("YOUTH_OFFENCES", I.YOUTH_OFFENDING, "count", "LAST_INCIDENT"),
            _ind("ADULT_OFFENCES", I.ADULT_OFFENDING, "count", "LAST_INCIDENT"),
            _ind("PRISON_RELEASE", I.PRISON_LEAVER, "flag", "LAST_INCIDENT"),
            _ind("ASB_FA", I.ASB_FURTHER_ACTION, "count", "LAST_INCIDENT"),
            _ind("ASB_NFA", I.ASB_NO_FURTHER_ACTION, "count", "LAST_INCIDENT"),
            _ind("DV_INCIDENTS", I.DV_INCIDENTS, "count", "LAST_INCIDENT"),
            _ind("DOMESTIC_CALLOUTS", I.POLICE_CALLOUTS, "count", "LAST_INCIDENT"),
            _ind("MARAC", I.MARAC_REFERRAL, "flag", "LAST_INCIDENT"),
        ),
        id_prefix="N",
        id_tag=14,
    ),
    "dwp": _AgencySpec(
        agency="dwp",
        extract_type="benefits",
        delimiter=",",
        encoding="utf-8",
        date_format="%d-%b-%Y",
        header=(
            "Claimant ID",
            "Title Forenames",
            "Surname",
            "Previous Surname",
            "Date of Birth",
            "NINO",
            "Address Line 1",
            "Address Line 2",
            "Post Town",
            "Postcode",
            "Benefit",
            "Out of Work",
            "Claim Start",
            "Months NEET",
            "In Work 12m",
            "Status Date",
        ),
        identity={
            "system_id": "Claimant ID",
            "given_names": "Title Forenames",
            "family_name": "Surname",
            "former_family_names": "Previous Surname",
            "date_of_birth": "Date of Birth",
            "date_format": "%d-%b-%Y",
            "address_lines": ["Address Line 1", "Address Line 2", "Post Town"],
            "postcode": "Postcode",
            "ni_number": "NINO",
        },
        indicators=(
            _ind("Out of Work", I.OUT_OF_WORK_BENEFITS, "flag", "Claim Start"),
            _ind("Months NEET", I.MONTHS_NEET, "count", "Status Date"),
            _ind("In Work 12m", I.CONTINUOUS_EMPLOYMENT, "flag", "Status Date"),
        ),
        id_prefix="CL",
        id_tag=15,
    ),
    "housing": _AgencySpec(
        agency="housing",
        extract_type="housing",
        delimiter=",",
        encoding="cp1252",
        date_format="%d/%m/%Y %H:%M",
        header=(
            "PERSON_REF",
            "TENANCY_REF",
            "TENANT_FORENAME",
            "TENANT_SURNAME",
            "TENANT_DOB",
            "GENDER",
            "NI_NO",
            "PROPERTY_ADDRESS_1",
            "PROPERTY_ADDRESS_2",
            "PROPERTY_ADDRESS_3",
            "PROPERTY_POSTCODE",
            "RENT_ARREARS",
            "DEBT_ADVICE",
            "EVICTIONS",
            "HOMELESS_APPS",
            "WEEKS_TA",
            "EVENT_DATE",
        ),
        identity={
            "system_id": "PERSON_REF",
            "given_names": "TENANT_FORENAME",
            "family_name": "TENANT_SURNAME",
            "date_of_birth": "TENANT_DOB",
            "date_format": "%d/%m/%Y %H:%M",
            "sex": "GENDER",
            "address_lines": ["PROPERTY_ADDRESS_1", "PROPERTY_ADDRESS_2", "PROPERTY_ADDRESS_3"],
            "postcode": "PROPERTY_POSTCODE",
            "ni_number": "NI_NO",
        },
        indicators=(
            _ind("RENT_ARREARS", I.RENT_ARREARS_GBP, "count", "EVENT_DATE"),
            _ind("DEBT_ADVICE", I.PROBLEM_DEBT, "flag", "EVENT_DATE"),
            _ind("EVICTIONS", I.EVICTIONS, "count", "EVENT_DATE"),
            _ind("HOMELESS_APPS", I.HOMELESSNESS_APPLICATIONS, "count", "EVENT_DATE"),
            _ind("WEEKS_TA", I.WEEKS_TEMPORARY_ACCOMMODATION, "count", "EVENT_DATE"),
        ),
        id_prefix="HSG",
        id_tag=16,
    ),
    "health": _AgencySpec(
        agency="health",
        extract_type="health",
        delimiter=",",
        encoding="utf-8",
        date_format="%Y%m%d",
        header=(
            "patient_id",
            "nhs_no",
            "given",
            "family",
            "previous_family",
            "dob",
            "sex",
            "addr1",
            "addr2",
            "addr3",
            "postcode",
            "mh_months",
            "alcohol_months",
            "drug_months",
            "physical_ltc",
            "maternity",
            "episode_date",
        ),
        identity={
            "system_id": "patient_id",
            "given_names": "given",
            "family_name": "family",
            "former_family_names": "previous_family",
            "date_of_birth": "dob",
            "date_format": "%Y%m%d",
            "sex": "sex",
            "sex_values": {"male": "M", "female": "F"},
            "address_lines": ["addr1", "addr2", "addr3"],
            "postcode": "postcode",
            "nhs_number": "nhs_no",
        },
        indicators=(
            _ind("mh_months", I.MONTHS_MENTAL_HEALTH, "count", "episode_date"),
            _ind("alcohol_months", I.MONTHS_ALCOHOL_MISUSE, "count", "episode_date"),
            _ind("drug_months", I.MONTHS_DRUG_MISUSE, "count", "episode_date"),
            _ind("physical_ltc", I.PHYSICAL_HEALTH, "flag", "episode_date"),
            _ind("maternity", I.EXPECTANT_PARENT, "flag", "episode_date"),
        ),
        id_prefix="PAT",
        id_tag=17,
    ),
}


def _street(copy: _Copy) -> str:
    street = copy.address.street
    if copy.abbreviate:
        stem, _, suffix = street.rpartition(" ")
        street = f"{stem} {names.SUFFIX_ABBREVIATIONS.get(suffix, suffix)}"
    return street


def _first_line(copy: _Copy) -> str:
    a = copy.address
    house = f"{a.number} {_street(copy)}"
    return f"{a.flat}, {house}" if a.flat else house


def _value(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _latest(person: _Person, kinds: Sequence[IndicatorType]) -> datetime.date | None:
    dates = [person.indicators[k][1] for k in kinds if k in person.indicators]
    return max(dates) if dates else None


def _build_row(
    agency: str,
    system_id: str,
    copy: _Copy,
    person: _Person,
    hh: _Household,
    rng: random.Random,
    extract: datetime.date,
) -> list[str]:
    """One CSV row in the agency's own layout."""
    spec = SPECS[agency]
    fmt = spec.date_format
    dob = "" if copy.dob is None else _fmt_ymd(fmt, *copy.dob)
    a = copy.address
    ind = person.indicators

    def val(kind: IndicatorType, default: str = "") -> str:
        return _value(ind[kind][0]) if kind in ind else default

    def flag(kind: IndicatorType, yes: str = "Y", no: str = "N") -> str:
        return yes if kind in ind else no

    def when(*kinds: IndicatorType) -> str:
        return _fmt_date(fmt, _latest(person, kinds))

    line2 = "" if copy.line_missing else a.locality
    if agency == "school":
        if I.ATTENDANCE_PCT in ind:
            att = val(I.ATTENDANCE_PCT)
            att_date = when(I.ATTENDANCE_PCT)
        elif I.NOT_ON_ROLL in ind or rng.random() < 0.02:
            att, att_date = "", ""
        else:
            att = f"{min(100.0, rng.triangular(90.0, 100.0, 97.0)):.1f}"
            att_date = _fmt_date(fmt, _since(rng, extract, person.dob))
        return [
            system_id,
            copy.upn,
            copy.family,
            copy.given,
            copy.middle,
            dob,
            copy.sex,
            _first_line(copy),
            line2,
            a.town,
            copy.postcode,
            att,
            att_date,
            val(I.FIXED_TERM_EXCLUSIONS, "0"),
            flag(I.PERMANENT_EXCLUSION),
            when(I.FIXED_TERM_EXCLUSIONS, I.PERMANENT_EXCLUSION),
            flag(I.ALTERNATIVE_PROVISION),
            flag(I.NOT_ON_ROLL, "Y", ""),
            val(I.MONTHS_MISSING_FROM_SCHOOL, "0"),
            flag(I.IN_EDUCATION_OR_TRAINING, "Y", ""),
            when(
                I.ALTERNATIVE_PROVISION,
                I.NOT_ON_ROLL,
                I.MONTHS_MISSING_FROM_SCHOOL,
                I.IN_EDUCATION_OR_TRAINING,
            ),
        ]
    if agency == "csc":
        parts = [_first_line(copy)] + ([line2] if line2 else []) + [a.town]
        referral = when(I.CHILD_IN_NEED, I.CHILD_PROTECTION_PLAN, I.EXPLOITATION_RISK)
        if not referral and rng.random() < 0.7:
            referral = _fmt_date(fmt, _since(rng, extract, person.dob, 1500))
        return [
            system_id,
            f"{copy.given} {copy.middle}".strip(),
            copy.family,
            copy.former,
            dob,
            {"M": "Male", "F": "Female"}.get(copy.sex, ""),
            f"{copy.nhs[:3]} {copy.nhs[3:6]} {copy.nhs[6:]}" if copy.nhs else "",
            ", ".join(parts),
            copy.postcode,
            flag(I.CHILD_IN_NEED),
            flag(I.CHILD_PROTECTION_PLAN),
            flag(I.EXPLOITATION_RISK),
            referral,
        ]
    if agency == "early_help":
        house = f"{a.flat}, {a.number}" if a.flat else a.number
        return [
            system_id,
            copy.given,
            copy.middle,
            copy.family,
            dob,
            copy.sex.lower(),
            house,
            _street(copy),
            "" if copy.line_missing else a.town,
            copy.postcode,
            flag(I.EARLY_HELP_ASSESSMENT, "Y", "N"),
            flag(I.YOUNG_CARER, "Y", "N"),
            flag(I.EXPECTANT_PARENT, "Y", "N"),
            when(I.EARLY_HELP_ASSESSMENT, I.YOUNG_CARER, I.EXPECTANT_PARENT)
            or _fmt_date(fmt, _since(rng, extract, person.dob)),
        ]
    if agency == "police":
        line = " ".join(x for x in (_first_line(copy).replace(",", ""), line2, a.town) if x)
        nino = copy.nino if rng.random() < 0.3 else ""
        return [
            system_id,
            copy.family.upper(),
            copy.given.upper(),
            dob,
            {"M": "1", "F": "2"}.get(copy.sex, ""),
            line.upper(),
            copy.postcode,
            nino,
            val(I.YOUTH_OFFENDING, "0"),
            val(I.ADULT_OFFENDING, "0"),
            flag(I.PRISON_LEAVER, "Y", ""),
            val(I.ASB_FURTHER_ACTION, "0"),
            val(I.ASB_NO_FURTHER_ACTION, "0"),
            val(I.DV_INCIDENTS, "0"),
            val(I.POLICE_CALLOUTS, "0"),
            flag(I.MARAC_REFERRAL, "Y", ""),
            when(*(s.type for s in spec.indicators))
            or _fmt_date(fmt, _since(rng, extract, person.dob, 2000)),
        ]
    if agency == "dwp":
        if person.age >= 66:
            benefit = "State Pension" if rng.random() < 0.8 else "Pension Credit"
        elif I.OUT_OF_WORK_BENEFITS in ind:
            benefit = rng.choice(
                ("Universal Credit", "Universal Credit", "ESA", "JSA", "Income Support")
            )
        elif I.CONTINUOUS_EMPLOYMENT in ind:
            benefit = rng.choice(("Universal Credit", "Child Benefit", "None"))
        else:
            benefit = rng.choice(("Universal Credit", "PIP", "Carer's Allowance", "None"))
        names_field = " ".join(x for x in (person.title, copy.given, copy.middle) if x)
        return [
            system_id,
            names_field,
            copy.family,
            copy.former,
            dob,
            copy.nino,
            _first_line(copy),
            line2,
            a.town,
            copy.postcode,
            benefit,
            flag(I.OUT_OF_WORK_BENEFITS),
            when(I.OUT_OF_WORK_BENEFITS),
            val(I.MONTHS_NEET, "0"),
            flag(I.CONTINUOUS_EMPLOYMENT),
            when(I.MONTHS_NEET, I.CONTINUOUS_EMPLOYMENT),
        ]
    if agency == "housing":
        fold = names.CP1252_FOLD
        housing_kinds = (
            I.RENT_ARREARS_GBP,
            I.PROBLEM_DEBT,
            I.EVICTIONS,
            I.HOMELESSNESS_APPLICATIONS,
            I.WEEKS_TEMPORARY_ACCOMMODATION,
        )
        return [
            system_id,
            f"T{_permute(hh.index, 0, 18, 10_000_000):07d}",
            copy.given.translate(fold),
            copy.family.translate(fold),
            dob,
            copy.sex,
            copy.nino,
            _first_line(copy),
            line2,
            a.town,
            copy.postcode,
            val(I.RENT_ARREARS_GBP, "0"),
            flag(I.PROBLEM_DEBT, "Y", ""),
            val(I.EVICTIONS, "0"),
            val(I.HOMELESSNESS_APPLICATIONS, "0"),
            val(I.WEEKS_TEMPORARY_ACCOMMODATION, "0"),
            when(*housing_kinds),
        ]
    # health
    health_kinds = (
        I.MONTHS_MENTAL_HEALTH,
        I.MONTHS_ALCOHOL_MISUSE,
        I.MONTHS_DRUG_MISUSE,
        I.PHYSICAL_HEALTH,
        I.EXPECTANT_PARENT,
    )
    return [
        system_id,
        copy.nhs,
        f"{copy.given} {copy.middle}".strip(),
        copy.family,
        copy.former,
        dob,
        {"M": "male", "F": "female"}.get(copy.sex, ""),
        _first_line(copy),
        line2,
        a.town,
        copy.postcode,
        val(I.MONTHS_MENTAL_HEALTH),
        val(I.MONTHS_ALCOHOL_MISUSE),
        val(I.MONTHS_DRUG_MISUSE),
        flag(I.PHYSICAL_HEALTH, "Y", ""),
        flag(I.EXPECTANT_PARENT, "Y", ""),
        when(*health_kinds),
    ]


RECORDS_PER_HOUSEHOLD_MAX = 256


def _system_id(spec: _AgencySpec, seed: int, household_index: int, record_index: int) -> str:
    """Unique within the agency, opaque, and computable without a global counter."""
    n = _permute(
        household_index * RECORDS_PER_HOUSEHOLD_MAX + record_index, seed, spec.id_tag, 10**9
    )
    if spec.id_prefix:
        return f"{spec.id_prefix}{n:09d}"
    return str(1_000_000_000 + n)


# ----------------------------------------------------------------- mapping TOML
def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    raise TypeError(f"unsupported TOML value {value!r}")


def mapping_toml(agency: str) -> str:
    """The agency_client mapping file (TOML) for a synthetic agency's CSV."""
    spec = SPECS[agency]
    lines = [
        f"# Mapping for the synthetic {agency} extract (demo data only).",
        "[agency]",
        f"id = {_toml_value(spec.agency)}",
        f"extract_type = {_toml_value(spec.extract_type)}",
        "",
        "[csv]",
        f"delimiter = {_toml_value(spec.delimiter)}",
        f"encoding = {_toml_value(spec.encoding)}",
        "",
        "[identity]",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in spec.identity.items()]
    for ind in spec.indicators:
        lines += [
            "",
            "[[indicators]]",
            f"column = {_toml_value(ind.column)}",
            f"type = {_toml_value(ind.type.value)}",
            f"kind = {_toml_value(ind.kind)}",
            f"date_column = {_toml_value(ind.date_column)}",
            f"date_format = {_toml_value(spec.date_format)}",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- output
@dataclass
class _Sink:
    final: Path
    temp: Path
    handle: IO[str]
    writer: Any


class _Output:
    """Files written under temporary names; renamed into place only on commit."""

    def __init__(self) -> None:
        self.sinks: list[_Sink] = []

    def open(self, final: Path, encoding: str = "utf-8", delimiter: str = ",") -> _Sink:
        temp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        # 0600: a population is plaintext identities (names, dates of birth, addresses).
        handle = open_private(temp, "w", encoding=encoding, errors="replace", newline="")
        sink = _Sink(final, temp, handle, csv.writer(handle, delimiter=delimiter))
        self.sinks.append(sink)
        return sink

    def commit(self) -> None:
        for s in self.sinks:
            s.handle.close()
        for s in self.sinks:
            os.replace(s.temp, s.final)
        self.sinks = []

    def abort(self) -> None:
        for s in self.sinks:
            s.handle.close()
            s.temp.unlink(missing_ok=True)
        self.sinks = []


_FLUSH_ROWS = 4096
_PARALLEL_MIN_HOUSEHOLDS = 20_000
_CHUNK_HOUSEHOLDS = 1_000
_MAX_HOUSEHOLDS = 10**9 // RECORDS_PER_HOUSEHOLD_MAX


class _LineWriter:
    """File-like object whose ``write`` returns its argument: csv.writer.writerow -> line."""

    def write(self, line: str) -> str:
        return line


@functools.cache
def _line_writer(delimiter: str) -> Any:
    return csv.writer(_LineWriter(), delimiter=delimiter)


@dataclass
class _Chunk:
    """Finished CSV text for a run of households, ready to write."""

    households: int
    families: int
    persons: int
    household_lines: str
    person_lines: str
    records: list[tuple[str, str, str]]  # agency, CSV line, truth records.csv line


def _chunk_output(config: PopulationConfig, rates: _Rates, start: int, stop: int) -> _Chunk:
    """Households ``start`` to ``stop - 1`` as CSV lines; depends only on the arguments."""
    extract = config.extract_date
    seed = config.seed
    truth = _line_writer(",")
    writers = {a: _line_writer(SPECS[a].delimiter) for a in AGENCIES}
    hh_lines: list[str] = []
    person_lines: list[str] = []
    records: list[tuple[str, str, str]] = []
    families = persons = 0
    p_duplicate = rates.p["duplicate"]
    for index in range(start, stop):
        rng = _Random(_mix(seed, 0x40053, index))
        hh = _make_household(config, index, rng)
        is_family = hh.is_family
        families += is_family
        n_tf = len(hh.problems)
        a = hh.address
        hh_lines.append(
            truth.writerow(
                (
                    hh.household_id,
                    a.postcode,
                    "Y" if is_family else "N",
                    ";".join(p.value for p in hh.problems),
                    n_tf,
                    "Y" if is_family and n_tf >= 2 else "N",
                    hh.kind,
                    ", ".join(x for x in (a.first_line(), a.locality, a.town) if x),
                    hh.old_address.postcode if hh.old_address else "",
                    "Y" if hh.expectant else "N",
                )
            )
        )
        for p in hh.members:
            persons += 1
            person_lines.append(
                truth.writerow(
                    (
                        p.person_id,
                        hh.household_id,
                        p.sex,
                        p.dob.isoformat(),
                        p.role,
                        "Y" if p.dependent else "N",
                        p.given,
                        " ".join(p.middle),
                        p.family,
                        p.former,
                        p.nhs,
                        p.nino,
                        p.upn,
                        "Y" if p.in_education else "N",
                    )
                )
            )
        j = 0
        for agency, person in _coverage(rng, hh):
            copies = 2 if rng.random() < p_duplicate else 1
            for c in range(copies):
                copy = _make_copy(rng, rates, person, hh, extract, duplicate=c == 1)
                system_id = _system_id(SPECS[agency], seed, index, j)
                j += 1
                row = _build_row(agency, system_id, copy, person, hh, rng, extract)
                truth_line = truth.writerow(
                    (agency, system_id, person.person_id, hh.household_id, ";".join(copy.errors))
                )
                records.append((agency, writers[agency].writerow(row), truth_line))
    return _Chunk(
        households=stop - start,
        families=families,
        persons=persons,
        household_lines="".join(hh_lines),
        person_lines="".join(person_lines),
        records=records,
    )


def _chunks(config: PopulationConfig, rates: _Rates, workers: int) -> Generator[_Chunk, None, None]:
    """Chunks in household order, computed here or in a process pool."""
    n = config.households
    bounds = [(s, min(n, s + _CHUNK_HOUSEHOLDS)) for s in range(0, n, _CHUNK_HOUSEHOLDS)]
    if workers <= 1:
        for start, stop in bounds:
            yield _chunk_output(config, rates, start, stop)
        return
    # spawn, not fork: the caller may run threads (progress bars) that fork would copy.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        pending: deque[Future[_Chunk]] = deque()
        todo = iter(bounds)
        # At most two chunks per worker in flight keeps memory flat.
        for start, stop in itertools.islice(todo, 2 * workers):
            pending.append(pool.submit(_chunk_output, config, rates, start, stop))
        while pending:
            chunk = pending.popleft().result()
            for start, stop in itertools.islice(todo, 1):
                pending.append(pool.submit(_chunk_output, config, rates, start, stop))
            yield chunk
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _default_workers(households: int) -> int:
    # The writing process is light (a few per cent of a core), so one worker per CPU.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if households < _PARALLEL_MIN_HOUSEHOLDS or (cpus or 1) < 2:
        return 1
    return min(8, cpus or 1)


def generate_population(
    config: PopulationConfig,
    out_dir: Path,
    progress: Callable[[int], None] | None = None,
    *,
    workers: int | None = None,
) -> GeneratedPopulation:
    """Write the synthetic agencies' CSVs, mapping files and ground truth under ``out_dir``.

    ``progress`` is called with the number of households finished since its last
    call. ``workers`` > 1 generates in a process pool (default: a single process
    below 20,000 households, else one worker per CPU, at most 8); the output is
    byte-identical whatever the number of workers.
    """
    if not 1 <= config.households <= _MAX_HOUSEHOLDS:
        raise AgencyClientError(
            f"households must be between 1 and {_MAX_HOUSEHOLDS:,}, got {config.households}"
        )
    if not 0.0 <= config.error_rate <= 20.0:
        raise AgencyClientError(f"error_rate must be between 0 and 20, got {config.error_rate}")
    if config.surnames not in SURNAME_SOURCES:
        raise AgencyClientError(
            f"surnames must be one of {', '.join(SURNAME_SOURCES)}, got {config.surnames!r}"
        )
    out_dir = Path(out_dir)
    truth_dir = out_dir / "truth"
    try:
        # 0700: the truth files are the generator's own; the caller's directory is
        # made 0700 when this creates it, and left alone when it was handed over.
        private_dir(out_dir)
        private_dir(truth_dir, own=True)
    except OSError as exc:
        raise AgencyClientError(f"{out_dir}: cannot create output directory: {exc}") from exc
    n_workers = _default_workers(config.households) if workers is None else max(1, workers)
    output = _Output()
    try:
        counts = _write_all(config, out_dir, truth_dir, output, progress, n_workers)
        output.commit()
    except OSError as exc:
        output.abort()
        raise AgencyClientError(f"{out_dir}: cannot write demo population: {exc}") from exc
    except BaseException:
        output.abort()
        raise
    return GeneratedPopulation(
        out_dir=out_dir,
        agencies=AGENCIES,
        csv_paths={a: out_dir / f"{a}.csv" for a in AGENCIES},
        mapping_paths={a: out_dir / f"{a}.mapping.toml" for a in AGENCIES},
        truth_dir=truth_dir,
        record_count=counts[0],
        person_count=counts[1],
        household_count=config.households,
        family_count=counts[2],
    )


_RECORDS_HEADER = ("agency", "system_id", "person_id", "household_id", "errors")
_PERSONS_HEADER = (
    "person_id",
    "household_id",
    "sex",
    "date_of_birth",
    "role",
    "is_dependent_child",
    "given_name",
    "middle_names",
    "family_name",
    "former_family_name",
    "nhs_number",
    "ni_number",
    "upn",
    "in_education",
)
_HOUSEHOLDS_HEADER = (
    "household_id",
    "postcode",
    "is_family",
    "problems",
    "tf_problem_count",
    "tf_eligible",
    "household_type",
    "address",
    "previous_postcode",
    "has_expectant_parent",
)


def _write_all(
    config: PopulationConfig,
    out_dir: Path,
    truth_dir: Path,
    output: _Output,
    progress: Callable[[int], None] | None,
    workers: int,
) -> tuple[int, int, int]:
    rates = _Rates.scaled(config.error_rate)
    sinks = {}
    for a in AGENCIES:
        spec = SPECS[a]
        sinks[a] = output.open(out_dir / f"{a}.csv", spec.encoding, spec.delimiter)
        sinks[a].writer.writerow(spec.header)
    records = output.open(truth_dir / "records.csv")
    records.writer.writerow(_RECORDS_HEADER)
    persons = output.open(truth_dir / "persons.csv")
    persons.writer.writerow(_PERSONS_HEADER)
    households = output.open(truth_dir / "households.csv")
    households.writer.writerow(_HOUSEHOLDS_HEADER)
    buffers: dict[str, list[tuple[str, str]]] = {a: [] for a in AGENCIES}
    shuffler = random.Random(_mix(config.seed, 0x5F0F))
    record_count = person_count = family_count = 0

    # Rows are shuffled within bounded buffers so that row order does not reveal
    # which records came from the same household (system ids are already opaque).
    def flush(agency: str) -> None:
        buf = buffers[agency]
        shuffler.shuffle(buf)
        sinks[agency].handle.write("".join(line for line, _ in buf))
        records.handle.write("".join(truth for _, truth in buf))
        buf.clear()

    chunks = _chunks(config, rates, workers)
    try:
        for chunk in chunks:
            _write_chunk(chunk, households, persons, buffers, flush)
            family_count += chunk.families
            person_count += chunk.persons
            record_count += len(chunk.records)
            if progress is not None:
                progress(chunk.households)
    finally:
        chunks.close()  # stops the worker pool now, also when writing failed
    for agency in AGENCIES:
        flush(agency)
        mapping = output.open(out_dir / f"{agency}.mapping.toml")
        mapping.handle.write(mapping_toml(agency))
    return record_count, person_count, family_count


def _write_chunk(
    chunk: _Chunk,
    households: _Sink,
    persons: _Sink,
    buffers: dict[str, list[tuple[str, str]]],
    flush: Callable[[str], None],
) -> None:
    households.handle.write(chunk.household_lines)
    persons.handle.write(chunk.person_lines)
    for agency, line, truth_line in chunk.records:
        buf = buffers[agency]
        buf.append((line, truth_line))
        if len(buf) >= _FLUSH_ROWS:
            flush(agency)
