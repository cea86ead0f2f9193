"""The programme ruleset: a declarative, versioned file a council's analyst reads and edits.

A ruleset (TOML) declares, by id:

* **measures**: a number per family from the agencies' events, e.g. "sum of ASB
  incidents with further action over the last 365 days, all members" or "lowest
  school attendance over the last 120 days, school-age children". A measure with
  no event in its window is *missing*, and a missing value never satisfies a
  condition: no data is never taken for agreement or for a problem.
* **indicators**: a measure compared with a threshold (``measure``, ``op``,
  ``threshold``) or a combination of other indicators (``any_of`` / ``all_of``),
  each with a severity (2 minor .. 5 critical) for the distance-travelled scale;
* **problems**: headline problem areas met when any of their indicators is, with
  the extract types that report on them (to tell "no data" from "no problem");
* **eligibility**: how many problems make a family eligible;
* **outcomes**: payment-by-results rules per problem, plus the alternative
  continuous-employment result (see ``_claims``), stated in calendar months
  (``sustained_months``, ``months_since_attachment``);
* **calendar**: the programme's claim windows (``2026-H1`` ...) and how many
  days short of a stated number of months a run of cycles may fall.

A ruleset may name a ``base`` file in the same directory: its measures and
indicators are added to or overridden id by id; any other section it gives
(problems, eligibility, outcomes, employment) replaces the base's whole.
:func:`load_ruleset` resolves the base, validates
every reference (unknown measure or indicator, a cycle among combined
indicators, a threshold that is not a number ...) and raises
:class:`RulesetError` naming the rule; :meth:`Ruleset.sha256` hashes the
resolved content, which every assessment records beside the version.

Must never: evaluate anything (that is ``_programme``), do I/O beyond reading
the files it is given.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import tomllib
from calendar import monthrange
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from protocols import IndicatorType, describe_errors

from .._errors import RulesetError

__all__ = [
    "Calendar",
    "ClaimWindow",
    "Condition",
    "Eligibility",
    "Indicator",
    "Measure",
    "Outcome",
    "Payments",
    "Problem",
    "Ruleset",
    "RulesetError",
    "add_months",
    "default_ruleset",
    "load_ruleset",
    "shipped_rulesets",
]

RULESET_FORMAT: Final = "family-linkage/ruleset/v1"
Id = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,39}$")]
Version = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6}){0,2}$")]
ExtractType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
Number = StrictInt | StrictFloat
Op = Literal["<", "<=", ">", ">=", "==", "!="]
Members = Literal["all", "children", "school_age", "under_fives", "adults", "young_people"]
Aggregate = Literal["sum", "max", "min", "count", "latest", "people"]

_SHIPPED = "rulesets"
_MERGED = ("measures", "indicators")
DEFAULT_RULESET = "troubled-families-phase2"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Measure(_Model):
    """A number per family aggregated from events of some members over a look-back window."""

    title: str = Field(min_length=1, max_length=200)
    events: tuple[IndicatorType, ...] = Field(min_length=1)
    window_days: StrictInt = Field(ge=1, le=3660)
    aggregate: Aggregate
    members: Members = "all"
    # Family Progress Data category when this measure is one of the 13 FPD measures
    progress: Literal["crime", "health", "housing", "employment", "education"] | None = None


class Indicator(_Model):
    """A measure against a threshold, or a combination of other indicators."""

    title: str = Field(min_length=1, max_length=200)
    measure: Id | None = None
    op: Op | None = None
    threshold: Number | None = None
    any_of: tuple[Id, ...] = ()
    all_of: tuple[Id, ...] = ()
    severity: StrictInt = Field(default=3, ge=2, le=5)

    @model_validator(mode="after")
    def _one_kind(self) -> Indicator:
        simple = self.measure is not None
        combined = bool(self.any_of or self.all_of)
        if simple == combined:
            raise ValueError("give either measure/op/threshold or any_of/all_of, not both")
        if simple and (self.op is None or self.threshold is None):
            raise ValueError("an indicator over a measure needs both op and threshold")
        if combined and (self.op is not None or self.threshold is not None):
            raise ValueError("a combined indicator takes no op or threshold")
        return self


class Problem(_Model):
    """A headline problem area: met when any of its indicators is met."""

    title: str = Field(min_length=1, max_length=200)
    any_of: tuple[Id, ...] = Field(min_length=1)
    sources: tuple[ExtractType, ...] = Field(min_length=1)


class Eligibility(_Model):
    """Which families are eligible: at least ``min_problems`` problems met."""

    min_problems: StrictInt = Field(ge=1, le=20)
    families_only: bool = True
    # England's participation age is 18: a 16- or 17-year-old must be in education or
    # training, so is presumed a dependent child unless an agency reports them NEET.
    # An 18-year-old counts only when an agency reports them in education or training.
    presume_in_education_to_age: StrictInt = Field(default=17, ge=15, le=18)


# Condition fields of rulesets written before outcome rules were stated in months.
# Files must use the month fields; cycles stored before are read with the days
# converted (rounded to whole months) so they can still be re-explained.
_LEGACY_CONDITION = {
    "snapshots": "sustained_months",
    "span_days": "sustained_months",
    "min_days_since_attachment": "months_since_attachment",
}
_DAYS_PER_MONTH = 365.25 / 12


class Condition(_Model):
    """One test of a payment-by-results outcome over the family's snapshots since baseline.

    ``compare = "value"`` tests the measure's value; ``"baseline"`` tests the value
    at the baseline snapshot; ``"fall_pct"`` tests the percentage fall from
    baseline (a baseline of 0 or missing never passes, and says so).

    Calendar time (see ``_claims`` for the exact rule): the latest snapshot must
    be at least ``months_since_attachment`` calendar months after attachment, and
    with ``sustained_months = N`` the condition must have held at every snapshot
    since the baseline from one at least N months before the latest (the
    calendar's ``gap_tolerance_days`` allows for cycles that run a few days
    early). ``missing_as_zero``: a measure with no event in its window is 0
    (offending stopped, no incident reported), not missing.
    """

    measure: Id
    compare: Literal["value", "baseline", "fall_pct"] = "value"
    op: Op
    value: Number
    sustained_months: StrictInt = Field(default=0, ge=0, le=60)
    months_since_attachment: StrictInt = Field(default=0, ge=0, le=60)
    missing_as_zero: bool = False

    @model_validator(mode="before")
    @classmethod
    def _legacy_days(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(k in data for k in _LEGACY_CONDITION):
            return data
        out = {k: v for k, v in data.items() if k not in _LEGACY_CONDITION}
        span = data.get("span_days", 0)
        since = data.get("min_days_since_attachment", 0)
        if isinstance(span, int) and span and "sustained_months" not in out:
            out["sustained_months"] = round(span / _DAYS_PER_MONTH)
        if isinstance(since, int) and since and "months_since_attachment" not in out:
            out["months_since_attachment"] = round(since / _DAYS_PER_MONTH)
        return out


class Outcome(_Model):
    """Significant and sustained progress on one problem: every condition holds."""

    title: str = Field(min_length=1, max_length=200)
    all_of: tuple[Condition, ...] = Field(min_length=1)


class Payments(_Model):
    """Payment-by-results amounts (GBP): attachment fee and results payment."""

    attachment_gbp: StrictInt = Field(default=1000, ge=0)
    result_gbp: StrictInt = Field(default=800, ge=0)


class ClaimWindow(_Model):
    """One claim window of the programme calendar: its label and dates (inclusive)."""

    window_id: str
    opens: dt.date
    closes: dt.date


class Calendar(_Model):
    """The programme's calendar: claim windows and the allowance for cycle dates.

    ``claim_windows``: ``half-years`` (``YYYY-H1`` = 1 January to 30 June,
    ``YYYY-H2`` = 1 July to 31 December) or ``quarters`` (``YYYY-Q1`` ..
    ``YYYY-Q4``), from the window holding ``starts`` to the one holding ``ends``
    (open-ended without). ``gap_tolerance_days``: how many days short of a
    stated number of months a run of snapshots may fall and still count,
    because cycles are rarely exactly a calendar month apart (a monthly cycle
    every 30 days reaches six months 2 or 3 days short).
    """

    claim_windows: Literal["half-years", "quarters"] = "half-years"
    starts: dt.date = dt.date(2015, 1, 1)
    ends: dt.date | None = None
    gap_tolerance_days: StrictInt = Field(default=7, ge=0, le=31)

    @model_validator(mode="after")
    def _order(self) -> Calendar:
        if self.ends is not None and self.ends < self.starts:
            raise ValueError(f"calendar.ends {self.ends} is before calendar.starts {self.starts}")
        return self

    def _span(self) -> tuple[str, int]:
        return ("H", 6) if self.claim_windows == "half-years" else ("Q", 3)

    def window_of(self, day: dt.date) -> ClaimWindow | None:
        """The claim window holding ``day``, or None if it is outside the calendar."""
        letter, months = self._span()
        k = (day.month - 1) // months + 1
        return self.window(f"{day.year}-{letter}{k}")

    def window(self, window_id: str) -> ClaimWindow | None:
        """The claim window labelled ``window_id``, or None if the calendar has no such window."""
        letter, months = self._span()
        m = re.fullmatch(rf"([0-9]{{4}})-{letter}([1-9])", window_id)
        if m is None or not 1 <= int(m.group(2)) <= 12 // months:
            return None
        year, k = int(m.group(1)), int(m.group(2))
        opens = dt.date(year, (k - 1) * months + 1, 1)
        closes = add_months(opens, months) - dt.timedelta(days=1)
        if closes < self.starts or (self.ends is not None and opens > self.ends):
            return None
        return ClaimWindow(window_id=window_id, opens=opens, closes=closes)

    def describe(self) -> str:
        """The calendar's windows in words, for error messages."""
        letter, months = self._span()
        first = self.window_of(self.starts)
        last = None if self.ends is None else self.window_of(self.ends)
        labels = "H1 or H2" if letter == "H" else "Q1 to Q4"
        return (
            f"{self.claim_windows} YYYY-{labels} ({months} months each), from "
            f"{first.window_id if first else self.starts} to "
            f"{last.window_id if last else 'no end'}"
        )


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus a number of calendar months (the last day of a shorter month)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


class Ruleset(_Model):
    """A resolved ruleset: every reference checked."""

    format: Literal["family-linkage/ruleset/v1"] = RULESET_FORMAT
    name: Name
    version: Version
    title: str = Field(min_length=1, max_length=200)
    eligibility: Eligibility
    measures: dict[Id, Measure] = Field(min_length=1)
    indicators: dict[Id, Indicator] = Field(min_length=1)
    problems: dict[Id, Problem] = Field(min_length=1)
    outcomes: dict[Id, Outcome] = Field(default_factory=dict)
    employment: Outcome | None = None
    payments: Payments = Payments()
    calendar: Calendar = Calendar()

    @model_validator(mode="after")
    def _references(self) -> Ruleset:
        for iid, ind in self.indicators.items():
            if ind.measure is not None and ind.measure not in self.measures:
                raise ValueError(f"indicators.{iid}.measure: unknown measure {ind.measure!r}")
            for ref in (*ind.any_of, *ind.all_of):
                if ref not in self.indicators:
                    raise ValueError(f"indicators.{iid}: unknown indicator {ref!r}")
        _check_acyclic(self.indicators)
        for pid, problem in self.problems.items():
            for ref in problem.any_of:
                if ref not in self.indicators:
                    raise ValueError(f"problems.{pid}.any_of: unknown indicator {ref!r}")
        if self.eligibility.min_problems > len(self.problems):
            raise ValueError(
                f"eligibility.min_problems: {self.eligibility.min_problems} is more than the "
                f"{len(self.problems)} problems defined"
            )
        outcomes = dict(self.outcomes)
        if self.employment is not None:
            outcomes["(employment)"] = self.employment
        for oid, outcome in outcomes.items():
            if oid != "(employment)" and oid not in self.problems:
                raise ValueError(f"outcomes.{oid}: no problem {oid!r} to be an outcome of")
            for k, cond in enumerate(outcome.all_of):
                if cond.measure not in self.measures:
                    where = "employment" if oid == "(employment)" else f"outcomes.{oid}"
                    raise ValueError(
                        f"{where}.all_of.{k}.measure: unknown measure {cond.measure!r}"
                    )
        return self

    def sha256(self) -> str:
        """SHA-256 hex of the resolved ruleset's canonical JSON (comments do not count)."""
        return _content_hash(self.model_dump(mode="json"))

    def indicator_order(self) -> list[str]:
        """Indicator ids with every combined indicator after the ones it refers to."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(iid: str) -> None:
            if iid in seen:
                return
            seen.add(iid)
            ind = self.indicators[iid]
            for ref in (*ind.any_of, *ind.all_of):
                visit(ref)
            order.append(iid)

        for iid in self.indicators:
            visit(iid)
        return order


def _content_hash(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_acyclic(indicators: Mapping[str, Indicator]) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(iid: str, path: list[str]) -> None:
        if state.get(iid) == 2:
            return
        if state.get(iid) == 1:
            cycle = path[path.index(iid) :] + [iid]
            raise ValueError(f"indicators: a cycle in definitions: {' -> '.join(cycle)}")
        state[iid] = 1
        ind = indicators[iid]
        for ref in (*ind.any_of, *ind.all_of):
            visit(ref, [*path, iid])
        state[iid] = 2

    for iid in indicators:
        visit(iid, [])


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RulesetError(f"ruleset file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesetError(f"cannot read ruleset file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesetError(f"ruleset file {path} is not valid TOML: {exc}") from exc


def _resolve(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in seen:
        raise RulesetError(f"ruleset file {path}: its base chain loops back to itself")
    data = _read_toml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or "/" in base or "\\" in base:
        raise RulesetError(f"ruleset file {path}: base must be a file name in the same directory")
    merged = _resolve(path.parent / base, (*seen, path.resolve()))
    for key, value in data.items():
        if key in _MERGED and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}  # add or override id by id
        else:
            merged[key] = value
    return merged


def load_ruleset(path: Path) -> Ruleset:
    """Read, resolve and validate a ruleset file; RulesetError names the file and the rule."""
    data = _resolve(path)
    if data.get("format", RULESET_FORMAT) != RULESET_FORMAT:
        raise RulesetError(
            f"ruleset file {path}: format {data.get('format')!r}, expected {RULESET_FORMAT!r}"
        )
    _refuse_legacy_days(path, data)
    try:
        return Ruleset.model_validate(data)
    except ValidationError as exc:
        raise RulesetError(f"ruleset file {path}: {describe_errors(exc, '(top)')}") from exc


def _refuse_legacy_days(path: Path, data: dict[str, Any]) -> None:
    outcomes = data.get("outcomes")
    sections: list[tuple[str, Any]] = []
    if isinstance(outcomes, dict):
        sections += [(f"outcomes.{oid}", o) for oid, o in outcomes.items()]
    sections.append(("employment", data.get("employment")))
    for where, outcome in sections:
        conditions = outcome.get("all_of") if isinstance(outcome, dict) else None
        for k, cond in enumerate(conditions if isinstance(conditions, list) else []):
            for old in sorted(set(cond) & set(_LEGACY_CONDITION) if isinstance(cond, dict) else ()):
                raise RulesetError(
                    f"ruleset file {path}: {where}.all_of.{k}.{old}: outcome rules are stated "
                    f"in calendar months now; use {_LEGACY_CONDITION[old]} instead"
                )


def shipped_rulesets() -> dict[str, Path]:
    """Name -> path of the rulesets shipped with the service."""
    root = Path(str(resources.files("linkage_service.programme").joinpath(_SHIPPED)))
    return {p.stem: p for p in sorted(root.glob("*.toml")) if not p.stem.startswith("_")}


def default_ruleset(name: str = DEFAULT_RULESET) -> Ruleset:
    """A shipped ruleset by name (Troubled Families Phase 2 by default)."""
    shipped = shipped_rulesets()
    if name not in shipped:
        raise RulesetError(f"no shipped ruleset {name!r}; shipped: {', '.join(sorted(shipped))}")
    return load_ruleset(shipped[name])
