"""Families that last: attachments and claims belong to people, ids resolve to successors.

A re-link that retires an attached family's id must neither orphan the family
nor let it be attached or claimed a second time; an old id still resolves.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey

from linkage_service import _store as store
from linkage_service._errors import ConflictError, NotFound, Superseded
from linkage_service.programme import _store as pstore
from linkage_service.programme._assessment import (
    family_view,
    run_cycle,
    set_status,
)
from linkage_service.programme._attestations import current_attestation
from linkage_service.programme._claims import create_claims
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import default_ruleset
from protocols import Lineage

from ._programme_helpers import AS_AT, Member, TinyDb
from .test_assessment import complex_family

TF = default_ruleset("troubled-families-phase2")
MODEL = default_model()
SIGNER = SigningKey(bytes(range(32)))
LATER = AS_AT + dt.timedelta(days=91)


@pytest.fixture
def db(tmp_path) -> TinyDb:
    return TinyDb(tmp_path / "tiny.db")


def fam(hid: str) -> str:
    return "fam_" + hid[3:]


def _cycle(db: TinyDb, as_at: dt.date = AS_AT):
    return run_cycle(db.engine, TF, MODEL, as_at, actor="test", signer=SIGNER)


def test_a_relinked_attached_family_keeps_its_status_baseline_and_claims(db):
    hid, pids = db.household(1, complex_family())
    _cycle(db)
    old = fam(hid)
    set_status(db.engine, old, "attached", actor="coordinator", reason="WORK_STARTED")
    first = create_claims(db.engine, "2026-H2", actor="finance")
    assert first.attachment_claims == 1  # the fee
    # a re-link merges the family into a new household with one more person
    new_hid, extra = db.household(2, [Member(3, "M", ("health",))])
    db.relink(hid, new_hid, pids)
    result = _cycle(db, LATER)
    assert result.stats.statuses_carried == 1
    new = fam(new_hid)
    view = family_view(db.engine, new)
    assert view.status == "attached" and view.baseline_cycle == 1
    assert [c.kind for c in view.claims] == ["attachment"]
    assert view.status_history[-1].reason == "RELINKED"
    assert {s.cycle_id for s in view.scores} == {1, 2}  # the history came along
    # no second attachment fee, whatever the id
    again = create_claims(db.engine, "2027-H1", actor="finance")
    assert again.attachment_claims == 0
    # closed, re-identified and attached again in the same phase: refused
    set_status(db.engine, new, "closed", actor="c", reason="DONE")
    set_status(db.engine, new, "identified", actor="c", reason="AGAIN")
    with pytest.raises(ConflictError, match="already attached"):
        set_status(db.engine, new, "attached", actor="c", reason="AGAIN")
    # the old id resolves to the new one
    with pytest.raises(Superseded) as err:
        current_attestation(db.engine, old)
    assert err.value.current == [new]
    assert store.resolve_id(db.engine, old) == {"id": old, "state": "merged", "current": [new]}
    assert family_view(db.engine, old).lineage == Lineage(state="merged", current=[new])
    assert extra  # the newcomer is a member of the attached family now


def _claimed(db: TinyDb) -> list[tuple[str, str, list[str]]]:
    """(family id, kind, people) of every claim, oldest first."""
    c, cp = pstore.claims, pstore.claimed_persons
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(c.c.id, c.c.family_id, c.c.kind).order_by(c.c.id)).all()
        people = conn.execute(sa.select(cp.c.claim_id, cp.c.person_id)).all()
    return [(str(f), str(k), sorted(str(p) for cid, p in people if cid == i)) for i, f, k in rows]


@pytest.mark.parametrize("claimed_first", [False, True])
def test_two_attached_families_that_merge_are_one_family_attached_and_claimed_once(
    db, claimed_first
):
    h1, p1 = db.household(1, complex_family())
    h2, p2 = db.household(2, complex_family())
    _cycle(db)
    for hid in (h1, h2):
        set_status(db.engine, fam(hid), "attached", actor="c", reason="WORK_STARTED")
    if claimed_first:
        assert create_claims(db.engine, "2026-H2", actor="finance").attachment_claims == 2
    # a re-link finds they are one household: h1's people join h2, h1 is retired
    db.relink(h1, h2, p1)
    result = _cycle(db, LATER)
    assert result.stats.statuses_carried == 0  # h2 keeps its own attachment
    gone = family_view(db.engine, fam(h1))
    assert gone.status == "closed" and gone.status_history[-1].reason == "MERGED"
    assert gone.lineage == Lineage(state="merged", current=[fam(h2)])
    assert family_view(db.engine, fam(h2)).status == "attached"
    batch = create_claims(db.engine, "2027-H1", actor="finance")
    claims = _claimed(db)
    if claimed_first:
        # both were families when claimed: those claims stand, and nothing is added
        assert batch.attachment_claims == 0
        assert claims == [
            (fam(h1), "attachment", sorted(p1)),
            (fam(h2), "attachment", sorted(p2)),
        ]
    else:
        # one family by the time of the first claim batch: one fee, for all its people
        assert batch.attachment_claims == 1
        assert claims == [(fam(h2), "attachment", sorted(p1 + p2))]
    refused = rf"{fam(h1)}: none of the people .* lives on as {fam(h2)}"
    with pytest.raises(ConflictError, match=refused):
        create_claims(db.engine, "2027-H1", actor="finance", family_ids=[fam(h1)])
    # the next cycle leaves the closed id alone
    assert _cycle(db, LATER + dt.timedelta(days=91)).stats.statuses_carried == 0
    assert family_view(db.engine, fam(h1)).status_history[-1].reason == "MERGED"


def test_an_attachment_follows_its_people_when_their_family_id_goes_to_others(db):
    h1, p1 = db.household(1, complex_family())
    h3, (lodger,) = db.household(3, [Member(70, "M", ("dwp",))])
    h4, (stranger,) = db.household(4, [Member(52, "F", ("police",))])
    _cycle(db)
    set_status(db.engine, fam(h1), "attached", actor="c", reason="WORK_STARTED")
    # a re-link moves the family in with the lodger, and h1 lives on with a stranger
    ph = store.person_household
    with db.engine.begin() as conn:
        for pid in p1:
            conn.execute(ph.update().where(ph.c.person_id == pid).values(household_id=h3))
        conn.execute(ph.update().where(ph.c.person_id == stranger).values(household_id=h1))
    assert _cycle(db, LATER).stats.statuses_carried == 1
    view = family_view(db.engine, fam(h3))
    assert view.status == "attached" and view.baseline_cycle == 1
    assert view.status_history[-1].reason == "RELINKED"
    assert family_view(db.engine, fam(h1)).status is None  # the stranger's, not attached
    create_claims(db.engine, "2027-H1", actor="finance")
    assert _claimed(db) == [(fam(h3), "attachment", sorted([*p1, lodger]))]
    assert h4


def test_the_same_people_cannot_be_attached_twice_in_a_phase(db):
    hid, pids = db.household(1, complex_family())
    _cycle(db)
    set_status(db.engine, fam(hid), "attached", actor="c", reason="WORK_STARTED")
    # one of them turns up in another family, which is then re-identified
    other, _ = db.household(2, complex_family())
    with db.engine.begin() as conn:
        conn.execute(
            store.person_household.update()
            .where(store.person_household.c.person_id == pids[1])
            .values(household_id=other)
        )
    _cycle(db, LATER)
    with pytest.raises(ConflictError, match=f"{pids[1]} was already attached"):
        set_status(db.engine, fam(other), "attached", actor="c", reason="WORK_STARTED")
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(pstore.attached_persons)).all()
    assert sorted(r.person_id for r in rows) == sorted(pids)


def test_concurrent_attachments_have_one_winner(db):
    hid, _ = db.household(1, complex_family())
    _cycle(db)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attach() -> None:
        barrier.wait()
        try:
            set_status(db.engine, fam(hid), "attached", actor="c", reason="WORK_STARTED")
            outcomes.append("won")
        except ConflictError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attach) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 3 + ["won"]
    with db.engine.connect() as conn:
        events = conn.execute(
            sa.select(pstore.status_events).where(pstore.status_events.c.to_status == "attached")
        ).all()
    assert len(events) == 1


def test_an_id_never_issued_is_not_found_and_a_current_one_resolves_to_itself(db):
    hid, pids = db.household(1, complex_family())
    with pytest.raises(NotFound):
        store.resolve_id(db.engine, "fam_" + "9" * 16)
    assert store.resolve_id(db.engine, fam(hid))["state"] == "current"
    assert store.resolve_id(db.engine, pids[0])["current"] == [pids[0]]


def test_a_step_says_whether_the_risk_or_the_members_changed(db):
    h1, _ = db.household(1, [Member(40, "M", ("dwp",)), Member(7, "F", ("school",))])
    _, p2 = db.household(2, complex_family())
    h3, p3 = db.household(3, [Member(30, "F", ("health", "police")), Member(5, "M", ("school",))])
    _cycle(db)
    # re-linking moves household 2's mother into household 1: its score jumps
    with db.engine.begin() as conn:
        conn.execute(
            store.person_household.update()
            .where(store.person_household.c.person_id == p2[0])
            .values(household_id=h1)
        )
    # household 3's mother has new problems: its own risk, the same people
    for typ in ("months_alcohol_misuse", "months_drug_misuse", "months_mental_health"):
        db.add_event(p3[0], "health", typ, 6, AS_AT + dt.timedelta(days=20))
    db.add_event(p3[0], "police", "dv_incidents", 3, AS_AT + dt.timedelta(days=20))
    result = _cycle(db, LATER)
    up = {f["family_id"]: f for f in _snapshots(db, 2) if f["step"] == "up"}
    assert up[fam(h1)]["step_source"] == "relink"
    assert up[fam(h3)]["step_source"] == "data"
    assert result.stats.step_up_relinked == 1 and result.stats.step_up >= 2


def _snapshots(db: TinyDb, cycle_id: int) -> list[dict]:
    import json

    s = pstore.snapshots
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(s).where(s.c.cycle_id == cycle_id)).all()
    return [{"family_id": r.family_id, "step": r.step, **json.loads(r.detail)} for r in rows]


def test_an_attached_family_stays_assessed_when_it_stops_looking_like_a_family(db):
    hid, pids = db.household(1, complex_family())
    _cycle(db)
    set_status(db.engine, fam(hid), "attached", actor="c", reason="WORK_STARTED")
    # the child leaves: the household is one adult, no longer a family by the rules
    with db.engine.begin() as conn:
        conn.execute(
            store.person_household.delete().where(store.person_household.c.person_id == pids[1])
        )
    _cycle(db, LATER)
    assert {s.cycle_id for s in family_view(db.engine, fam(hid)).scores} == {1, 2}
