"""Opt-out and restriction flags: what each kind stops, and which families carry one.

An information governance officer sets a family's flag in the unlock service
(``OPT_OUT``: the family objected to profiling; ``RESTRICTED``: processing is
restricted, e.g. while accuracy is contested); the unlock service forwards it
here (``PUT /restrictions/{family_id}``, the ``unlock_service`` role). What a
flag stops is configured per kind (the ``restrictions`` setting), validated on
load:

* ``profiling``: the family is not assessed, scored, ranked or snapshotted, and
  no attestation is signed for it; the cycle counts it under
  ``restrictions.excluded`` by kind;
* ``claims``: no attachment or results claim is made for it, and an assessment
  does not move it to ``pending_claim``;
* ``release``: no attestation or sealed blob is handed out. Every kind must
  block release (the unlock service refuses any flagged family too), so a
  configuration saying otherwise is refused.

Defaults (:data:`DEFAULT_RESTRICTIONS`): ``OPT_OUT`` stops profiling and
release (work with the family may go on, and its attachment fee may be
claimed); ``RESTRICTED`` stops profiling, claims and release (only storage).

A flag is stored against the family id and the person ids the family had when
it was set (its latest snapshot), and applies to any family holding one of
those people, so a refresh that re-links them does not drop it.

Must never: evaluate scores or claims (callers ask :class:`Flags` which
families are blocked), or hold anything but pseudonymous ids.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from protocols import RestrictionLifted, RestrictionSet, RestrictionView

from .. import _store as store
from .._errors import ConflictError, NotFound, StorageError
from . import _store as pstore

__all__ = [
    "DEFAULT_RESTRICTIONS",
    "blocked",
    "EFFECTS",
    "REQUIRED_KINDS",
    "Flags",
    "RestrictionEffects",
    "RestrictionPolicy",
    "check_policy",
    "flags",
    "lift_restriction",
    "list_restrictions",
    "release_block",
    "set_restriction",
]

Effect = Literal["profiling", "claims", "release"]
EFFECTS: Final[tuple[Effect, ...]] = ("profiling", "claims", "release")
# The flags the unlock service sets (unlock_service/_service.py FLAGS): each needs a rule.
REQUIRED_KINDS: Final = ("OPT_OUT", "RESTRICTED")
Kind = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")]


class RestrictionEffects(BaseModel):
    """What one kind of flag stops."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profiling: bool
    claims: bool
    release: bool = True

    def stops(self) -> tuple[Effect, ...]:
        """The effects this kind has, in :data:`EFFECTS` order."""
        return tuple(e for e in EFFECTS if getattr(self, e))


def check_policy(policy: dict[str, RestrictionEffects]) -> dict[str, RestrictionEffects]:
    """The policy if every required kind has a rule and every kind blocks release."""
    missing = [k for k in REQUIRED_KINDS if k not in policy]
    if missing:
        raise ValueError(
            f"no rule for {', '.join(missing)}: every flag the unlock service sets "
            f"({', '.join(REQUIRED_KINDS)}) needs one"
        )
    leaky = sorted(k for k, v in policy.items() if not v.release)
    if leaky:
        raise ValueError(
            f"{', '.join(leaky)}: release = false; any restriction blocks release "
            "(the unlock service refuses every flagged family)"
        )
    return policy


RestrictionPolicy = Annotated[dict[Kind, RestrictionEffects], AfterValidator(check_policy)]

DEFAULT_RESTRICTIONS: Final[dict[str, RestrictionEffects]] = {
    "OPT_OUT": RestrictionEffects(profiling=True, claims=False, release=True),
    "RESTRICTED": RestrictionEffects(profiling=True, claims=True, release=True),
}


@dataclass(frozen=True)
class Flags:
    """The flags in force: by family id and by person id, with the policy to read them."""

    by_family: Mapping[str, str]
    by_person: Mapping[str, frozenset[str]]
    policy: Mapping[str, RestrictionEffects]

    def kinds(self, family_id: str, person_ids: Iterable[str] = ()) -> list[str]:
        """The kinds of flag a family carries, on its id or on any of its people."""
        found = {self.by_family[family_id]} if family_id in self.by_family else set()
        for p in person_ids:
            found.update(self.by_person.get(p, ()))
        return sorted(found)

    def blocking(self, family_id: str, person_ids: Iterable[str], effect: Effect) -> str | None:
        """The first kind of flag on the family that stops ``effect``, or None.

        A kind the policy has no rule for (set before the configuration changed)
        stops everything: fail closed.
        """
        for kind in self.kinds(family_id, person_ids):
            rule = self.policy.get(kind)
            if rule is None or getattr(rule, effect):
                return kind
        return None

    def count(
        self, families: Iterable[tuple[str, Iterable[str]]], effect: Effect
    ) -> dict[str, int]:
        """Families (id, person ids) whose flags stop ``effect``, counted by kind."""
        out: Counter[str] = Counter()
        for fid, pids in families:
            kind = self.blocking(fid, pids, effect)
            if kind is not None:
                out[kind] += 1
        return dict(sorted(out.items()))

    def __bool__(self) -> bool:
        return bool(self.by_family)


def flags(conn: Connection, policy: Mapping[str, RestrictionEffects] | None = None) -> Flags:
    """Every flag in force, read inside the caller's transaction."""
    by_family: dict[str, str] = {}
    by_person: dict[str, set[str]] = {}
    for row in pstore.restriction_rows(conn):
        by_family[row.family_id] = row.kind
        for pid in json.loads(row.persons):
            by_person.setdefault(str(pid), set()).add(row.kind)
    return Flags(
        by_family,
        {p: frozenset(k) for p, k in by_person.items()},
        DEFAULT_RESTRICTIONS if policy is None else policy,
    )


def family_persons(conn: Connection, family_id: str) -> list[str]:
    """The person ids of the family's latest snapshot (empty if it was never assessed)."""
    detail = pstore.latest_detail(conn, family_id)
    if detail is None:
        return []
    return sorted(str(m["person_id"]) for m in json.loads(detail).get("members", ()))


def blocked(
    conn: Connection, flagged: Flags, family_ids: Iterable[str], effect: Effect
) -> dict[str, str]:
    """Family id -> kind, for the families (people from their latest snapshot) ``effect`` stops."""
    if not flagged:
        return {}
    out = {}
    for fid in family_ids:
        people = family_persons(conn, fid) if flagged.by_person else []
        kind = flagged.blocking(fid, people, effect)
        if kind is not None:
            out[fid] = kind
    return out


def release_block(conn: Connection, family_id: str) -> str | None:
    """The kind of flag that stops releasing this family, or None (every kind does)."""
    f = flags(conn)
    if not f:
        return None
    return next(iter(f.kinds(family_id, family_persons(conn, family_id))), None)


def set_restriction(
    engine: Engine,
    family_id: str,
    kind: str,
    policy: Mapping[str, RestrictionEffects],
    *,
    actor: str,
    now: dt.datetime | None = None,
) -> RestrictionSet:
    """Set (or replace) a family's flag; idempotent for the same kind. One transaction."""
    if kind not in policy:
        raise ConflictError(
            f"restriction kind {kind!r} has no rule in the restrictions setting; "
            f"kinds: {', '.join(sorted(policy))}"
        )
    when = now or dt.datetime.now(dt.UTC)
    try:
        with engine.begin() as conn:
            persons = family_persons(conn, family_id)
            pstore.put_restriction(
                conn,
                pstore.RestrictionRow(
                    family_id=family_id,
                    kind=kind,
                    persons=json.dumps(persons),
                    set_at=int(when.timestamp() * 1_000_000),
                    set_by=actor[:80],
                ),
            )
    except IntegrityError as exc:
        raise ConflictError(
            f"the flag of {family_id} was changed by another request at the same time; retry"
        ) from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"flag of {family_id} not stored: {exc}") from exc
    return RestrictionSet(
        family_id=family_id, kind=kind, persons=len(persons), stops=list(policy[kind].stops())
    )


def lift_restriction(engine: Engine, family_id: str) -> RestrictionLifted:
    """Lift a family's flag; NotFound if it carries none."""
    try:
        with engine.begin() as conn:
            kind = pstore.delete_restriction(conn, family_id)
    except SQLAlchemyError as exc:
        raise StorageError(f"flag of {family_id} not lifted: {exc}") from exc
    if kind is None:
        raise NotFound(f"family {family_id} carries no restriction")
    return RestrictionLifted(family_id=family_id, lifted=str(kind))


def list_restrictions(
    engine: Engine, policy: Mapping[str, RestrictionEffects] | None = None
) -> list[RestrictionView]:
    """Every flag in force with what it stops under ``policy``."""
    rules = DEFAULT_RESTRICTIONS if policy is None else policy
    try:
        with engine.connect() as conn:
            rows = pstore.restriction_rows(conn)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read restrictions: {exc}") from exc
    return [
        RestrictionView(
            family_id=row.family_id,
            kind=row.kind,
            persons=len(json.loads(row.persons)),
            set_at=store.iso(row.set_at),
            set_by=row.set_by,
            stops=list(rules[row.kind].stops()) if row.kind in rules else list(EFFECTS),
        )
        for row in rows
    ]
