"""Subject access: everything the linkage service holds about the person a query encodes.

Given the engine's search hits for one encoded identity, reads (in one
connection) each matched record's pseudonymous data and indicators, the
person and household it is linked to, every assessment of the household's
family with its score and reasons, the family's programme status history and
its claims, and the records' sealed identity blobs (still sealed: only the
unlock service, the one caller of this, can open them). The answer is the
shared wire model :class:`protocols.SubjectAccessAnswer`.

This is a store module: its SQL reads only. It never writes, and it returns
nothing about the other members of a family beyond their number.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from protocols import (
    HeldAssessment,
    HeldClaim,
    HeldFamily,
    HeldIndicator,
    HeldPerson,
    HeldReason,
    HeldRecord,
    HeldStatusChange,
    SealedBlob,
    SubjectAccessAnswer,
    SubjectHeld,
)

from . import _store as store
from ._errors import StorageError
from .programme import _store as pstore
from .programme._programme import SnapshotDetail, parse_detail

__all__ = ["subject_answer"]


def _when(micros: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(micros / 1_000_000, dt.UTC)


def _records(
    conn: Connection, hits: Sequence[tuple[int, float, str | None]]
) -> tuple[dict[int, HeldRecord], list[SealedBlob]]:
    r, x, ind = store.records, store.extracts, store.indicators
    score = {rid: sc for rid, sc, _p in hits}
    rows: list[Any] = []
    indicators: dict[int, list[HeldIndicator]] = {}
    for part in store.chunks(sorted(score)):
        rows += conn.execute(
            sa.select(
                r.c.id,
                r.c.agency_id,
                r.c.record_ref,
                r.c.extract_id,
                r.c.extract_date,
                r.c.age,
                r.c.age_band,
                r.c.sex,
                r.c.district,
                r.c.exact_tokens,
                r.c.retired_by,
                r.c.sealed_identity,
                x.c.extract_type,
                x.c.received_at,
                x.c.seal_key_id,
            )
            .join(x, x.c.extract_id == r.c.extract_id)
            .where(r.c.id.in_(part))
        ).all()
        for i in conn.execute(
            sa.select(ind.c.record_id, ind.c.type, ind.c.date, ind.c.value)
            .where(ind.c.record_id.in_(part))
            .order_by(ind.c.record_id, ind.c.date, ind.c.type, ind.c.id)
        ):
            indicators.setdefault(int(i.record_id), []).append(
                HeldIndicator(type=i.type, date=i.date, value=float(i.value))
            )
    held: dict[int, HeldRecord] = {}
    blobs: list[SealedBlob] = []
    for row in rows:
        rid = int(row.id)
        held[rid] = HeldRecord(
            agency_id=row.agency_id,
            record_ref=row.record_ref,
            extract_id=row.extract_id,
            extract_type=row.extract_type,
            extract_date=row.extract_date,
            received_at=_when(row.received_at),
            match=round(min(max(score[rid], 0.0), 1.0), 4),
            age=row.age,
            age_band=row.age_band,
            sex=row.sex,
            postcode_district=row.district,
            identifiers=tuple(sorted(json.loads(row.exact_tokens))),
            indicators=tuple(indicators.get(rid, ())),
            retired_by=row.retired_by,
        )
        blobs.append(
            SealedBlob(
                agency_id=row.agency_id,
                record_ref=row.record_ref,
                extract_id=row.extract_id,
                seal_key_id=row.seal_key_id,
                sealed_identity=base64.b64encode(bytes(row.sealed_identity)).decode("ascii"),
            )
        )
    return held, blobs


def _family(conn: Connection, family_id: str, person_ids: set[str]) -> HeldFamily | None:
    s, c = pstore.snapshots, pstore.cycles
    snaps = conn.execute(
        sa.select(s, c.c.as_at, c.c.ruleset_name, c.c.ruleset_version)
        .join(c, c.c.id == s.c.cycle_id)
        .where(s.c.family_id == family_id)
        .order_by(s.c.cycle_id)
    ).all()
    if not snaps:
        return None
    status, history, claims = pstore.family_record(conn, family_id)
    assessments: list[HeldAssessment] = []
    members = 0
    for snap in snaps:
        detail = parse_detail(SnapshotDetail, snap.detail, family_id, snap.cycle_id)
        in_family = {m.person_id for m in detail.members}
        members = len(in_family)
        assessments.append(
            HeldAssessment(
                cycle_id=snap.cycle_id,
                as_at=snap.as_at,
                ruleset=f"{snap.ruleset_name} {snap.ruleset_version}",
                eligible=bool(snap.eligible),
                problems_met=tuple(p for p, v in sorted(detail.problems.items()) if v.met),
                indicators_met=tuple(detail.indicators),
                score=snap.score,
                step=snap.step,
                clearance_required=snap.clearance_required,
                reasons=tuple(
                    HeldReason(
                        code=r.code, points=r.points, title=r.title, because=tuple(r.because)
                    )
                    for r in detail.reasons
                ),
                subject_member=bool(in_family & person_ids),
            )
        )
    return HeldFamily(
        family_id=family_id,
        household_id=snaps[-1].household_id,
        members=members,
        status=None if status is None else status.status,
        attached_on=None if status is None else status.attached_on,
        assessments=tuple(assessments),
        status_history=tuple(
            HeldStatusChange(
                from_status=h.from_status, to_status=h.to_status, at=_when(h.at), reason=h.reason
            )
            for h in history
        ),
        claims=tuple(
            HeldClaim(
                claim_id=k.id,
                kind=k.kind,
                result=k.result,
                window_id=k.window_id,
                cycle_id=k.cycle_id,
                amount_gbp=k.amount_gbp,
                created_at=_when(k.created_at),
            )
            for k in claims
        ),
    )


def subject_answer(
    engine: Engine, hits: Sequence[tuple[int, float, str | None]], now: dt.datetime
) -> SubjectAccessAnswer:
    """What is held about the persons of ``hits`` ((record id, Dice, person id), best first)."""
    try:
        with engine.connect() as conn:
            records, blobs = _records(conn, hits)
            by_person: dict[str | None, list[tuple[int, float]]] = {}
            for rid, sc, pid in hits:
                if rid in records:
                    by_person.setdefault(pid, []).append((rid, sc))
            pids = sorted(p for p in by_person if p is not None)
            household: dict[str, str] = {}
            for part in store.chunks(pids):
                q = sa.select(store.person_household).where(
                    store.person_household.c.person_id.in_(part)
                )
                household.update({str(h.person_id): str(h.household_id) for h in conn.execute(q)})
            families_of: dict[str, list[str]] = {}
            for hid in sorted(set(household.values())):
                families_of[hid] = [
                    str(f)
                    for (f,) in conn.execute(
                        sa.select(pstore.snapshots.c.family_id)
                        .where(pstore.snapshots.c.household_id == hid)
                        .group_by(pstore.snapshots.c.family_id)
                        .order_by(pstore.snapshots.c.family_id)
                    )
                ]
            families = [
                f
                for fid in sorted({f for fs in families_of.values() for f in fs})
                if (f := _family(conn, fid, set(pids))) is not None
            ]
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read what is held for a subject access query: {exc}") from exc
    persons = []
    for pid, found in by_person.items():
        home = household.get(pid) if pid is not None else None
        persons.append(
            HeldPerson(
                person_id=pid,
                household_id=home,
                family_ids=tuple(families_of.get(home, ())) if home is not None else (),
                match=round(min(max(max(sc for _r, sc in found), 0.0), 1.0), 4),
                records=tuple(records[rid] for rid, _sc in found),
            )
        )
    persons.sort(key=lambda p: (-p.match, p.person_id or ""))
    held = SubjectHeld(searched_at=now, persons=tuple(persons), families=tuple(families))
    return SubjectAccessAnswer(held=held, blobs=tuple(blobs))
