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
  continuous-employment result (see ``_claims``).

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

import hashlib
import json
import tomllib
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
    "Condition",
    "Eligibility",
    "Indicator",
    "Measure",
    "Outcome",
    "Payments",
    "Problem",
    "Ruleset",
    "RulesetError",
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


class Condition(_Model):
    """One test of a payment-by-results outcome over the family's snapshots.

    ``compare = "value"`` tests the measure's value; ``"baseline"`` tests the value
    at the baseline snapshot; ``"fall_pct"`` tests the percentage fall from
    baseline (a baseline of 0 or missing never passes). It must hold in each of
    the latest ``snapshots`` snapshots, whose dates must span at least
    ``span_days``, and the latest must be at least ``min_days_since_attachment``
    after attachment.
    """

    measure: Id
    compare: Literal["value", "baseline", "fall_pct"] = "value"
    op: Op
    value: Number
    snapshots: StrictInt = Field(default=1, ge=1, le=12)
    span_days: StrictInt = Field(default=0, ge=0, le=3660)
    min_days_since_attachment: StrictInt = Field(default=0, ge=0, le=3660)
    missing_as_zero: bool = False


class Outcome(_Model):
    """Significant and sustained progress on one problem: every condition holds."""

    title: str = Field(min_length=1, max_length=200)
    all_of: tuple[Condition, ...] = Field(min_length=1)


class Payments(_Model):
    """Payment-by-results amounts (GBP): attachment fee and results payment."""

    attachment_gbp: StrictInt = Field(default=1000, ge=0)
    result_gbp: StrictInt = Field(default=800, ge=0)


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
    try:
        return Ruleset.model_validate(data)
    except ValidationError as exc:
        raise RulesetError(f"ruleset file {path}: {describe_errors(exc, '(top)')}") from exc


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
