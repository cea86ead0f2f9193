"""The active ruleset: which ruleset the next cycle uses, switched without a restart.

The settings name the ruleset a fresh service starts with. An admin may switch
the active ruleset between cycles (``POST /programme/ruleset`` or
``linkage-service ruleset use``), e.g. from Troubled Families Phase 2 to
Supporting Families 2022; each switch is a row in ``ruleset_switches`` with its
full content, who and when, and the latest row is what the next cycle uses.

A switch never resets anything. Everything that compares a snapshot with a
later one (outcome plans against the baseline, distance travelled, step-up and
step-down flags) reads the earlier snapshot **re-derived** under the ruleset in
force: its stored measures are re-evaluated into indicators, problems, domain
scores and (with the risk model) the score, by :func:`rederive_detail`. That is
exact only when the new ruleset defines each measure it uses as the old one
did, so :func:`switch_ruleset` refuses a switch whose measures differ from
those of a cycle holding an attached family's baseline, naming each one.

Must never: change a stored snapshot (re-derivations are computed when read).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from protocols import EvidenceEvent, RulesetSwitched, RulesetSwitchView, SnapshotProblem, VersionRef

from .. import _store as store
from .._errors import ConflictError, StorageError
from . import _store as pstore
from ._programme import OutcomeDetail, Plan, _score, compare, parse_detail
from ._riskmodel import RiskModel
from ._ruleset import Ruleset

__all__ = [
    "active_ruleset",
    "measure_differences",
    "rederive_detail",
    "rederived_score",
    "rescore_previous",
    "ruleset_switches",
    "switch_ruleset",
]

_MEASURE_KEYS = ("events", "window_days", "aggregate", "members")


def _met_indicators(measures: dict[str, float], plan: Plan) -> dict[str, bool]:
    met: dict[str, bool] = {}
    for iid, measure, op, threshold, any_of, all_of in plan.indicators:
        if measure is not None:
            assert op is not None
            met[iid] = compare(measures.get(measure), op, threshold)
        else:
            met[iid] = (not any_of or any(met[r] for r in any_of)) and all(met[r] for r in all_of)
    return met


def rederive_detail(detail: OutcomeDetail, ruleset: Ruleset) -> OutcomeDetail:
    """A snapshot's detail with problems and domains re-evaluated under ``ruleset``.

    The stored measures are kept; a problem's ``met_by`` comes from the stored
    evidence of the indicators that meet it (no ``data_from``: which agencies
    could have reported it is not stored); only problems met are kept, and the
    evidence of the indicators met.
    """
    plan = Plan.build(ruleset)
    met = _met_indicators(detail.measures, plan)
    met_ids = [i for i in plan.indicator_ids if met[i]]
    evidence: dict[str, list[EvidenceEvent]] = detail.evidence or {}
    problems: dict[str, SnapshotProblem] = {}
    domains: dict[str, int] = {}
    for pid, any_of, _sources in plan.problems:
        hits = [i for i in any_of if met[i]]
        if hits:
            problems[pid] = SnapshotProblem(
                met=True,
                indicators=hits,
                data_from=[],
                met_by=sorted({e.agency_id for i in hits for e in evidence.get(i, [])}),
                no_data=False,
            )
        domains[pid] = max((ruleset.indicators[i].severity for i in hits), default=1)
    return OutcomeDetail(
        problems=problems,
        domains=domains,
        measures=detail.measures,
        evidence=None
        if detail.evidence is None
        else {i: evidence[i] for i in met_ids if i in evidence},
        rederived=VersionRef(name=ruleset.name, version=ruleset.version, sha256=ruleset.sha256()),
    )


def rederived_score(detail: OutcomeDetail, ruleset: Ruleset, model: RiskModel) -> int:
    """The score of a snapshot re-derived from its stored measures under ``ruleset`` and
    ``model`` (as :func:`rederive_detail` re-derives its problems)."""
    plan = Plan.build(ruleset)
    met = _met_indicators(detail.measures, plan)
    holds = frozenset(
        [f"indicator:{i}" for i in plan.indicator_ids if met[i]]
        + [f"problem:{p}" for p, any_of, _s in plan.problems if any(met[i] for i in any_of)]
    )
    return _score(model, holds)[1]


def measure_differences(old: Ruleset, new: Ruleset) -> list[str]:
    """Measures ``new`` defines that ``old`` did not, or defined otherwise; in words."""
    out: list[str] = []
    for mid, m in new.measures.items():
        before = old.measures.get(mid)
        if before is None:
            out.append(f"measure {mid} is not in {old.name} {old.version}")
            continue
        for key in _MEASURE_KEYS:
            a, b = getattr(before, key), getattr(m, key)
            if a != b:
                out.append(f"measure {mid}: {key} {a!r} in {old.name} {old.version}, {b!r} now")
    return out


def rescore_previous(
    conn: Connection,
    previous_cycle: int,
    ruleset: Ruleset,
    model: RiskModel,
    previous: dict[str, int],
) -> dict[str, int]:
    """Previous-cycle scores to compare with, re-derived if it used another ruleset or model.

    Step-up and step-down flags compare like with like: after a switch the
    previous snapshot is re-scored under the new ruleset and model from its
    measures, so the switch itself raises no flag.
    """
    shas = pstore.cycle_shas(conn, previous_cycle)
    if shas is None or shas == (ruleset.sha256(), model.sha256()):
        return previous
    out: dict[str, int] = {}
    for fid, text in pstore.snapshot_details(conn, previous_cycle):
        detail = parse_detail(OutcomeDetail, text, fid, previous_cycle)
        out[fid] = rederived_score(detail, ruleset, model)
    return out


# --- the active ruleset --------------------------------------------------------------------


def active_ruleset(engine: Engine, configured: Ruleset) -> Ruleset:
    """The ruleset the next cycle uses: the latest switch, else the configured one."""
    try:
        with engine.connect() as conn:
            row = pstore.latest_switch(conn)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the active ruleset: {exc}") from exc
    return configured if row is None else Ruleset.model_validate_json(row.ruleset)


def _baseline_rulesets(conn: Connection) -> Iterable[Ruleset]:
    """The rulesets of the cycles holding attached families' baselines and of the latest cycle."""
    for body in pstore.baseline_ruleset_texts(conn):
        yield Ruleset.model_validate_json(body)


def switch_ruleset(
    engine: Engine,
    ruleset: Ruleset,
    model: RiskModel,
    configured: Ruleset,
    *,
    actor: str,
    reason: str,
    now: dt.datetime | None = None,
) -> RulesetSwitched:
    """Make ``ruleset`` the one the next cycle uses; refused if baselines cannot follow it.

    One guarded transition: the new row's id is the previous switch's plus one,
    so of two concurrent switches exactly one is stored and the other is refused.
    """
    model.check_against(ruleset)
    when = now or dt.datetime.now(dt.UTC)
    try:
        with engine.begin() as conn:
            last = pstore.latest_switch(conn)
            current = configured if last is None else Ruleset.model_validate_json(last.ruleset)
            if current.sha256() == ruleset.sha256():
                raise ConflictError(
                    f"ruleset {ruleset.name} {ruleset.version} (sha256 {ruleset.sha256()[:12]}) "
                    "is already the active ruleset"
                )
            problems = [
                d for old in _baseline_rulesets(conn) for d in measure_differences(old, ruleset)
            ]
            if problems:
                raise ConflictError(
                    f"ruleset {ruleset.name} {ruleset.version} refused: stored snapshots cannot be "
                    "re-derived under it, so baselines would not be comparable: "
                    + "; ".join(sorted(set(problems)))
                )
            pstore.add_switch(
                conn,
                pstore.SwitchRow(
                    id=1 if last is None else last.id + 1,
                    ruleset_name=ruleset.name,
                    ruleset_version=ruleset.version,
                    ruleset_sha256=ruleset.sha256(),
                    previous_sha256=current.sha256(),
                    switched_at=int(when.timestamp() * 1_000_000),
                    switched_by=actor,
                    reason=reason,
                    ruleset=json.dumps(ruleset.model_dump(mode="json"), sort_keys=True),
                ),
            )
    except IntegrityError as exc:
        raise ConflictError(
            f"ruleset switch to {ruleset.name} refused: another switch was stored at the same "
            "time; read the active ruleset and try again"
        ) from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"ruleset switch to {ruleset.name} not stored: {exc}") from exc
    return RulesetSwitched(
        ruleset=VersionRef(name=ruleset.name, version=ruleset.version, sha256=ruleset.sha256()),
        previous=VersionRef(name=current.name, version=current.version, sha256=current.sha256()),
        switched_at=when.isoformat(),
        switched_by=actor,
        reason=reason,
    )


def ruleset_switches(engine: Engine) -> list[RulesetSwitchView]:
    """Every switch of the active ruleset, newest first."""
    try:
        with engine.connect() as conn:
            rows = pstore.list_switches(conn)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read ruleset switches: {exc}") from exc
    return [
        RulesetSwitchView(
            switch_id=r.id,
            ruleset=VersionRef(
                name=r.ruleset_name, version=r.ruleset_version, sha256=r.ruleset_sha256
            ),
            previous_sha256=r.previous_sha256,
            switched_at=store.iso(r.switched_at),
            switched_by=r.switched_by,
            reason=r.reason,
        )
        for r in rows
    ]
