"""Assessment cycles: every family assessed, snapshotted, ranked, attested; statuses.

:func:`run_cycle` reads the current persons, households, active records and
their indicators, assesses every family with ``_programme.assess_family``
under one ruleset and one risk model, ranks the cohort, compares each score
with the family's previous cycle (step up / step down), signs an attestation
for each family at or above the unlock threshold, moves families whose
outcome plan is met to ``pending_claim`` (``_claims``), stores what each review
pair's match would change (``_review``), and writes the cycle, its snapshots,
new statuses, attestations and review impacts in ONE transaction: a failure
leaves no half-written cycle. The cycle row stores the ruleset and model
content, names and SHA-256s, so any snapshot can be re-explained later.

Family status: ``identified`` (first found eligible) -> ``attached`` (work
starts; the baseline is fixed to the latest snapshot) -> ``in_progress`` ->
``pending_claim`` -> ``claimed`` -> ``closed``; every change is a row in
``status_events`` with who made it, when and a reason code. Only an
assessment moves a family to ``pending_claim`` by its outcome plan, and only a
claim batch (``_claims``) to ``claimed``.

Attestations are signed, and the blobs they name released, in ``_attestations``;
nothing here reads a sealed blob.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from nacl.signing import SigningKey
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from protocols import (
    CycleRestrictions,
    CycleStats,
    CycleView,
    FamilyClaimView,
    FamilyPage,
    FamilyProgress,
    FamilyRow,
    FamilySnapshot,
    FamilyView,
    LeadProfessionalView,
    Lineage,
    MeasureProgress,
    ScoreChange,
    ScorePoint,
    StatusChangeView,
    StatusView,
    VersionRef,
    describe_errors,
    gc_paused,
)

from .. import _store as store
from .._errors import ConflictError, FieldError, NotFound, StorageError
from .._review import update_impacts
from . import _restrictions as restrictions_
from . import _store as pstore
from . import _store_assessment as astore
from ._active import rederive_detail, rescore_previous
from ._attestations import attest as _attest
from ._attestations import unknown_family
from ._claims import outcome_status
from ._programme import (
    Assessment,
    DetailJson,
    Event,
    FamilyInput,
    MemberInput,
    MemberJson,
    OutcomeDetail,
    Plan,
    SnapshotDetail,
    assess_family,
    parse_detail,
    rank,
)
from ._restrictions import RestrictionEffects
from ._riskmodel import RiskModel
from ._ruleset import Ruleset

__all__ = [
    "STATUSES",
    "TRANSITIONS",
    "family_view",
    "list_cycles",
    "list_families",
    "load_families",
    "run_cycle",
    "set_lead_professional",
    "set_status",
]

# statuses of a family attached and not yet closed: assessed every cycle until closed
WORKING_STATUSES = ("attached", "in_progress", "pending_claim", "claimed")
STATUSES = ("identified", "attached", "in_progress", "pending_claim", "claimed", "closed")
# Allowed moves; any status may be closed, and a closed family may be re-identified.
TRANSITIONS: dict[str | None, tuple[str, ...]] = {
    None: ("identified", "attached"),
    "identified": ("attached", "closed"),
    "attached": ("in_progress", "pending_claim", "closed"),
    "in_progress": ("pending_claim", "closed"),
    "pending_claim": ("in_progress", "claimed", "closed"),
    "claimed": ("closed",),
    "closed": ("identified", "attached"),
}
_INSERT_BATCH = 2000
# the programme runs in England: an attachment's "today" is the date there
_ENGLAND = ZoneInfo("Europe/London")


# --- loading ------------------------------------------------------------------------------


def family_district(districts: Iterable[str]) -> str | None:
    """A family's postcode district: the one most of its members give, a tie going to the
    alphabetically first; None when no member gives one.

    Each member counts once (their latest record's district). Not "the first member
    read": members are read in record-id order, and record ids are random, so two
    runs on the same extracts would place a family whose members differ in
    different districts.
    """
    counts = Counter(districts)
    if not counts:
        return None
    return min(counts, key=lambda d: (-counts[d], d))


def load_families(conn: Connection) -> list[FamilyInput]:
    """Every current household with its members, their active records and events."""
    household_of = astore.current_households(conn)
    # (id, person, agency, ref, age, sex, district, extract date, extract type, arrival
    # order, age band) by record id
    record_rows: dict[int, astore.ActiveRecord] = {}
    by_person: dict[str, list[astore.ActiveRecord]] = {}
    for t in astore.active_records(conn):
        pid = t[1]
        if pid not in household_of:
            continue
        record_rows[t[0]] = t
        by_person.setdefault(pid, []).append(t)
    events: dict[int, list[Event]] = {}
    for rid, typ, value, date in astore.active_events(conn):
        rec = record_rows.get(rid)
        if rec is not None:
            events.setdefault(rid, []).append(Event(typ, float(value), date, rec[2], rec[3]))
    members: dict[str, list[MemberInput]] = {}
    districts: dict[str, list[str]] = {}  # household -> its members' districts
    for pid, rows in by_person.items():
        latest = rows[0]
        if len(rows) > 1:
            for w in rows:
                if (w[7], w[9]) > (latest[7], latest[9]):  # the latest extract, then arrival
                    latest = w
        evs = tuple(e for w in rows for e in events.get(w[0], ()))
        types = {e.type for e in evs}
        day = latest[7]
        ages = [w[4] for w in rows if w[7] == day and w[4] is not None]
        dependent = any(a <= 15 for a in ages) or (
            any(16 <= a <= 18 for a in ages) and "in_education_or_training" in types
        )
        # the latest record's sex and district, else the first record that has one
        sex = latest[5] or next((w[5] for w in rows if w[5]), None)
        district = latest[6] or next((w[6] for w in rows if w[6]), None)
        hid = household_of[pid]
        if district:
            districts.setdefault(hid, []).append(district)
        held = [(w[2], w[3], w[8]) for w in rows]
        if len(held) > 1:
            held.sort()
        members.setdefault(hid, []).append(
            MemberInput(
                person_id=pid,
                age=latest[4],
                age_band=latest[10],
                age_date=day,
                sex=sex,
                records=tuple(held),
                events=evs,
                dependent=dependent,
                expectant="expectant_parent" in types,
            )
        )
    out: list[FamilyInput] = []
    for hid in sorted(members):
        out.append(
            FamilyInput(
                family_id=store.family_id_of(hid),
                household_id=hid,
                district=family_district(districts.get(hid, ())),
                members=tuple(sorted(members[hid], key=lambda m: m.person_id)),
            )
        )
    return out


# --- cycles -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleResult:
    """What one assessment cycle decided, for callers that want more than the summary."""

    cycle_id: int
    assessments: dict[str, Assessment]
    stats: CycleStats


class _Person(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    person_id: str


class _Members(BaseModel):
    """The members of a snapshot's detail, nothing else of it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    members: list[_Person]


def _previous_members(
    conn: Connection, cycle_id: int, family_ids: Sequence[str]
) -> dict[str, frozenset[str]]:
    """The person ids each family had in cycle ``cycle_id``'s snapshot."""
    out: dict[str, frozenset[str]] = {}
    for fid, detail in astore.snapshot_details_of(conn, cycle_id, family_ids):
        members = parse_detail(_Members, detail, fid, cycle_id).members
        out[fid] = frozenset(m.person_id for m in members)
    return out


def _member(m: MemberInput) -> MemberJson:
    out: MemberJson = {
        "person_id": m.person_id,
        "age": m.age,
        "sex": m.sex,
        "records": [[ag, ref] for ag, ref, _t in m.records],
    }
    if m.age_band is not None:  # only when set: snapshots from before extract v2 have no band
        out["age_band"] = m.age_band
    return out


def _detail(
    a: Assessment, family: FamilyInput, eligible_evidence: bool, step_source: str | None = None
) -> str:
    body: DetailJson = {
        "indicators": list(a.indicators),
        "problems": {p: v for p, v in a.problems.items() if v["met"] or v["data_from"]},
        "no_data": [p for p, v in a.problems.items() if v["no_data"]],
        "domains": a.domains,
        "measures": {k: v for k, v in a.measures.items() if v is not None},
        "reasons": [r.as_json() for r in a.reasons],
        "members": [_member(m) for m in family.members],
    }
    if eligible_evidence:
        body["evidence"] = a.evidence
    if step_source is not None:
        body["step_source"] = step_source  # "data": the same people; "relink": members changed
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def run_cycle(
    engine: Engine,
    ruleset: Ruleset,
    model: RiskModel,
    as_at: dt.date,
    *,
    actor: str,
    signer: SigningKey | None = None,
    now: dt.datetime | None = None,
    restrictions: Mapping[str, RestrictionEffects] | None = None,
) -> CycleResult:
    """Assess every family as at ``as_at`` and store the cycle atomically; its result.

    Families whose opt-out or restriction flag stops profiling (``restrictions``,
    the configured rule per kind; defaults when None) are left out: no
    assessment, snapshot, rank or attestation; ``stats.restrictions`` counts
    them by kind, and the families whose flags stop claims.
    """
    model.check_against(ruleset)
    when = now or dt.datetime.now(dt.UTC)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now_ = time.perf_counter()
        seconds[name] = round(now_ - clock, 3)
        clock = now_

    # Millions of small objects are built and kept for the whole cycle: the cyclic
    # garbage collector would rescan them again and again (most of the time at 1M
    # records) while nothing here makes reference cycles, so it is paused.
    try:
        with gc_paused(), engine.begin() as conn:
            families = load_families(conn)
            lap("load")
            previous_cycle = pstore.max_cycle_id(conn)
            cycle_id = (previous_cycle or 0) + 1
            previous: dict[str, int] = {}
            if previous_cycle is not None:
                previous = astore.cycle_scores(conn, previous_cycle)
                # after a ruleset switch, compare with the previous cycle re-scored under it
                previous = rescore_previous(conn, previous_cycle, ruleset, model, previous)
            presume = ruleset.eligibility.presume_in_education_to_age
            # a family being worked with stays assessed until it is closed, even if it
            # stops looking like a family (a child turns 19, leaves education): its
            # outcomes are measured at every cycle
            working = astore.ids_in_status(conn, WORKING_STATUSES)
            cohort = [
                f
                for f in families
                if f.is_family(presume)
                or not ruleset.eligibility.families_only
                or f.family_id in working
            ]
            flagged = restrictions_.flags(conn, restrictions)
            cohort, excluded, no_claims = _apply_flags(flagged, families, cohort)
            plan = Plan.build(ruleset)
            assessed = {
                f.family_id: assess_family(f, ruleset, model, as_at, plan=plan) for f in cohort
            }
            ranks = rank([(fid, a.score) for fid, a in assessed.items()])
            lap("assess")
            written = _write_cycle(
                conn,
                cycle_id,
                ruleset,
                model,
                as_at,
                actor,
                when,
                cohort,
                assessed,
                ranks,
                previous,
            )
            lap("snapshots")
            carried = _carry_statuses(conn, ruleset.name, cycle_id, cohort, actor, when)
            identified = _update_statuses(conn, cycle_id, assessed, actor, when)
            lap("statuses")
            pending = outcome_status(
                conn, ruleset, cycle_id, as_at, actor, when, skip=set(no_claims)
            )
            lap("outcomes")
            attested = None
            if signer is not None:
                attested = _attest(
                    conn, cycle_id, ruleset, model, as_at, when, signer, cohort, assessed
                )
            lap("attestations")
            # an opted-out household is not profiled in what-ifs either
            open_families = [f for f in families if f.family_id not in excluded]
            review = update_impacts(
                conn, cycle_id, open_families, assessed, ruleset, model, as_at, plan=plan
            )
            lap("review")
            stats = CycleStats(
                cycle_id=cycle_id,
                as_at=as_at.isoformat(),
                families=len(cohort),
                eligible=written.eligible,
                above_unlock=written.above_unlock,
                step_up=written.step_up,
                step_down=written.step_down,
                step_up_relinked=written.step_up_relinked,
                step_down_relinked=written.step_down_relinked,
                ruleset=f"{ruleset.name} {ruleset.version}",
                ruleset_sha256=ruleset.sha256(),
                model=f"{model.name} {model.version}",
                model_sha256=model.sha256(),
                statuses_carried=carried,
                identified=identified,
                restrictions=CycleRestrictions(
                    excluded=len(excluded),
                    excluded_by_kind=dict(sorted(Counter(excluded.values()).items())),
                    claims_blocked_by_kind=dict(sorted(Counter(no_claims.values()).items())),
                ),
                pending_claim=pending,
                attestations=attested,
                review=review,
                seconds=seconds,
            )
            astore.set_cycle_stats(
                conn, cycle_id, json.dumps(stats.model_dump(mode="json"), sort_keys=True)
            )
    except SQLAlchemyError as exc:
        raise StorageError(f"assessment as at {as_at} not stored: {exc}") from exc
    return CycleResult(cycle_id, assessed, stats)


def _apply_flags(
    flagged: restrictions_.Flags, families: Sequence[FamilyInput], cohort: list[FamilyInput]
) -> tuple[list[FamilyInput], dict[str, str], dict[str, str]]:
    """The cohort without families whose flags stop profiling; those (id -> kind);
    id -> kind for every family (current or flagged by id) whose flags stop claims."""
    if not flagged:
        return cohort, {}, {}
    persons = {f.family_id: [m.person_id for m in f.members] for f in families}
    excluded: dict[str, str] = {}
    kept = []
    for f in cohort:
        kind = flagged.blocking(f.family_id, persons[f.family_id], "profiling")
        if kind is None:
            kept.append(f)
        else:
            excluded[f.family_id] = kind
    no_claims = {}
    for fid in sorted(set(persons) | set(flagged.by_family)):
        kind = flagged.blocking(fid, persons.get(fid, ()), "claims")
        if kind is not None:
            no_claims[fid] = kind
    return kept, excluded, no_claims


class _Written(NamedTuple):
    """What writing a cycle's snapshots counted (steps: of those, how many because
    re-linking changed the family's members)."""

    eligible: int
    above_unlock: int
    step_up: int
    step_down: int
    step_up_relinked: int
    step_down_relinked: int


def _write_cycle(
    conn: Connection,
    cycle_id: int,
    ruleset: Ruleset,
    model: RiskModel,
    as_at: dt.date,
    actor: str,
    when: dt.datetime,
    cohort: Sequence[FamilyInput],
    assessed: dict[str, Assessment],
    ranks: dict[str, tuple[int, float]],
    previous: dict[str, int],
) -> _Written:
    astore.add_cycle(
        conn,
        pstore.CycleRow(
            id=cycle_id,
            as_at=as_at,
            ruleset_name=ruleset.name,
            ruleset_version=ruleset.version,
            ruleset_sha256=ruleset.sha256(),
            ruleset=json.dumps(ruleset.model_dump(mode="json"), sort_keys=True),
            model_name=model.name,
            model_version=model.version,
            model_sha256=model.sha256(),
            model=json.dumps(model.model_dump(mode="json"), sort_keys=True),
            created_at=_micros(when),
            created_by=actor,
            stats="{}",
        ),
    )
    t = model.thresholds
    rows: list[astore.SnapshotRow] = []
    steps = Counter[str]()
    step_of: dict[str, str] = {}
    for family in cohort:
        a = assessed[family.family_id]
        before = previous.get(family.family_id)
        if before is not None and a.score - before >= t.step_up:
            step_of[family.family_id] = "up"
        elif before is not None and before - a.score >= t.step_down:
            step_of[family.family_id] = "down"
    # a step is the family's risk changing only if its people are the ones scored
    # last cycle; otherwise re-linking (a member joined or left) moved the score
    was = _previous_members(conn, cycle_id - 1, sorted(step_of))
    for family in cohort:
        a = assessed[family.family_id]
        before = previous.get(family.family_id)
        step = step_of.get(family.family_id)
        source = None
        if step:
            same = was.get(family.family_id) == frozenset(m.person_id for m in family.members)
            source = "data" if same else "relink"
            steps[step] += 1
            steps[f"{step}_{source}"] += 1
        rk, pct = ranks[family.family_id]
        rows.append(
            astore.SnapshotRow(
                cycle_id=cycle_id,
                family_id=family.family_id,
                household_id=family.household_id,
                district=family.district,
                eligible=a.eligible,
                n_problems=len(a.problems_met),
                score=a.score,
                rank=rk,
                percentile=pct,
                previous_score=before,
                step=step,
                clearance_required=a.clearance_required,
                detail=_detail(a, family, a.eligible or a.score >= t.unlock, source),
            )
        )
        if len(rows) >= _INSERT_BATCH:
            astore.add_snapshots(conn, rows)
            rows = []
    astore.add_snapshots(conn, rows)
    return _Written(
        eligible=sum(1 for a in assessed.values() if a.eligible),
        above_unlock=sum(1 for a in assessed.values() if a.score >= t.unlock),
        step_up=steps["up"],
        step_down=steps["down"],
        step_up_relinked=steps["up_relink"],
        step_down_relinked=steps["down_relink"],
    )


def _micros(when: dt.datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def _record_status(
    conn: Connection,
    family_id: str,
    old: str | None,
    new: str,
    actor: str,
    reason: str,
    when: dt.datetime,
) -> None:
    pstore.add_status_events(
        conn, [pstore.StatusEvent(family_id, old, new, _micros(when), actor, reason)]
    )


def _carry_statuses(
    conn: Connection,
    phase: str,
    cycle_id: int,
    cohort: Sequence[FamilyInput],
    actor: str,
    when: dt.datetime,
) -> int:
    """Move the status of attached families that re-linking retired to their successors.

    An attachment belongs to the people it was made for: when their family id is
    retired (merged into another household, or split), or lives on holding none of
    them, the family now holding most of them takes over its status, baseline,
    earlier snapshots and claims, so it is neither orphaned nor attached (and
    claimed) a second time. When that family is attached itself (two attached
    families merged), it keeps its own attachment, which now covers the people of
    both, and the old id, holding none of its people, is closed (reason
    ``MERGED``; its claims and snapshots stay with it as history). Returns how
    many moved.
    """
    attached = astore.attached_people(conn, phase)
    if not attached:
        return 0
    held: dict[str, Counter[str]] = {}  # attached family id -> its people's families now
    stayed: set[str] = set()  # attached family ids still holding some of their people
    for family in cohort:
        for m in family.members:
            old = attached.get(m.person_id)
            if old is None:
                continue
            if old == family.family_id:
                stayed.add(old)
            else:
                held.setdefault(old, Counter())[family.family_id] += 1
    if not held:
        return 0
    retired = {
        store.family_id_of(h)
        for h in astore.retired_households(conn, [store.household_id_of(x) for x in held])
    }
    # an id that lives on holding none of its people now (re-linking gave it to others)
    # is no more theirs than a retired one
    moved = 0
    for old in sorted(retired | (held.keys() - stayed)):
        new = min(held[old].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        mine = pstore.family_row(conn, old)
        theirs = pstore.family_row(conn, new)
        astore.reassign_attached(conn, old, new)
        if mine is None:
            continue
        if theirs is not None and theirs.attached_on is not None:
            # one family now, attached once: an open status left on the old id would keep
            # it in every cohort and let a claim batch claim it (for nobody, or others)
            if mine.status != "closed" and astore.guarded_move(
                conn, old, mine.status, "closed", _micros(when), actor
            ):
                _record_status(conn, old, mine.status, "closed", actor, "MERGED", when)
            continue
        astore.carry_over(conn, old, new, cycle_id, replace=theirs is not None)
        _record_status(conn, new, mine.status, mine.status, actor, "RELINKED", when)
        moved += 1
    return moved


def _update_statuses(
    conn: Connection, cycle_id: int, assessed: dict[str, Assessment], actor: str, when: dt.datetime
) -> int:
    """Identify the newly eligible families (and closed ones eligible again); how many."""
    known = astore.family_statuses(conn)
    fresh = [fid for fid, a in assessed.items() if a.eligible and fid not in known]
    back = [fid for fid, a in assessed.items() if a.eligible and known.get(fid) == "closed"]
    rows = [
        pstore.FamilyRow(
            family_id=fid,
            status="identified",
            identified_cycle=cycle_id,
            attached_on=None,
            baseline_cycle=None,
            updated_at=_micros(when),
            updated_by=actor,
            lead_professional=None,
        )
        for fid in fresh
    ]
    astore.add_families(conn, rows, _INSERT_BATCH)
    events = [
        pstore.StatusEvent(
            family_id=fid,
            from_status=known.get(fid),
            to_status="identified",
            at=_micros(when),
            by=actor,
            reason="ELIGIBLE",
        )
        for fid in (*fresh, *back)
    ]
    pstore.add_status_events(conn, events, _INSERT_BATCH)
    astore.reidentify(conn, back, cycle_id, _micros(when), actor)
    return len(fresh) + len(back)


def _attach_people(conn: Connection, family_id: str, on: dt.date) -> None:
    """Record the family's people as attached in this phase; refuse if any already are.

    The primary key (phase, person) is what makes a second attachment impossible,
    concurrent callers included; the check before it only gives the better message.
    """
    phase = pstore.phase_of(conn)
    people = store.members_of(conn, family_id)
    if not people:
        raise unknown_family(conn, family_id, "with members now")
    held = astore.attached_holder(conn, phase, people)
    if held is not None:
        raise ConflictError(
            f"family {family_id}: its member {held[0]} was already attached in "
            f"{phase} with family {held[1]}; a family is attached once per phase"
        )
    # a concurrent attachment of the same people fails here (IntegrityError, rolled
    # back with the status change by the caller's transaction)
    astore.add_attached_persons(conn, phase, family_id, people, on)


def _attachment_date(
    conn: Connection,
    family_id: str,
    on: dt.date | None,
    identified_cycle: int,
    when: dt.datetime,
) -> dt.date:
    """The day work started with the family (``on``, else today): FieldError unless it lies
    between the family's identification and today.

    "Today" is England's date at ``when``; the family was identified by the
    assessment ``identified_cycle``, on the earlier of its as-at date and the
    day it was run; a family closed before starts again no earlier than the day
    it was last closed. The attachment starts the payment-by-results clock (the
    attachment fee, and outcome rules counted in months since attachment), so a
    date after today or before the family was identified would claim for work
    that had not happened yet.
    """
    today = when.astimezone(_ENGLAND).date()
    day = on or today
    if day > today:
        raise FieldError(
            f"family {family_id}: attachment date {day.isoformat()} is after today "
            f"({today.isoformat()}); enter the day work with the family started",
            field="on",
        )
    cycle = pstore.cycle_row(conn, identified_cycle)
    if cycle is not None:
        run_on = _england_date(cycle.created_at)
        if day < min(cycle.as_at, run_on):
            raise FieldError(
                f"family {family_id}: attachment date {day.isoformat()} is before the family "
                f"was identified (assessment {cycle.id}, as at {cycle.as_at.isoformat()}, run "
                f"on {run_on.isoformat()}); enter the day work with the family started",
                field="on",
            )
    closed = pstore.last_closed_at(conn, family_id)
    closed_on = None if closed is None else _england_date(closed)
    if closed_on is not None and day < closed_on:
        raise FieldError(
            f"family {family_id}: attachment date {day.isoformat()} is before the family's "
            f"last closure ({closed_on.isoformat()}): a new attachment starts "
            "after the last one ended; enter the day work with the family started again",
            field="on",
        )
    return day


def _england_date(micros: int) -> dt.date:
    return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC).astimezone(_ENGLAND).date()


def set_status(
    engine: Engine,
    family_id: str,
    status: str,
    *,
    actor: str,
    reason: str,
    on: dt.date | None = None,
    now: dt.datetime | None = None,
) -> StatusView:
    """Move a family to ``status`` if the move is allowed; attaching fixes the baseline."""
    if status not in STATUSES:
        raise ConflictError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    when = now or dt.datetime.now(dt.UTC)
    try:
        with engine.begin() as conn:
            snap = astore.latest_snapshot_cycle(conn, family_id)
            if snap is None:
                raise NotFound(f"no family {family_id!r} in any assessment")
            row = pstore.family_row(conn, family_id)
            old = None if row is None else row.status
            if status == old:
                raise ConflictError(f"family {family_id} is already {status}")
            if status == "claimed":
                raise ConflictError(
                    f"family {family_id}: claimed is reached only through a claim batch "
                    "(POST /claims or linkage-service claims run WINDOW), never set by hand"
                )
            if status not in TRANSITIONS[old]:
                raise ConflictError(
                    f"family {family_id} cannot go from {old or '(none)'} to {status}; "
                    f"allowed: {', '.join(TRANSITIONS[old]) or 'nothing'}"
                )
            attach = None
            if status == "attached":
                identified = snap if row is None else row.identified_cycle
                attach = (_attachment_date(conn, family_id, on, identified, when), snap)
                _attach_people(conn, family_id, attach[0])
            if row is None:
                # a second concurrent insert fails on the primary key (IntegrityError)
                astore.add_families(
                    conn,
                    [
                        pstore.FamilyRow(
                            family_id=family_id,
                            status=status,
                            identified_cycle=snap,
                            attached_on=None if attach is None else attach[0],
                            baseline_cycle=None if attach is None else attach[1],
                            updated_at=_micros(when),
                            updated_by=actor,
                            lead_professional=None,
                        )
                    ],
                )
            else:
                # guarded: of two concurrent moves from the same status, one wins
                assert old is not None
                moved = astore.guarded_move(
                    conn, family_id, old, status, _micros(when), actor, attach=attach
                )
                if not moved:
                    raise ConflictError(
                        f"family {family_id}: its status changed while this request ran; "
                        "read it again"
                    )
            _record_status(conn, family_id, old, status, actor, reason, when)
            out = pstore.family_row(conn, family_id)
            assert out is not None  # stored just now, in this transaction
    except IntegrityError as exc:
        raise ConflictError(
            f"family {family_id}: not changed to {status}; another request changed it or "
            "attached some of its members at the same time"
        ) from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"status of {family_id} not changed: {exc}") from exc
    return StatusView(
        family_id=family_id,
        status=out.status,
        attached_on=out.attached_on.isoformat() if out.attached_on else None,
        baseline_cycle=out.baseline_cycle,
        updated_by=out.updated_by,
    )


LEAD_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def set_lead_professional(
    engine: Engine,
    family_id: str,
    code: str | None,
    *,
    actor: str,
    now: dt.datetime | None = None,
) -> LeadProfessionalView:
    """Record (or clear, with None) the family's lead professional: a code, never a name."""
    if code is not None and not LEAD_CODE.match(code):
        raise ConflictError(
            f"lead professional {code!r}: expected a professional id or team code "
            "(letters, digits, _ . : -, at most 64)"
        )
    when = now or dt.datetime.now(dt.UTC)
    try:
        with engine.begin() as conn:
            done = astore.set_lead(conn, family_id, code, _micros(when), actor)
    except SQLAlchemyError as exc:
        raise StorageError(f"lead professional of {family_id} not recorded: {exc}") from exc
    if not done:
        raise NotFound(f"no family {family_id!r} with a status: identify or attach it first")
    return LeadProfessionalView(family_id=family_id, lead_professional=code)


# --- reads ----------------------------------------------------------------------------------


def _cycle_json(row: pstore.CycleRow) -> CycleView:
    try:
        stats = CycleStats.model_validate_json(row.stats)
    except ValidationError as exc:
        raise StorageError(
            f"cycle {row.id}: stored counts do not parse: {describe_errors(exc, '(top)')}"
        ) from exc
    return CycleView(
        cycle_id=row.id,
        as_at=row.as_at.isoformat(),
        ruleset=VersionRef(
            name=row.ruleset_name, version=row.ruleset_version, sha256=row.ruleset_sha256
        ),
        model=VersionRef(name=row.model_name, version=row.model_version, sha256=row.model_sha256),
        created_at=store.iso(row.created_at),
        created_by=row.created_by,
        stats=stats,
    )


def list_cycles(engine: Engine, limit: int = 100) -> list[CycleView]:
    """Assessment cycles, newest first."""
    try:
        with engine.connect() as conn:
            rows = pstore.cycle_rows(conn, limit)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read assessment cycles: {exc}") from exc
    return [_cycle_json(r) for r in rows]


def _cycle(conn: Connection, cycle_id: int | None) -> pstore.CycleRow:
    row = pstore.cycle_row(conn, cycle_id)
    if row is None:
        raise NotFound("no assessment has been run" if cycle_id is None else f"no cycle {cycle_id}")
    return row


class _Met(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    met: bool


class _Code(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    code: str


class _Listed(BaseModel):
    """What a list row shows of a snapshot's detail: problems met, reason codes."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    problems: dict[str, _Met]
    reasons: list[_Code]

    @property
    def problems_met(self) -> list[str]:
        return [p for p, v in self.problems.items() if v.met]


def list_families(
    engine: Engine,
    *,
    cycle_id: int | None = None,
    eligible: bool | None = None,
    status: str | None = None,
    district: str | None = None,
    problem: str | None = None,
    min_score: int | None = None,
    max_score: int | None = None,
    offset: int = 0,
    limit: int = 100,
) -> FamilyPage:
    """A page of a cycle's families (latest by default), highest score first.

    Filters: eligibility, status, postcode district, a problem met (an id of
    the cycle's ruleset) and a score range (inclusive). Each row names the
    problems met and the reason codes of its score.
    """
    try:
        with engine.connect() as conn:
            cyc = _cycle(conn, cycle_id)

            snaps = astore.listed_snapshots(
                conn,
                cyc.id,
                eligible=eligible,
                status=status,
                district=district,
                min_score=min_score,
                max_score=max_score,
                page=(offset, limit) if problem is None else None,
            )
            found: Iterable[tuple[astore.ListedSnapshot, _Listed]] = (
                (r, parse_detail(_Listed, r.detail, r.family_id, cyc.id)) for r in snaps
            )
            if problem is not None:
                # problems met live in the snapshot's detail: filtered here, then paged
                met = ((r, d) for r, d in found if problem in d.problems_met)
                found = itertools.islice(met, offset, offset + limit)
            rows = list(found)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot list families: {exc}") from exc
    return FamilyPage(
        cycle=_cycle_json(cyc),
        families=[
            FamilyRow(
                family_id=r.family_id,
                household_id=r.household_id,
                postcode_district=r.district,
                eligible=bool(r.eligible),
                problems=r.n_problems,
                score=r.score,
                rank=r.rank,
                percentile=r.percentile,
                previous_score=r.previous_score,
                step=r.step,
                clearance_required=r.clearance_required,
                status=r.status,
                problems_met=d.problems_met,
                reason_codes=[x.code for x in d.reasons],
            )
            for r, d in rows
        ],
        next_offset=offset + limit if len(rows) == limit else None,
    )


def _snapshot_view(row: astore.FamilySnapshot, d: SnapshotDetail) -> FamilySnapshot:
    return FamilySnapshot(
        cycle_id=row.cycle_id,
        eligible=bool(row.eligible),
        problems=d.problems,
        score=row.score,
        rank=row.rank,
        percentile=row.percentile,
        previous_score=row.previous_score,
        step=row.step,
        clearance_required=row.clearance_required,
        postcode_district=row.district,
        indicators=d.indicators,
        no_data=d.no_data,
        domains=d.domains,
        measures=d.measures,
        reasons=d.reasons,
        members=d.members,
        evidence=d.evidence,
        step_source=d.step_source,
    )


def family_view(engine: Engine, family_id: str) -> FamilyView:
    """A family's latest snapshot, status and history, and progress against its baseline.

    Progress (distance travelled): each problem's domain score (1 none .. 5
    critical) at baseline and now, and each Family Progress Data measure of
    the ruleset at baseline and now.
    """
    try:
        with engine.connect() as conn:
            rows = astore.family_snapshots(conn, family_id)
            if not rows:
                raise unknown_family(conn, family_id, "in any assessment")
            lineage = store.successors(conn, family_id)
            status, history, claims = pstore.family_record(conn, family_id)
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read family {family_id}: {exc}") from exc
    latest = rows[-1]
    detail = parse_detail(SnapshotDetail, latest.detail, family_id, latest.cycle_id)
    state, current = lineage or ("retired", [])
    base = [r for r in rows if status is not None and r.cycle_id == status.baseline_cycle]
    return FamilyView(
        family_id=family_id,
        household_id=latest.household_id,
        # re-linking may have merged or split it since: the ids it lives on as now
        lineage=Lineage(state=state, current=current),
        as_at=latest.as_at.isoformat(),
        latest=_snapshot_view(latest, detail),
        status=None if status is None else status.status,
        attached_on=None
        if status is None or status.attached_on is None
        else status.attached_on.isoformat(),
        baseline_cycle=None if status is None else status.baseline_cycle,
        status_history=[
            StatusChangeView(
                from_=h.from_status, to=h.to_status, at=store.iso(h.at), by=h.by, reason=h.reason
            )
            for h in history
        ],
        scores=[
            ScorePoint(cycle_id=r.cycle_id, as_at=r.as_at.isoformat(), score=r.score, step=r.step)
            for r in rows
        ],
        claims=[
            FamilyClaimView(
                claim_id=c.id,
                kind=c.kind,
                result=c.result,
                window_id=c.window_id,
                amount_gbp=c.amount_gbp,
            )
            for c in claims
        ],
        progress=_progress(base[0], latest, detail) if base else None,
    )


def _progress(
    base: astore.FamilySnapshot, now: astore.FamilySnapshot, n: OutcomeDetail
) -> FamilyProgress:
    """Distance travelled from ``base`` to ``now`` (``n``: its detail) under ``now``'s ruleset."""
    ruleset = Ruleset.model_validate_json(now.ruleset)
    b = parse_detail(OutcomeDetail, base.detail, base.family_id, base.cycle_id)
    if base.ruleset != now.ruleset:  # a switch since: the baseline under the rules in force
        b = rederive_detail(b, ruleset)
    domains = {
        p: ScoreChange(
            baseline=b.domains.get(p, 1),
            now=n.domains.get(p, 1),
            change=n.domains.get(p, 1) - b.domains.get(p, 1),
        )
        for p in ruleset.problems
    }
    measures = {
        mid: MeasureProgress(
            category=m.progress,
            title=m.title,
            baseline=b.measures.get(mid),
            now=n.measures.get(mid),
        )
        for mid, m in ruleset.measures.items()
        if m.progress is not None
    }
    return FamilyProgress(
        baseline_cycle=base.cycle_id,
        latest_cycle=now.cycle_id,
        score=ScoreChange(baseline=base.score, now=now.score, change=now.score - base.score),
        domains=domains,
        family_progress_data=measures,
    )
