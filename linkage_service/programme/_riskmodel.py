"""The risk / complexity model: a published points scorecard, versioned, with thresholds.

A model file (TOML) gives integer points to indicators or problems of a ruleset
(each a *reason code*), extra points to critical *combinations* (e.g. domestic
abuse with parental mental health and substance misuse), points per problem
met (breadth), and the thresholds: ``unlock`` (a family at or above it may have
its identities released, under the unlock service's policy), ``step_up`` and
``step_down`` (a rise or fall of at least that many points since the previous
cycle triggers a review). ``clearance`` rules say which clearance level a
professional needs to unlock a family with a given indicator.

Points are integers so a family's reason codes always sum exactly to its
score. The model is checked against the ruleset it is used with: a reference
to an indicator or problem the ruleset does not define is refused by name.
:meth:`RiskModel.sha256` hashes the content; every assessment records it.

Must never: evaluate families (that is ``_programme``), do I/O beyond reading
the file it is given.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from protocols import describe_errors

from ._ruleset import Ruleset, RulesetError, _content_hash

__all__ = [
    "Combination",
    "Factor",
    "RiskModel",
    "default_model",
    "load_model",
]

MODEL_FORMAT: Final = "family-linkage/risk-model/v1"
DEFAULT_MODEL = "family-complexity"
Code = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")]
Ref = Annotated[str, StringConstraints(pattern=r"^(indicator|problem):[a-z][a-z0-9_]{0,47}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,39}$")]
Version = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6}){0,2}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Factor(_Model):
    """Points when one indicator or problem is met."""

    title: str = Field(min_length=1, max_length=200)
    when: Ref
    points: StrictInt = Field(ge=-100, le=100)


class Combination(_Model):
    """Extra points when every one of several indicators or problems is met."""

    title: str = Field(min_length=1, max_length=200)
    all_of: tuple[Ref, ...] = Field(min_length=2)
    points: StrictInt = Field(ge=0, le=100)


class Thresholds(_Model):
    """Unlock threshold and the step-up / step-down deltas between cycles."""

    unlock: StrictInt = Field(ge=1)
    step_up: StrictInt = Field(ge=1)
    step_down: StrictInt = Field(ge=1)


class ClearanceRule(_Model):
    """A family with this indicator or problem needs at least ``level`` to be unlocked."""

    when: Ref
    level: StrictInt = Field(ge=0, le=9)


class Clearance(_Model):
    """The clearance level an unlock needs: the default, raised by any matching rule."""

    default: StrictInt = Field(ge=0, le=9)
    rules: tuple[ClearanceRule, ...] = ()


class RiskModel(_Model):
    """A scorecard model."""

    format: Literal["family-linkage/risk-model/v1"] = MODEL_FORMAT
    name: Name
    version: Version
    title: str = Field(min_length=1, max_length=200)
    points_per_problem: StrictInt = Field(default=0, ge=0, le=100)
    factors: dict[Code, Factor] = Field(min_length=1)
    combinations: dict[Code, Combination] = Field(default_factory=dict)
    thresholds: Thresholds
    clearance: Clearance

    @model_validator(mode="after")
    def _codes_unique(self) -> RiskModel:
        both = set(self.factors) & set(self.combinations)
        if both:
            raise ValueError(f"reason codes used twice: {', '.join(sorted(both))}")
        if "BREADTH" in self.factors or "BREADTH" in self.combinations:
            raise ValueError("reason code BREADTH is reserved for points_per_problem")
        return self

    def sha256(self) -> str:
        """SHA-256 hex of the model's canonical JSON."""
        return _content_hash(self.model_dump(mode="json"))

    def check_against(self, ruleset: Ruleset) -> None:
        """RulesetError naming the first reference ``ruleset`` does not define."""
        refs: list[tuple[str, str]] = [
            (f"factors.{c}.when", f.when) for c, f in self.factors.items()
        ]
        for code, combo in self.combinations.items():
            refs += [(f"combinations.{code}.all_of", r) for r in combo.all_of]
        refs += [(f"clearance.rules.{k}.when", r.when) for k, r in enumerate(self.clearance.rules)]
        for where, ref in refs:
            kind, name = ref.split(":", 1)
            known = ruleset.indicators if kind == "indicator" else ruleset.problems
            if name not in known:
                raise RulesetError(
                    f"model {self.name} {self.version}: {where}: ruleset {ruleset.name} "
                    f"{ruleset.version} has no {kind} {name!r}"
                )


def load_model(path: Path) -> RiskModel:
    """Read and validate a model file; RulesetError names the file and the field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RulesetError(f"model file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesetError(f"cannot read model file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesetError(f"model file {path} is not valid TOML: {exc}") from exc
    try:
        return RiskModel.model_validate(data)
    except ValidationError as exc:
        raise RulesetError(f"model file {path}: {describe_errors(exc, '(top)')}") from exc


def default_model(name: str = DEFAULT_MODEL) -> RiskModel:
    """A model shipped with the service (in ``linkage_service/programme/rulesets/models``)."""
    root = Path(str(resources.files("linkage_service.programme").joinpath("rulesets", "models")))
    path = root / f"{name}.toml"
    if not path.exists():
        shipped = sorted(p.stem for p in root.glob("*.toml"))
        raise RulesetError(f"no shipped model {name!r}; shipped: {', '.join(shipped)}")
    return load_model(path)
