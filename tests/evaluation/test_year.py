"""The programme year's duplicate-claim check judges each claim by the ids as they stood."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from evaluation import _year as year
from linkage_service import _store as store
from linkage_service.programme import _store as pstore
from linkage_service.programme._assessment import run_cycle, set_status
from linkage_service.programme._claims import create_claims
from linkage_service.programme._riskmodel import default_model
from linkage_service.programme._ruleset import default_ruleset
from tests.linkage_service._programme_helpers import AS_AT, TinyDb
from tests.linkage_service.test_assessment import complex_family

NONE = {"attachment": 0, "result": 0, "persons": 0, "attached_persons": 0}


def fam(hid: str) -> str:
    return "fam_" + hid[3:]


@pytest.fixture
def two_claimed(tmp_path) -> tuple[TinyDb, str, str, list[str]]:
    """Two attached families, each claimed for attachment."""
    db = TinyDb(tmp_path / "tiny.db")
    h1, p1 = db.household(1, complex_family())
    h2, _ = db.household(2, complex_family())
    run_cycle(db.engine, default_ruleset(), default_model(), AS_AT, actor="t")
    for hid in (h1, h2):
        set_status(db.engine, fam(hid), "attached", actor="c", reason="WORK_STARTED")
    assert create_claims(db.engine, "2026-H2", actor="finance").attachment_claims == 2
    return db, h1, h2, p1


def _retire_now(db: TinyDb, hid: str, run_id: int = 2) -> None:
    """Date ``hid``'s retirement (TinyDb.relink records run 1) to a run finishing now."""
    now = store.now_micros()
    with db.engine.begin() as conn:
        conn.execute(
            store.runs.insert().values(
                id=run_id, kind="ingest", status="applied", started_at=now, finished_at=now,
                stats="{}",
            )
        )  # fmt: skip
        h = store.households
        conn.execute(h.update().where(h.c.id == hid).values(retired_run=run_id))


def test_families_claimed_while_separate_that_merge_later_are_no_duplicate(two_claimed):
    db, h1, h2, p1 = two_claimed
    db.relink(h1, h2, p1)
    _retire_now(db, h1)
    assert year.duplicate_claims(db.engine) == NONE


def test_a_claim_for_a_family_already_merged_or_for_nobody_is_a_duplicate(two_claimed):
    db, h1, h2, p1 = two_claimed
    db.relink(h1, h2, p1)
    _retire_now(db, h1)
    c = pstore.claims
    with db.engine.begin() as conn:
        row = conn.execute(sa.select(c).where(c.c.family_id == fam(h1))).one()._asdict()
        # a second claim, made after the merge, under another kind's guard: a result
        # claim for the retired id (recorded for nobody) and one for the survivor
        for fid in (fam(h1), fam(h2)):
            cid = conn.execute(
                c.insert().values(
                    {**row, "id": None, "family_id": fid, "kind": "result",
                     "created_at": store.now_micros(), "evidence": json.dumps({})}
                )
            ).inserted_primary_key[0]  # fmt: skip
        # the survivor's is recorded for its people, as a claim batch would
        conn.execute(
            pstore.claimed_persons.insert(),
            [
                {"phase": "troubled-families-phase2", "kind": "result", "person_id": p,
                 "claim_id": cid}
                for p in store.members_of(conn, fam(h2))
            ],
        )  # fmt: skip
    got = year.duplicate_claims(db.engine)
    # the retired id's claim holds nobody; the survivor's came after h1 was merged into it
    assert got == {**NONE, "result": 2}
